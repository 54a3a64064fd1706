"""Typed constructors of IR expressions for derived code (the step function, its adjoint, the sweeps).

The arithmetic ones, and their folding rules, are analysis/exprs.py's (one rule set for every stage), re-exported
here; this module adds what only code generation builds: real and imaginary parts, sums, broadcasts, rows and
their adjoints, and the reduction of a broadcast cotangent.
"""

from __future__ import annotations

from ..analysis.exprs import (
    add,
    binary,
    conj,
    const,
    diag,
    div,
    matmul,
    mul,
    neg,
    outer,
    sub,
    sum_over,
    transpose,
    unary,
)
from ..check import broadcast
from ..errors import InternalError
from ..ir import SCALAR, Apply, Const, Expr, Op, Type

__all__ = ["add", "binary", "broadcast_to", "conj", "const", "diag", "diagonal", "div", "embed", "im", "index",
           "is_const", "matmul", "mul", "neg", "outer", "re", "sub", "sum_all", "sum_over", "tensordot",
           "to_complex", "transpose", "unary", "unbroadcast"]


def is_const(e: Expr, value: float) -> bool:
    return isinstance(e, Const) and e.value == value


def re(a: Expr) -> Expr:
    return Apply(Op.RE, (a,), Type(a.ty.dims)) if a.ty.complex else a


def im(a: Expr) -> Expr:
    return Apply(Op.IM, (a,), Type(a.ty.dims))


def to_complex(re_part: Expr, im_part: Expr) -> Expr:
    dims = broadcast(re_part.ty.dims, im_part.ty.dims)
    assert dims is not None
    return Apply(Op.COMPLEX, (re_part, im_part), Type(dims, True))


def tensordot(a: Expr, c: Expr, n: int) -> Expr:
    """The last n dims of `a` contracted with the first n of `c` (the adjoints of 3-dim products)."""
    if a.ty.dims[len(a.ty.dims) - n:] != c.ty.dims[:n]:
        raise InternalError("autodiff", f"bad contraction {a.ty} . {c.ty} over {n} dims")
    ty = Type(a.ty.dims[:len(a.ty.dims) - n] + c.ty.dims[n:], a.ty.complex or c.ty.complex)
    return Apply(Op.TENSORDOT, (a, c), ty, str(n))


def rename(a: Expr, dims: tuple[str, ...]) -> Expr:
    """`a` with its dims named `dims`, position by position (a repeated dim's alias named back, or apart)."""
    if isinstance(a, Apply) and a.op is Op.RENAME:
        a = a.args[0]
    return a if a.ty.dims == dims else Apply(Op.RENAME, (a,), Type(dims, a.ty.complex))


def sum_all(a: Expr) -> Expr:
    return Apply(Op.SUM, (a,), Type((), a.ty.complex)) if a.ty.dims else a


def broadcast_to(a: Expr, ty: Type) -> Expr:
    if a.ty.dims == ty.dims:
        return a
    return Apply(Op.BROADCAST, (a,), Type(ty.dims, a.ty.complex))


def index(a: Expr, pos: int) -> Expr:
    """Row `pos` of `a` (its first dim removed)."""
    if isinstance(a, Apply) and a.op is Op.EMBED:
        return a.args[0] if int(a.attr) == pos else Const(0.0, Type((), a.ty.complex))
    return Apply(Op.INDEX, (a, Const(float(pos))), Type(a.ty.dims[1:], a.ty.complex), str(pos))


def embed(g: Expr, ty: Type, pos: int) -> Expr:
    """A value of type `ty` that is `g` in row `pos` of its first dim and zero elsewhere (the adjoint of INDEX)."""
    return Apply(Op.EMBED, (g,), Type(ty.dims, g.ty.complex), str(pos))


def diagonal(a: Expr) -> Expr:
    return Apply(Op.DIAGONAL, (a,), Type(a.ty.dims[:1], a.ty.complex))


def unbroadcast(g: Expr, target: Type) -> Expr:
    """The cotangent of a value of type `target` that was broadcast into `g`'s shape."""
    if target.dims == g.ty.dims:
        out = g
    elif not target.dims:
        out = sum_all(g)
    elif len(set(g.ty.dims)) != len(g.ty.dims) and set(g.ty.dims) == set(target.dims):
        raise InternalError("autodiff", f"cannot reduce {g.ty} to {target}")
    else:
        out = g
        for d in dict.fromkeys(g.ty.dims):  # a repeated dim once: a sum over it reduces every occurrence
            if d not in target.dims:
                out = sum_over(out, (d,))
        if out.ty.dims != target.dims:
            if out.ty.dims[::-1] != target.dims:
                raise InternalError("autodiff", f"cannot reduce {g.ty} to {target}")
            out = transpose(out)
    return out if target.complex else re(out)


SCALAR_ONE = Const(1.0, SCALAR)
