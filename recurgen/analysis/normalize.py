"""normalize: a linear map L(□) -> a sum of products of diag / rank-1 / dense matrices on one side.

The structural half of classification (classify.py decides the class from the result), never sympy:
  1. `chains` distributes L over `+`/`-` into terms, each a chain of factors applied to □
     (elementwise `c * □`, `M @ □`, `□ @ M`, `outer(a, □)`, ...), scalars pulled out;
  2. `collapse` reads a chain as a product of matrices acting on one side of the state:
     `diag(x) @ □` and a `[P]` coefficient are diag(x); `outer(a, b @ □)` is the rank-1 `a bᵀ`;
     `b @ (c * □)` is the covector `b ⊙ c`; `I`, `c * M`, `M1 @ M2`, `M1 ± M2`, `Mᵀ` are expanded;
  3. `fold` multiplies a product out to diag(d), a rank-1 `u wᵀ` (with the scalar `w1 · u2` of a
     product of two rank-1 factors), or a dense rest.
Vectors are kept as lists of elementwise factors, so `k ⊙ exp(g)` and `exp(g) ⊙ k` compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .. import ir
from ..ir import Op
from . import exprs as X
from .result import Side

Scalars = tuple[ir.Expr, ...]
Vecs = tuple[ir.Expr, ...]  # elementwise factors of a vector (their product is the vector)


class F(Enum):
    MUL = "mul"  # c ⊙ □ (c not a scalar)
    LEFT = "left"  # M @ □
    RIGHT = "right"  # □ @ M
    OUTER_LEFT = "outer_left"  # outer(a, □)
    OUTER_RIGHT = "outer_right"  # outer(□, b)
    OPAQUE = "opaque"  # anything else linear (transpose, sum, Re, ...): no structure


@dataclass(frozen=True, slots=True)
class Factor:
    kind: F
    expr: ir.Expr  # the state-free operand (OPAQUE: the node itself)


@dataclass(frozen=True, slots=True)
class Chain:
    scalars: Scalars
    factors: tuple[Factor, ...]  # outermost first


@dataclass(frozen=True, slots=True)
class Diag:
    d: Vecs  # () is the identity


@dataclass(frozen=True, slots=True)
class Rank1:
    u: Vecs
    w: Vecs


@dataclass(frozen=True, slots=True)
class Dense:
    m: ir.Expr


Mat = Diag | Rank1 | Dense


@dataclass(frozen=True, slots=True)
class Prod:
    scalars: Scalars
    mats: tuple[Mat, ...]  # in matrix-product order


MINUS_ONE = X.const(-1.0)


def chains(e: ir.Expr) -> list[Chain]:
    """Distribute a linear map (with the hole) into chains of factors."""
    if X.is_hole(e):
        return [Chain((), ())]
    if not isinstance(e, ir.Apply):
        return []  # a state-free leaf inside L(□) (the 0 of complex(□, 0)) contributes nothing
    op, a = e.op, e.args
    has = [any(X.is_hole(n) for n in ir.walk(x)) for x in a]
    if op is Op.ADD:
        return chains(a[0]) + chains(a[1])
    if op is Op.SUB:
        return chains(a[0]) + [_scale(c, MINUS_ONE) for c in chains(a[1])]
    if op is Op.NEG:
        return [_scale(c, MINUS_ONE) for c in chains(a[0])]
    if op is Op.MUL:
        coef, inner = (a[0], a[1]) if has[1] else (a[1], a[0])
        if not coef.ty.dims:
            return [_scale(c, coef) for c in chains(inner)]
        return [_push(c, Factor(F.MUL, coef)) for c in chains(inner)]
    if op is Op.DIV and has[0]:
        inv = X.reciprocal(a[1])
        if not a[1].ty.dims:
            return [_scale(c, inv) for c in chains(a[0])]
        return [_push(c, Factor(F.MUL, inv)) for c in chains(a[0])]
    if op is Op.MATMUL:
        f = Factor(F.LEFT, a[0]) if has[1] else Factor(F.RIGHT, a[1])
        return [_push(c, f) for c in chains(a[1] if has[1] else a[0])]
    if op is Op.OUTER:
        f = Factor(F.OUTER_LEFT, a[0]) if has[1] else Factor(F.OUTER_RIGHT, a[1])
        return [_push(c, f) for c in chains(a[1] if has[1] else a[0])]
    return [Chain((), (Factor(F.OPAQUE, e),))]


def scalar_factors(e: ir.Expr) -> Scalars:
    """A scalar as its multiplicative factors: `-exp(a) * beta` -> (-1, exp(a), beta)."""
    if isinstance(e, ir.Apply) and not e.ty.dims:
        if e.op is Op.MUL:
            return scalar_factors(e.args[0]) + scalar_factors(e.args[1])
        if e.op is Op.NEG:
            return (MINUS_ONE, *scalar_factors(e.args[0]))
        if e.op is Op.DIV:
            return (*scalar_factors(e.args[0]), X.reciprocal(e.args[1]))
    return (e,)


def _scale(c: Chain, s: ir.Expr) -> Chain:
    return Chain((*scalar_factors(s), *c.scalars), c.factors)


def _push(c: Chain, f: Factor) -> Chain:
    return Chain(c.scalars, (f, *c.factors))


def vec_factors(x: ir.Expr) -> tuple[Scalars, Vecs]:
    """Split a vector into scalar factors and elementwise vector factors: `2 * beta * k` -> (2, beta), (k,)."""
    if isinstance(x, ir.Const) or not x.ty.dims:
        return scalar_factors(x), ()
    if isinstance(x, ir.Apply):
        if x.op is Op.MUL:
            s1, v1 = vec_factors(x.args[0])
            s2, v2 = vec_factors(x.args[1])
            return s1 + s2, v1 + v2
        if x.op is Op.NEG:
            s, v = vec_factors(x.args[0])
            return (MINUS_ONE, *s), v
        if x.op is Op.DIV and not x.args[1].ty.dims:
            s, v = vec_factors(x.args[0])
            return (*s, X.reciprocal(x.args[1])), v
    return (), (x,)


def decompose(m: ir.Expr) -> list[Prod]:
    """A matrix expression as a sum of products of diag / rank-1 / dense factors."""
    if isinstance(m, ir.Apply):
        op, a = m.op, m.args
        if op is Op.EYE:
            return [Prod((), (Diag(()),))]
        if op is Op.DIAG:
            s, v = vec_factors(a[0])
            return [Prod(s, (Diag(v),))]
        if op is Op.OUTER:
            su, u = vec_factors(a[0])
            sw, w = vec_factors(a[1])
            return [Prod(su + sw, (Rank1(u, w),))]
        if op is Op.MUL and (not a[0].ty.dims or not a[1].ty.dims):
            c, inner = (a[0], a[1]) if not a[0].ty.dims else (a[1], a[0])
            return [Prod((*scalar_factors(c), *p.scalars), p.mats) for p in decompose(inner)]
        if op is Op.DIV and not a[1].ty.dims:
            return [Prod((*p.scalars, X.reciprocal(a[1])), p.mats) for p in decompose(a[0])]
        if op is Op.NEG:
            return [Prod((MINUS_ONE, *p.scalars), p.mats) for p in decompose(a[0])]
        if op is Op.ADD:
            return decompose(a[0]) + decompose(a[1])
        if op is Op.SUB:
            return decompose(a[0]) + [Prod((MINUS_ONE, *p.scalars), p.mats) for p in decompose(a[1])]
        if op is Op.MATMUL and len(a[0].ty.dims) == 2 and len(a[1].ty.dims) == 2:
            return [Prod(p.scalars + q.scalars, p.mats + q.mats) for p in decompose(a[0]) for q in decompose(a[1])]
        if op is Op.TRANSPOSE:
            return [Prod(p.scalars, tuple(_transpose(f) for f in reversed(p.mats))) for p in decompose(a[0])]
    return [Prod((), (Dense(m),))]


def _transpose(f: Mat) -> Mat:
    if isinstance(f, Rank1):
        return Rank1(f.w, f.u)
    if isinstance(f, Dense):
        return Dense(X.transpose(f.m))
    return f


def collapse(chain: Chain, side: Side, dims: tuple[str, ...]) -> list[Prod] | None:
    """Read a chain as matrices acting on `side` of a state with `dims`; None if it does not."""
    two_d = len(dims) == 2
    if side is Side.RIGHT and not two_d:
        return None
    p = (dims[0] if side is Side.LEFT else dims[-1]) if dims else ""  # a scalar state: no factor acts on a side
    alts = [Prod(chain.scalars, ())]
    cov: tuple[Scalars, Vecs] | None = None  # C form: the value is wᵀ A □ (LEFT) or □ A w (RIGHT)
    for f in reversed(chain.factors):
        mult: list[Prod]
        e = f.expr
        if cov is None:
            if f.kind is F.MUL and e.ty.dims == (p,):
                s, v = vec_factors(e)
                mult = [Prod(s, (Diag(v),))]
            elif f.kind in (F.LEFT, F.RIGHT):
                acts = (f.kind is F.LEFT) == (side is Side.LEFT)
                if not acts and two_d:
                    return None
                if len(e.ty.dims) == 1:
                    cov = vec_factors(e)
                    continue
                # On a vector state, `h @ M` is `Mᵀ h`.
                mult = decompose(e if acts else X.transpose(e))
            else:
                return None
        else:
            s0, w = cov
            expands = (f.kind is F.MUL and not two_d and e.ty.dims == (p,)) or \
                (f.kind is F.OUTER_LEFT and two_d and side is Side.LEFT)
            if expands:
                s, u = vec_factors(e)
                mult = [Prod(s + s0, (Rank1(u, w),))]
            elif f.kind is F.OUTER_RIGHT and two_d and side is Side.RIGHT:
                s, u = vec_factors(e)
                mult = [Prod(s + s0, (Rank1(w, u),))]
            else:
                return None
            cov = None
        if side is Side.LEFT:  # the factor applied last multiplies from the left
            alts = [Prod(a.scalars + m.scalars, m.mats + a.mats) for a in alts for m in mult]
        else:
            alts = [Prod(a.scalars + m.scalars, a.mats + m.mats) for a in alts for m in mult]
    return None if cov is not None else alts


@dataclass(frozen=True, slots=True)
class Term:
    """A folded product: scalars × (diag(d) | u wᵀ | dense)."""

    scalars: Scalars
    mat: Mat


def fold(prod: Prod) -> Term:
    if any(isinstance(f, Dense) for f in prod.mats):
        mats = [as_matrix(f) for f in prod.mats if not (isinstance(f, Diag) and not f.d)]
        m = mats[0]
        for x in mats[1:]:
            m = X.matmul(m, x)
        return Term(prod.scalars, Dense(m))
    scalars = list(prod.scalars)
    acc: Mat = Diag(())
    for f in prod.mats:
        if isinstance(acc, Diag) and isinstance(f, Diag):
            acc = Diag(acc.d + f.d)
        elif isinstance(acc, Diag) and isinstance(f, Rank1):
            acc = Rank1(acc.d + f.u, f.w)
        elif isinstance(acc, Rank1) and isinstance(f, Diag):
            acc = Rank1(acc.u, acc.w + f.d)
        elif isinstance(acc, Rank1) and isinstance(f, Rank1):
            # (u1 w1ᵀ)(u2 w2ᵀ) = (w1 · u2) u1 w2ᵀ
            scalars.append(ir.Apply(Op.SUM, (X.mul(X.product(acc.w), X.product(f.u)),), ir.SCALAR))
            acc = Rank1(acc.u, f.w)
    return Term(tuple(scalars), acc)


def as_matrix(f: Mat) -> ir.Expr:
    if isinstance(f, Dense):
        return f.m
    if isinstance(f, Rank1):
        return X.outer(X.product(f.u), X.product(f.w))
    return X.diag(X.product(f.d)) if f.d else X.ONE


def constant(factors: Scalars) -> tuple[complex | float, list[ir.Expr]]:
    c: complex | float = 1.0
    rest = []
    for f in factors:
        if isinstance(f, ir.Const):
            c *= f.value
        else:
            rest.append(f)
    return c, rest
