"""signs: the sign of a real IR expression from its structure and the declared value domains, without sympy.

The numerics checks ask whether an exponent is provably <= 0. Most are by construction (`g` declared
`logdecay`, `-softplus(x)`, `logsigmoid(x)`, `-exp(nu)`); these rules decide them, so compiling such a spec never
imports sympy. What they cannot decide (None) goes to sympy (symbolic.real_part_nonpositive), which knows more.
Every rule is sound: True only when the value is <= 0 for every value the domains allow.
"""

from __future__ import annotations

from .. import ir
from ..ir import Kind, Op

NONPOS, NONNEG = -1, 1  # a sign; None: not known from the structure

# functions whose value is >= 0 (or <= 0) whatever their argument
_NONNEG = frozenset({Op.EXP, Op.SIGMOID, Op.SOFTPLUS, Op.SQRT, Op.ABS, Op.RELU, Op.NORM})
_NONPOS = frozenset({Op.LOGSIGMOID})


def nonpositive(e: ir.Expr, spec: ir.Spec) -> bool:
    """True when Re(e) is <= 0 by these rules; False when they cannot tell (it may still be)."""
    return real_sign(e, spec) == NONPOS


def real_sign(e: ir.Expr, spec: ir.Spec) -> int | None:
    """The sign of Re(e): `a + i·b` is a's, a real factor times a complex one multiplies their signs."""
    if not e.ty.complex:
        return sign(e, spec)
    if not isinstance(e, ir.Apply):
        return None
    a = e.args
    if e.op is Op.COMPLEX:
        return sign(a[0], spec)
    if e.op is Op.MUL and a[0].ty.complex != a[1].ty.complex:
        x, y = (real_sign(a[0], spec), sign(a[1], spec)) if a[0].ty.complex else (sign(a[0], spec),
                                                                                 real_sign(a[1], spec))
        return None if x is None or y is None else x * y
    if e.op in (Op.ADD, Op.SUB, Op.NEG):
        x = real_sign(a[0], spec)
        y = real_sign(a[1], spec) if e.op is not Op.NEG else x
        if e.op is Op.NEG:
            return None if x is None else -x
        y = y if e.op is Op.ADD or y is None else -y
        return x if x is not None and x == y else None
    return None


def sign(e: ir.Expr, spec: ir.Spec) -> int | None:
    if e.ty.complex:
        return None
    if isinstance(e, ir.Const):
        v = e.value
        return None if isinstance(v, complex) else NONPOS if v <= 0 else NONNEG
    if isinstance(e, ir.Var):
        return _declared(e.name, spec) if e.kind in (Kind.INPUT, Kind.PARAM) else \
            NONNEG if e.kind in (Kind.DIM, Kind.HEADS, Kind.HEAD, Kind.LOOP) else None
    op, a = e.op, e.args
    if op is Op.INDEX and isinstance(a[0], ir.Var) and a[0].kind in (Kind.INPUT, Kind.PARAM):
        return _declared(a[0].name, spec)
    if op in _NONNEG:
        return NONNEG
    if op in _NONPOS:
        return NONPOS
    if op is Op.NEG:
        s = sign(a[0], spec)
        return None if s is None else -s
    if op not in (Op.ADD, Op.SUB, Op.MUL, Op.MAX, Op.MIN):
        return None
    if op is Op.SUB and isinstance(a[1], ir.Apply) and a[1].op is Op.MAX and a[0] in a[1].args:
        return NONPOS  # x − max(x, y): xLSTM's stabilised gates
    x, y = sign(a[0], spec), sign(a[1], spec)
    if op is Op.SUB:
        op, y = Op.ADD, (None if y is None else -y)
    if op is Op.ADD:
        return x if x is not None and x == y else None
    if op is Op.MUL:
        return None if x is None or y is None else x * y
    if op is Op.MAX:  # max(a, b) >= a: non-negative if either is; <= 0 only if both are
        return NONNEG if NONNEG in (x, y) else NONPOS if x == y == NONPOS else None
    return NONPOS if NONPOS in (x, y) else NONNEG if x == y == NONNEG else None  # MIN


def _declared(name: str, spec: ir.Spec) -> int | None:
    t = spec.tensor(name)
    if t.ty.complex:
        return None
    d = t.domain
    if d.logspace or d.hi <= 0:
        return NONPOS
    return NONNEG if d.lo >= 0 else None
