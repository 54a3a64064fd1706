"""affine: split an expression into its state-free part and one linear map per state it reads.

`S_t = A_t S_{t-1} + b_t` is what every recurrence recurgen compiles must look like. For an update
expression `e`, `split(e)` returns `b_t` (the part that reads no state) and, per state read, the linear
part `L(□)`: `e` with the state replaced by the hole `□` and its state-free terms dropped. So
`exp(g) * S + outer(k, v)` splits into `b = outer(k, v)` and `L_S(□) = exp(g) * □`.

An expression that is not affine in the states (`S * S`, `exp(S)`, `S` in a denominator, ...) raises
`NotAffine` pointing at the smallest offending sub-expression, innermost first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from .. import ir
from ..errors import Span
from ..ir import Kind, Op
from . import exprs as X
from .pretty import PLAIN, pretty

# Functions that are not linear: a state may not appear in their arguments.
_NONLINEAR = frozenset({Op.EXP, Op.LOG, Op.SIGMOID, Op.LOGSIGMOID, Op.SOFTPLUS, Op.SILU, Op.SQRT, Op.ABS,
                        Op.TANH, Op.SIN, Op.COS, Op.RELU, Op.NORM, Op.NORMALIZE, Op.POW, Op.MAX, Op.MIN,
                        Op.AMAX})
# Linear in their (only) state-carrying argument: the map commutes with them.
_LINEAR_UNARY = frozenset({Op.TRANSPOSE, Op.SUM, Op.RE, Op.IM, Op.CONJ, Op.DIAG, Op.INDEX, Op.RENAME})

StateKey = tuple[str, bool]  # (state name, read as `prev(S)`)


@dataclass(frozen=True, slots=True)
class Affine:
    """`e = offset + Σ_s L_s(s)`."""

    offset: ir.Expr | None  # the state-free part; None when it is zero
    parts: tuple[tuple[StateKey, ir.Expr], ...]  # per state read, in first-read order: L(□) with the hole

    def part(self, state: str, prev: bool = False) -> ir.Expr | None:
        return next((p for k, p in self.parts if k == (state, prev)), None)

    @property
    def states(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k[0] for k, _ in self.parts))


class NotAffine(Exception):
    """The expression is not affine in the states; `span` underlines the culprit."""

    def __init__(self, span: Span, message: str, hint: str) -> None:
        super().__init__(message)
        self.span, self.message, self.hint = span, message, hint


def state_key(v: ir.Var) -> StateKey | None:
    """The state a var reads, or None: states and `prev(S)` are the variables of the linear maps."""
    if v.name == X.HOLE:
        return None
    if v.kind is Kind.STATE:
        return (v.name, False)
    if v.kind is Kind.PREV_STATE:
        return (v.name, True)
    return None


def _reads(e: ir.Expr) -> list[str]:
    names = [n.name for n in ir.walk(e) if isinstance(n, ir.Var) and state_key(n) is not None]
    return list(dict.fromkeys(names))


def _names(e: ir.Expr) -> str:
    return ", ".join(f"`{n}`" for n in _reads(e))


HINT = ("an update must be affine in the states: S_t = A_t S_{t-1} + b_t, where A_t and b_t may depend on "
        "inputs and params but not on a state; move the nonlinearity into the readout")


def split(e: ir.Expr, key: Callable[[ir.Var], StateKey | None] = state_key) -> Affine:
    """Split `e` into its state-free part and linear maps.

    Raises:
        NotAffine: at the innermost sub-expression that is not affine in the states.
    """
    off, parts = _Splitter(key).run(e)
    return Affine(off, tuple(parts.items()))


class _Splitter:
    def __init__(self, key: Callable[[ir.Var], StateKey | None]) -> None:
        self.key = key

    def has_state(self, e: ir.Expr) -> bool:
        return any(isinstance(n, ir.Var) and self.key(n) is not None for n in ir.walk(e))

    def run(self, e: ir.Expr) -> tuple[ir.Expr | None, dict[StateKey, ir.Expr]]:
        if isinstance(e, ir.Var):
            k = self.key(e)
            return (None, {k: X.hole(e.ty)}) if k is not None else (e, {})
        if isinstance(e, ir.Const) or not self.has_state(e):
            return e, {}
        assert isinstance(e, ir.Apply)
        subs = [self.run(a) for a in e.args]  # children first: the innermost culprit is reported
        op, a = e.op, e.args
        stateful = [bool(p) for _, p in subs]
        if op in _NONLINEAR:
            fn = {Op.POW: "a power", Op.AMAX: "a max over a dim (softmax, logsumexp)"}.get(op, op.value)
            what = {Op.POW: "a power (`**`)", Op.AMAX: "`max(...)`"}.get(op, f"`{op.value}(...)`")
            raise NotAffine(e.span, f"not affine in the state: {what} of `{pretty(e, PLAIN)}` reads the state "
                            f"{_names(e)}", f"{HINT} ({fn} is not linear)")
        if op is Op.ADD or op is Op.SUB:
            (oa, pa), (ob, pb) = subs
            sign = X.add if op is Op.ADD else X.sub
            parts = dict(pa)
            for k, p in pb.items():
                parts[k] = sign(parts.get(k), p) or X.ZERO
            return sign(oa, ob), parts
        if op is Op.NEG:
            (oa, pa), = subs
            return (X.neg(oa) if oa is not None else None), {k: X.neg(p) for k, p in pa.items()}
        if op in (Op.MUL, Op.MATMUL, Op.OUTER):
            if all(stateful):
                word = {Op.MUL: "multiplies", Op.MATMUL: "contracts", Op.OUTER: "takes the outer product of"}[op]
                raise NotAffine(e.span, f"not affine in the state: `{pretty(e, PLAIN)}` {word} two values that read "
                                f"the state ({_names(a[0])} and {_names(a[1])})",
                                f"{HINT} (this term is quadratic)")
            build = {Op.MUL: X.mul, Op.MATMUL: X.matmul, Op.OUTER: X.outer}[op]
            if stateful[1]:
                (ob, pb) = subs[1]
                return (build(a[0], ob) if ob is not None else None), {k: build(a[0], p) for k, p in pb.items()}
            (oa, pa) = subs[0]
            return (build(oa, a[1]) if oa is not None else None), {k: build(p, a[1]) for k, p in pa.items()}
        if op is Op.DIV:
            if stateful[1]:
                raise NotAffine(a[1].span, f"not affine in the state: the state {_names(a[1])} appears in the "
                                f"denominator of `{pretty(e, PLAIN)}`", f"{HINT} (1/x is not linear)")
            (oa, pa) = subs[0]
            return (X.div(oa, a[1]) if oa is not None else None), {k: X.div(p, a[1]) for k, p in pa.items()}
        if op in _LINEAR_UNARY:
            (oa, pa) = subs[0]
            rest = a[1:]
            def wrap(x: ir.Expr) -> ir.Expr:
                return replace(e, args=(x, *rest))
            return (wrap(oa) if oa is not None else None), {k: wrap(p) for k, p in pa.items()}
        if op is Op.COMPLEX:
            # complex(x, y) = x + i y is (real-)linear in each argument.
            (oa, pa), (ob, pb) = subs
            zero = X.ZERO
            off = replace(e, args=(oa or zero, ob or zero)) if (oa is not None or ob is not None) else None
            parts: dict[StateKey, ir.Expr] = {}
            for k, p in pa.items():
                parts[k] = replace(e, args=(p, zero))
            for k, p in pb.items():
                parts[k] = X.add(parts.get(k), replace(e, args=(zero, p))) or zero
            return off, parts
        raise NotAffine(e.span, f"not affine in the state: `{op.value}` of `{pretty(e, PLAIN)}` reads the state "
                        f"{_names(e)}", HINT)
