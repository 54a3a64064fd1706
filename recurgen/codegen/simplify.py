"""simplify: matrix-free rewrites of the step before printing kernels.

`(I - beta * outer(k, k)) @ S` read literally builds a [K, K] matrix and a [K, K, V] product;
the same value is `S - beta * outer(k, k @ S)`: O(K V) work in registers. Products with `I`,
`diag(x)`, `outer(a, b)`, sums and scalar multiples are distributed until no square matrix
built from the inputs meets a state.
"""

from __future__ import annotations

from ..ir import Apply, Expr, Kind, Op, rebuild, uses
from . import build as b

_STATES = frozenset({Kind.STATE, Kind.PREV_STATE})


def _unique(dims: tuple[str, ...]) -> bool:
    return len(set(dims)) == len(dims)


def _operator(m: Expr) -> bool:
    """A square-or-rectangular matrix built from inputs only: worth applying, not forming."""
    return isinstance(m, Apply) and len(m.ty.dims) == 2 and not uses(m, _STATES)


def _apply(m: Expr, x: Expr, left: bool) -> Expr | None:
    """`m @ x` (left) or `x @ m` without forming `m`, when m is structured; None when no rewrite applies."""
    if not _operator(m):
        return None
    assert isinstance(m, Apply)

    def mm(a: Expr) -> Expr:  # the same product with `a` in m's place
        return matmul(a, x) if left else matmul(x, a)

    op = m.op
    if op is Op.EYE:
        return x
    if op in (Op.ADD, Op.SUB) and all(len(a.ty.dims) == 2 for a in m.args):
        lhs, rhs = (mm(a) for a in m.args)
        return b.add(lhs, rhs) if op is Op.ADD else b.sub(lhs, rhs)
    if op is Op.NEG:
        return b.neg(mm(m.args[0]))
    if op is Op.MUL:
        c, mat = m.args
        if c.ty.dims:
            c, mat = mat, c
        if not c.ty.dims and len(mat.ty.dims) == 2:
            return b.mul(c, mm(mat))
    if op is Op.DIAG and _unique(x.ty.dims):
        # named broadcast scales x along its first (left) or last (right) dim
        return b.mul(m.args[0], x) if left else b.mul(x, m.args[0])
    if op is Op.OUTER:
        u, w = m.args
        if left:  # (u wᵀ) x = u (wᵀ x)
            inner = matmul(w, x)
            return b.outer(u, inner) if len(x.ty.dims) == 2 else b.mul(u, inner)
        inner = matmul(x, u)  # x (u wᵀ) = (x u) wᵀ
        return b.outer(inner, w) if len(x.ty.dims) == 2 else b.mul(inner, w)
    return None


def matmul(a: Expr, c: Expr) -> Expr:
    """`a @ c`, distributed through structured matrices where that avoids forming them."""
    out = _apply(a, c, left=True)
    if out is None:
        out = _apply(c, a, left=False)
    return out if out is not None else b.matmul(a, c)


def simplify(e: Expr) -> Expr:
    def fn(n: Expr) -> Expr | None:
        if isinstance(n, Apply) and n.op is Op.MATMUL:
            out = matmul(*n.args)
            return None if out == n else out
        return None
    return rebuild(e, fn)
