"""readout: how each output reads the states.

A linear readout (`scale * (q @ S)`, `h @ C + D * u`) is split like an update: per state read, the
linear part with the hole (and the query vector of a contraction, which chunk mode needs).
A nonlinear readout (mLSTM's `(q @ C) / max(abs(q @ n), 1)`) is cut at its maximal state-linear
sub-expressions P1, P2, ...: each is a read of its own. Gradients are not derived here: the kernels'
backward (`codegen.step.build_adjoint`) is the only one.
"""

from __future__ import annotations

from .. import ir
from ..ir import Kind, Op
from . import exprs as X
from .affine import NotAffine, split, state_key
from .pretty import OUTPUT, pretty
from .result import Readout, Side, StateRead


def _contains_hole(e: ir.Expr) -> bool:
    return any(X.is_hole(n) for n in ir.walk(e))


def _query(part: ir.Expr) -> tuple[ir.Expr | None, Side | None]:
    """`q` and the contracted side when the read is (up to scalars, gates, Re) `q @ □` or `□ @ q`."""
    e = part
    while isinstance(e, ir.Apply):
        if e.op is Op.MATMUL and X.is_hole(e.args[1]) and len(e.args[0].ty.dims) == 1:
            return e.args[0], Side.LEFT
        if e.op is Op.MATMUL and X.is_hole(e.args[0]) and len(e.args[1].ty.dims) == 1:
            return e.args[1], Side.RIGHT
        if e.op in (Op.RE, Op.NEG):
            e = e.args[0]
        elif e.op in (Op.MUL, Op.DIV):
            inner = [x for x in e.args if _contains_hole(x)]
            if len(inner) != 1:
                return None, None
            e = inner[0]
        else:
            return None, None
    return None, None


def _reads(out: ir.Output, parts: tuple[tuple[tuple[str, bool], ir.Expr], ...]) -> list[StateRead]:
    reads = []
    for (state, prev), part in parts:
        q, side = _query(part)
        reads.append(StateRead(out.name, state, prev, part, q, side))
    return reads


def analyze_readout(spec: ir.Spec, out: ir.Output) -> Readout:
    """How `out` reads the states."""
    try:
        aff = split(out.value, state_key)
    except NotAffine:
        return _nonlinear(out)
    reads = _reads(out, aff.parts)
    desc = f"linear: {out.name}_t = {pretty(out.value, OUTPUT)}"
    return Readout(out.name, True, tuple(reads), aff.offset, desc)


def _nonlinear(out: ir.Output) -> Readout:
    subs: list[ir.Expr] = []

    def find(e: ir.Expr) -> None:
        if not any(isinstance(n, ir.Var) and state_key(n) is not None for n in ir.walk(e)):
            return
        try:
            split(e, state_key)
        except NotAffine:
            for c in ir.children(e):
                find(c)
            return
        if e not in subs:
            subs.append(e)

    find(out.value)
    labels = [f"P{i + 1}" for i in range(len(subs))]
    stand_in = [ir.Var(lab, Kind.CONST, s.ty) for s, lab in zip(subs, labels, strict=True)]
    reads: list[StateRead] = []
    for s in subs:
        reads += _reads(out, split(s, state_key).parts)

    def swap(e: ir.Expr) -> ir.Expr | None:
        return next((v for s, v in zip(subs, stand_in, strict=True) if e == s), None)

    replaced = ir.rebuild(out.value, swap)
    where = ", ".join(f"{lab} = {pretty(s, OUTPUT)}" for s, lab in zip(subs, labels, strict=True))
    desc = f"nonlinear (normalised): {out.name}_t = {pretty(replaced, OUTPUT)} with {where}"
    return Readout(out.name, False, tuple(reads), None, desc)
