"""readout: how each output reads the states, and the cotangent each read sends back to a state.

A linear readout (`scale * (q @ S)`, `h @ C + D * u`) is split like an update: per state read, the
linear part with the hole and its vector-Jacobian product `vjp(L, do)`, the state's gradient from the
output's (PyTorch's convention for complex values: cotangents are conjugated through multiplications).
A nonlinear readout (mLSTM's `(q @ C) / max(abs(q @ n), 1)`) is cut at its maximal state-linear
sub-expressions P1, P2, ...: each is a read with its own vjp, and sympy gives ∂output/∂Pi.
"""

from __future__ import annotations

import sympy as sp

from .. import ir
from ..ir import Kind, Op
from . import exprs as X
from .affine import NotAffine, split, state_key
from .pretty import OUTPUT, pretty
from .result import Readout, Side, StateRead
from .symbolic import Converter, Failed, TooLarge, text


def _contains_hole(e: ir.Expr) -> bool:
    return any(X.is_hole(n) for n in ir.walk(e))


def _reduce(g: ir.Expr, dims: tuple[str, ...]) -> ir.Expr:
    """Sum a cotangent over the dims its primal was broadcast along."""
    return X.sum_over(g, [d for d in g.ty.dims if d not in dims])


def vjp(e: ir.Expr, cot: ir.Expr) -> ir.Expr | None:
    """The cotangent of the hole in the linear map `e`, given the cotangent `cot` of `e` (None: no rule)."""
    if X.is_hole(e):
        return _reduce(cot, e.ty.dims)
    if not isinstance(e, ir.Apply):
        return None
    op, a = e.op, e.args
    has = [_contains_hole(x) for x in a]
    if op in (Op.ADD, Op.SUB):
        parts = [vjp(x, cot) if h else X.ZERO for x, h in zip(a, has, strict=True)]
        if any(p is None for p in parts):
            return None
        combine = X.add if op is Op.ADD else X.sub
        return combine(parts[0], parts[1])
    if op is Op.NEG:
        inner = vjp(a[0], cot)
        return None if inner is None else X.neg(inner)
    if op is Op.MUL:
        c, x = (a[0], a[1]) if has[1] else (a[1], a[0])
        return vjp(x, _reduce(X.mul(X.conj(c), cot), x.ty.dims))
    if op is Op.DIV and has[0]:
        return vjp(a[0], _reduce(X.div(cot, X.conj(a[1])), a[0].ty.dims))
    if op is Op.MATMUL:
        if has[1]:
            m, x = X.conj(a[0]), a[1]
            lm, lx = len(m.ty.dims), len(x.ty.dims)
            g = X.matmul(X.transpose(m), cot) if lm == 2 else \
                (X.outer(m, cot) if lx == 2 else X.mul(m, cot))
            return vjp(x, g)
        x, m = a[0], X.conj(a[1])
        lx, lm = len(x.ty.dims), len(m.ty.dims)
        g = (X.matmul(cot, X.transpose(m)) if lm == 2 else X.outer(cot, m)) if lx == 2 else \
            (X.matmul(m, cot) if lm == 2 else X.mul(m, cot))
        return vjp(x, g)
    if op is Op.OUTER:
        if has[1]:
            return vjp(a[1], X.matmul(X.conj(a[0]), cot))
        return vjp(a[0], X.matmul(cot, X.conj(a[1])))
    if op is Op.TRANSPOSE:
        return vjp(a[0], X.transpose(cot))
    if op is Op.SUM:
        return vjp(a[0], cot)  # broadcast back by name
    if op is Op.RE:
        return vjp(a[0], cot)
    if op is Op.IM:
        return vjp(a[0], X.mul(X.const(1j), cot))
    if op is Op.CONJ:
        return vjp(a[0], X.conj(cot))
    if op is Op.COMPLEX:
        return vjp(a[0], X.unary(Op.RE, cot)) if has[0] else vjp(a[1], X.unary(Op.IM, cot))
    return None


def cotangent(name: str, ty: ir.Type) -> ir.Var:
    """The cotangent of a per-token value `name`, printed `d<name>_t`."""
    return ir.Var(f"d{name}", Kind.INPUT, ir.Type(ty.dims, ty.complex))


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


def _reads(out: ir.Output, parts: tuple[tuple[tuple[str, bool], ir.Expr], ...], cot: ir.Expr) -> list[StateRead]:
    reads = []
    for (state, prev), part in parts:
        q, side = _query(part)
        reads.append(StateRead(out.name, state, prev, part, q, side, vjp(part, cot)))
    return reads


def analyze_readout(spec: ir.Spec, out: ir.Output) -> Readout:
    """How `out` reads the states."""
    try:
        aff = split(out.value, state_key)
    except NotAffine:
        return _nonlinear(spec, out)
    reads = _reads(out, aff.parts, cotangent(out.name, out.ty))
    desc = f"linear: {out.name}_t = {pretty(out.value, OUTPUT)}"
    return Readout(out.name, True, tuple(reads), aff.offset, (), desc)


def _nonlinear(spec: ir.Spec, out: ir.Output) -> Readout:
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
    for s, lab in zip(subs, labels, strict=True):
        reads += _reads(out, split(s, state_key).parts, cotangent(lab, s.ty))

    def swap(e: ir.Expr) -> ir.Expr | None:
        return next((v for s, v in zip(subs, stand_in, strict=True) if e == s), None)

    partials: list[tuple[str, str]] = []
    replaced = ir.rebuild(out.value, swap)
    try:
        conv = Converter(spec)
        f = conv(replaced)
        for v in stand_in:
            partials.append((v.name, text(sp.diff(f, conv.symbol(v)))))
    except (TooLarge, Failed, ValueError, TypeError, ArithmeticError):
        partials = []  # the readout's derivative is then left to autograd
    where = ", ".join(f"{lab} = {pretty(s, OUTPUT)}" for s, lab in zip(subs, labels, strict=True))
    desc = f"nonlinear (normalised): {out.name}_t = {pretty(replaced, OUTPUT)} with {where}"
    return Readout(out.name, False, tuple(reads), None, tuple(partials), desc)
