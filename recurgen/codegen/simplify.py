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


def _left(m: Expr, x: Expr) -> Expr | None:
    """`m @ x` without forming `m`, when m is structured; None when no rewrite applies."""
    if not _operator(m):
        return None
    assert isinstance(m, Apply)
    op = m.op
    if op is Op.EYE:
        return x
    if op in (Op.ADD, Op.SUB) and all(len(a.ty.dims) == 2 for a in m.args):
        lhs, rhs = (matmul(a, x) for a in m.args)
        return b.add(lhs, rhs) if op is Op.ADD else b.sub(lhs, rhs)
    if op is Op.NEG:
        return b.neg(matmul(m.args[0], x))
    if op is Op.MUL:
        c, mat = m.args
        if c.ty.dims:
            c, mat = mat, c
        if not c.ty.dims and len(mat.ty.dims) == 2:
            return b.mul(c, matmul(mat, x))
    if op is Op.DIAG and _unique(x.ty.dims):
        return b.mul(m.args[0], x)  # named broadcast scales x along its first dim
    if op is Op.OUTER:
        return b.outer(m.args[0], matmul(m.args[1], x)) if len(x.ty.dims) == 2 else \
            b.mul(m.args[0], matmul(m.args[1], x))
    return None


def _right(x: Expr, m: Expr) -> Expr | None:
    """`x @ m` without forming `m`."""
    if not _operator(m):
        return None
    assert isinstance(m, Apply)
    op = m.op
    if op is Op.EYE:
        return x
    if op in (Op.ADD, Op.SUB) and all(len(a.ty.dims) == 2 for a in m.args):
        lhs, rhs = (matmul(x, a) for a in m.args)
        return b.add(lhs, rhs) if op is Op.ADD else b.sub(lhs, rhs)
    if op is Op.NEG:
        return b.neg(matmul(x, m.args[0]))
    if op is Op.MUL:
        c, mat = m.args
        if c.ty.dims:
            c, mat = mat, c
        if not c.ty.dims and len(mat.ty.dims) == 2:
            return b.mul(c, matmul(x, mat))
    if op is Op.DIAG and _unique(x.ty.dims):
        return b.mul(x, m.args[0])  # named broadcast scales x along its last dim
    if op is Op.OUTER:
        return b.outer(matmul(x, m.args[0]), m.args[1]) if len(x.ty.dims) == 2 else \
            b.mul(matmul(x, m.args[0]), m.args[1])
    return None


def matmul(a: Expr, c: Expr) -> Expr:
    """`a @ c`, distributed through structured matrices where that avoids forming them."""
    out = _left(a, c)
    if out is None:
        out = _right(a, c)
    return out if out is not None else b.matmul(a, c)


def simplify(e: Expr) -> Expr:
    def fn(n: Expr) -> Expr | None:
        if isinstance(n, Apply) and n.op is Op.MATMUL:
            out = matmul(*n.args)
            return None if out == n else out
        return None
    return rebuild(e, fn)
