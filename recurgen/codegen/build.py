"""Typed constructors of IR expressions for derived code (the step function, its adjoint).

Each builder computes the result type with the checker's rules and folds trivial cases, so the
derived expressions stay small and readable in generated code.
"""

from __future__ import annotations

from ..check import broadcast
from ..errors import InternalError
from ..ir import SCALAR, Apply, Const, Expr, Op, Type


def const(value: float | complex) -> Const:
    return Const(value, Type((), isinstance(value, complex)))


def is_const(e: Expr, value: float) -> bool:
    return isinstance(e, Const) and e.value == value


def _binary(op: Op, a: Expr, b: Expr) -> Apply:
    dims = broadcast(a.ty.dims, b.ty.dims)
    if dims is None:
        raise InternalError("autodiff", f"cannot combine {a.ty} and {b.ty} with {op.value}")
    return Apply(op, (a, b), Type(dims, a.ty.complex or b.ty.complex))


def add(a: Expr, b: Expr) -> Expr:
    if is_const(a, 0.0) and a.ty.dims == () and broadcast(b.ty.dims, ()) == b.ty.dims:
        return b
    if is_const(b, 0.0):
        return a
    return _binary(Op.ADD, a, b)


def sub(a: Expr, b: Expr) -> Expr:
    if is_const(b, 0.0):
        return a
    if is_const(a, 0.0):
        return neg(b)
    return _binary(Op.SUB, a, b)


def mul(a: Expr, b: Expr) -> Expr:
    if is_const(a, 1.0):
        return b
    if is_const(b, 1.0):
        return a
    if isinstance(a, Apply) and a.op is Op.NEG:
        return neg(mul(a.args[0], b))
    if isinstance(b, Apply) and b.op is Op.NEG:
        return neg(mul(a, b.args[0]))
    return _binary(Op.MUL, a, b)


def div(a: Expr, b: Expr) -> Expr:
    if is_const(b, 1.0):
        return a
    return _binary(Op.DIV, a, b)


def binary(op: Op, a: Expr, b: Expr) -> Expr:
    return _binary(op, a, b)


def neg(a: Expr) -> Expr:
    if isinstance(a, Apply) and a.op is Op.NEG:
        return a.args[0]
    if isinstance(a, Const):
        return Const(-a.value, a.ty)
    return Apply(Op.NEG, (a,), a.ty)


def unary(op: Op, a: Expr) -> Expr:
    real_out = op in (Op.ABS, Op.RE, Op.IM, Op.STEP, Op.SIGN)
    return Apply(op, (a,), Type(a.ty.dims, a.ty.complex and not real_out))


def conj(a: Expr) -> Expr:
    return Apply(Op.CONJ, (a,), a.ty) if a.ty.complex else a


def re(a: Expr) -> Expr:
    return Apply(Op.RE, (a,), Type(a.ty.dims)) if a.ty.complex else a


def im(a: Expr) -> Expr:
    return Apply(Op.IM, (a,), Type(a.ty.dims))


def to_complex(re_part: Expr, im_part: Expr) -> Expr:
    dims = broadcast(re_part.ty.dims, im_part.ty.dims)
    assert dims is not None
    return Apply(Op.COMPLEX, (re_part, im_part), Type(dims, True))


def matmul(a: Expr, b: Expr) -> Expr:
    x, y = a.ty.dims, b.ty.dims
    if not x or not y or x[-1] != y[0]:
        raise InternalError("autodiff", f"bad contraction {a.ty} @ {b.ty}")
    return Apply(Op.MATMUL, (a, b), Type(x[:-1] + y[1:], a.ty.complex or b.ty.complex))


def outer(a: Expr, b: Expr) -> Expr:
    return Apply(Op.OUTER, (a, b), Type(a.ty.dims + b.ty.dims, a.ty.complex or b.ty.complex))


def tensordot(a: Expr, c: Expr, n: int) -> Expr:
    """The last n dims of `a` contracted with the first n of `c` (the adjoints of 3-dim products)."""
    if a.ty.dims[len(a.ty.dims) - n:] != c.ty.dims[:n]:
        raise InternalError("autodiff", f"bad contraction {a.ty} . {c.ty} over {n} dims")
    ty = Type(a.ty.dims[:len(a.ty.dims) - n] + c.ty.dims[n:], a.ty.complex or c.ty.complex)
    return Apply(Op.TENSORDOT, (a, c), ty, str(n))


def transpose(a: Expr) -> Expr:
    if isinstance(a, Apply) and a.op is Op.TRANSPOSE:
        return a.args[0]
    return Apply(Op.TRANSPOSE, (a,), Type(a.ty.dims[::-1], a.ty.complex))


def sum_over(a: Expr, dim: str) -> Expr:
    return Apply(Op.SUM, (a,), Type(tuple(d for d in a.ty.dims if d != dim), a.ty.complex), dim)


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


def diag(a: Expr) -> Expr:
    return Apply(Op.DIAG, (a,), Type(a.ty.dims * 2, a.ty.complex))


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
        for d in g.ty.dims:
            if d not in target.dims:
                out = sum_over(out, d)
        if out.ty.dims != target.dims:
            if out.ty.dims[::-1] != target.dims:
                raise InternalError("autodiff", f"cannot reduce {g.ty} to {target}")
            out = transpose(out)
    return out if target.complex else re(out)


SCALAR_ONE = Const(1.0, SCALAR)
