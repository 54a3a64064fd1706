"""step: ir.Spec -> Step, the per-token function as one expression DAG, and its adjoint.

Leaves are the previous states (`Var(S, STATE)` means S_{t-1}), the token's inputs (or their loop
slices `k[j]`), params, consts and options. `for` updates are unrolled, so DeltaProduct's two
Householder steps are one DAG. The adjoint is reverse-mode autodiff on that DAG, so every spec —
whatever its transition class — gets a backward step from the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .. import ir
from ..ir import Apply, Const, Expr, Kind, Op, Var
from . import autodiff
from . import build as b
from .simplify import simplify


@dataclass(frozen=True, slots=True)
class Step:
    spec: ir.Spec
    new_states: tuple[tuple[str, Expr], ...]  # S_t as a function of the leaves
    outputs: tuple[tuple[str, Expr], ...]  # o_t as a function of the leaves


def state_var(t: ir.Tensor) -> Var:
    return Var(t.name, Kind.STATE, t.ty)


def _substitute(e: Expr, states: dict[str, Expr], loop: tuple[str, int] | None = None,
                prev: dict[str, Expr] | None = None) -> Expr:
    def fn(n: Expr) -> Expr | None:
        if isinstance(n, Var):
            if n.kind is Kind.STATE and n.name in states:
                return states[n.name]
            if n.kind is Kind.PREV_STATE and prev is not None:
                return prev[n.name]
            if n.kind is Kind.LOOP and loop is not None and n.name == loop[0]:
                return Const(float(loop[1]))
        if isinstance(n, Apply) and n.op is Op.INDEX and isinstance(n.args[1], Const):
            return replace(n, attr=str(int(n.args[1].value.real)))
        return None
    return ir.rebuild(e, fn)


def unroll(e: Expr, loop: ir.Loop | None, j: int) -> Expr:
    """`e` at sub-step j of a `for j in J` update (the loop index replaced by the constant j)."""
    return e if loop is None else _substitute(e, {}, (loop.var, j))


def build_step(spec: ir.Spec) -> Step:
    prev = {s.name: state_var(s) for s in spec.states}
    new: dict[str, Expr] = {}
    for u in spec.updates:
        if u.loop is None:
            new[u.state] = u.value  # state names already mean S_{t-1}
            continue
        running: Expr = prev[u.state]
        for j in range(u.loop.size):
            running = _substitute(u.value, {u.state: running}, (u.loop.var, j))
        new[u.state] = running
    outputs = tuple((o.name, simplify(_substitute(o.value, new, prev=prev))) for o in spec.outputs)
    return Step(spec, tuple((s.name, simplify(new[s.name])) for s in spec.states), outputs)


@dataclass(frozen=True, slots=True)
class Adjoint:
    """Cotangents of the step's leaves, given `dS_t` (named `d<S>`) and `do_t` (named `d<o>`)."""

    prev_states: tuple[tuple[str, Expr], ...]  # dS_{t-1}
    inputs: tuple[tuple[Expr, Expr], ...]  # (leaf: input Var or its loop slice, cotangent)
    params: tuple[tuple[str, Expr], ...]
    options: tuple[tuple[str, Expr], ...]


def cotangent_var(name: str, ty: ir.Type) -> Var:
    """The incoming cotangent of state or output `name`; an INPUT-kind leaf named `∂<name>`."""
    return Var(f"∂{name}", Kind.INPUT, ty)


def build_adjoint(step: Step) -> Adjoint:
    spec = step.spec
    roots = [(e, cotangent_var(n, spec.tensor(n).ty)) for n, e in step.new_states]
    roots += [(e, cotangent_var(n, e.ty)) for n, e in step.outputs]
    grads = autodiff.vjp(roots)
    states = tuple((s.name, grads.get(state_var(s))) for s in spec.states)
    inputs: list[tuple[Expr, Expr]] = []
    for leaf, g in grads.items():
        is_input = isinstance(leaf, Var) and leaf.kind is Kind.INPUT and not leaf.name.startswith("∂")
        if is_input or (isinstance(leaf, Apply) and leaf.op is Op.INDEX):
            inputs.append((leaf, g))
    # an input read whole and sliced (`sum(k)` and `k[0]`) has one gradient: the slices' rows added in
    whole = {leaf.name: g for leaf, g in inputs if isinstance(leaf, Var)}
    for leaf, g in inputs:
        if isinstance(leaf, Apply) and isinstance(leaf.args[0], Var) and leaf.args[0].name in whole:
            base = leaf.args[0]
            whole[base.name] = b.add(whole[base.name], b.embed(g, base.ty, int(leaf.attr)))
    inputs = [(leaf, whole[leaf.name]) if isinstance(leaf, Var) else (leaf, g) for leaf, g in inputs
              if isinstance(leaf, Var) or leaf.args[0].name not in whole]
    params = tuple((p.name, g) for p in spec.params
                   if (g := grads.get(Var(p.name, Kind.PARAM, p.ty))) is not None)
    options = tuple((o.name, g) for o in spec.options
                    if (g := grads.get(Var(o.name, Kind.OPTION, ir.SCALAR))) is not None)
    return Adjoint(tuple((n, g) for n, g in states if g is not None), tuple(inputs), params, options)
