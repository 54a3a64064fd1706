"""autodiff: reverse-mode differentiation of IR expression DAGs, producing IR expressions.

Complex values follow PyTorch's convention (the cotangent of z is dL/dRe z + i dL/dIm z), so a
holomorphic f contributes `g * conj(f'(z))`. Structurally equal sub-expressions are one node.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import InternalError
from ..ir import Apply, Const, Expr, Kind, Op, Var
from . import build as b

_NO_GRAD_KINDS = frozenset({Kind.DIM, Kind.HEAD, Kind.HEADS, Kind.CONST, Kind.LOOP})


def is_leaf(e: Expr) -> bool:
    """Vars, constants and the loop slices of inputs (`k[j]`, loaded by the kernels as tiles of their own)."""
    if isinstance(e, Var | Const):
        return True
    return e.op is Op.INDEX and isinstance(e.args[0], Var) and e.args[0].kind is Kind.INPUT


def _topo(roots: Iterable[Expr]) -> list[Expr]:
    order: list[Expr] = []
    seen: set[Expr] = set()
    stack: list[tuple[Expr, bool]] = [(r, False) for r in roots]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        if not is_leaf(node):
            stack.extend((c, False) for c in node.args if c not in seen)
    return order


def vjp(roots: list[tuple[Expr, Expr]]) -> dict[Expr, Expr]:
    """Cotangents of every differentiable leaf reachable from `roots` (pairs of value, cotangent)."""
    cot: dict[Expr, Expr] = {}

    def acc(node: Expr, g: Expr | None) -> None:
        if g is None or isinstance(node, Const):
            return
        if isinstance(node, Var) and node.kind in _NO_GRAD_KINDS:
            return
        g = b.unbroadcast(g, node.ty)
        cot[node] = b.add(cot[node], g) if node in cot else g

    for value, g in roots:
        acc(value, g)
    leaves: dict[Expr, Expr] = {}
    for node in reversed(_topo(v for v, _ in roots)):
        g = cot.pop(node, None)
        if g is None:
            continue
        if is_leaf(node):
            leaves[node] = g
            continue
        assert isinstance(node, Apply)
        for arg, ga in zip(node.args, _rule(node, g), strict=True):
            acc(arg, ga)
    return leaves


def _rule(n: Apply, g: Expr) -> tuple[Expr | None, ...]:
    """The cotangents of `n`'s arguments given the cotangent `g` of `n` (None: no contribution)."""
    op, args = n.op, n.args
    if op is Op.EYE:
        return ()
    x = args[0]
    if op is Op.ADD:
        return g, g
    if op is Op.SUB:
        return g, b.neg(g)
    if op is Op.NEG:
        return (b.neg(g),)
    if op is Op.MUL:
        return b.mul(g, b.conj(args[1])), b.mul(g, b.conj(x))
    if op is Op.DIV:
        return b.div(g, b.conj(args[1])), b.neg(b.mul(g, b.conj(b.div(n, args[1]))))
    if op is Op.POW:
        c = args[1]
        gx = b.mul(g, b.conj(b.mul(c, b.binary(Op.POW, x, b.sub(c, b.const(1.0))))))
        gc = None if isinstance(c, Const) else b.mul(g, b.conj(b.mul(n, b.unary(Op.LOG, x))))
        return gx, gc
    if op is Op.EXP:
        return (b.mul(g, b.conj(n)),)
    if op is Op.LOG:
        return (b.div(g, b.conj(x)),)
    if op is Op.SQRT:
        return (b.div(b.mul(g, b.const(0.5)), b.conj(n)),)
    if op is Op.SIGMOID:
        return (b.mul(g, b.mul(n, b.sub(b.const(1.0), n))),)
    if op is Op.LOGSIGMOID:
        return (b.mul(g, b.unary(Op.SIGMOID, b.neg(x))),)
    if op is Op.SOFTPLUS:
        return (b.mul(g, b.unary(Op.SIGMOID, x)),)
    if op is Op.SILU:
        s = b.unary(Op.SIGMOID, x)
        return (b.mul(g, b.mul(s, b.add(b.const(1.0), b.mul(x, b.sub(b.const(1.0), s))))),)
    if op is Op.SIN:
        return (b.mul(g, b.unary(Op.COS, x)),)
    if op is Op.COS:
        return (b.neg(b.mul(g, b.unary(Op.SIN, x))),)
    if op is Op.TANH:
        return (b.mul(g, b.sub(b.const(1.0), b.mul(n, n))),)
    if op is Op.RELU:
        return (b.mul(g, b.unary(Op.STEP, x)),)
    if op is Op.ABS:
        if x.ty.complex:
            return (b.mul(g, b.div(x, n)),)
        return (b.mul(g, b.unary(Op.SIGN, x)),)
    if op in (Op.STEP, Op.SIGN):
        return (None,)
    if op is Op.RE:
        return (b.to_complex(g, b.const(0.0)),)
    if op is Op.IM:
        return (b.to_complex(b.const(0.0), g),)
    if op is Op.CONJ:
        return (b.conj(g),)
    if op is Op.COMPLEX:
        return b.re(g), b.im(g)
    if op in (Op.MAX, Op.MIN):
        first = b.unary(Op.STEP, b.sub(x, args[1]) if op is Op.MAX else b.sub(args[1], x))
        return b.mul(g, first), b.mul(g, b.sub(b.const(1.0), first))
    if op is Op.MATMUL:
        return _matmul_rule(x, args[1], g)
    if op is Op.OUTER:
        y = args[1]
        gx = b.matmul(g, b.conj(y)) if len(y.ty.dims) == 1 else b.tensordot(g, b.conj(y), len(y.ty.dims))
        gy = b.matmul(b.conj(x), g) if len(x.ty.dims) == 1 else b.tensordot(b.conj(x), g, len(x.ty.dims))
        return gx, gy
    if op is Op.DIAG:
        return (b.diagonal(g),)
    if op is Op.DIAGONAL:
        return (b.diag(g),)
    if op is Op.TRANSPOSE:
        return (b.transpose(g),)
    if op is Op.RENAME:  # the cotangent named back, position by position
        return (b.rename(b.unbroadcast(g, n.ty), x.ty.dims),)
    if op is Op.INDEX:  # x[i] took row i of x: its cotangent is g in row i, zeros elsewhere
        return b.embed(g, x.ty, _position(n)), None
    if op is Op.EMBED:
        return (b.index(g, int(n.attr)),)
    if op in (Op.SUM, Op.BROADCAST):
        return (b.broadcast_to(g, x.ty) if op is Op.SUM else b.unbroadcast(g, x.ty),)
    if op is Op.AMAX:  # to the maximal entries (inside softmax and logsumexp the max's gradient cancels: ~0)
        at_max = b.unary(Op.STEP, b.sub(x, b.broadcast_to(n, x.ty)))
        return (b.mul(b.broadcast_to(g, x.ty), at_max),)
    if op is Op.NORM:
        return (b.mul(g, b.div(x, n)),)
    if op is Op.NORMALIZE:
        norm = b.div(x, n)  # ||x||, broadcast over x's dims
        return (b.div(b.sub(g, b.mul(n, b.sum_all(b.mul(g, b.conj(n))))), norm),)
    raise InternalError("autodiff", f"no derivative rule for {op.value}")


def _position(n: Apply) -> int:
    """The position an INDEX node takes (loops are unrolled before differentiation: it is a constant)."""
    idx = n.args[1]
    if not isinstance(idx, Const):
        raise InternalError("autodiff", "an index must be a constant once `for` loops are unrolled")
    return int(idx.value.real)


def _matmul_rule(a: Expr, c: Expr, g: Expr) -> tuple[Expr, Expr]:
    ra, rc = len(a.ty.dims), len(c.ty.dims)
    ca, cc = b.conj(a), b.conj(c)
    if ra == 1 and rc == 3:  # [i] @ [i, j, k] -> [j, k]
        return b.tensordot(cc, g, 2), b.outer(ca, g)
    if ra == 3 and rc == 1:  # [i, j, k] @ [k] -> [i, j]
        return b.outer(g, cc), b.tensordot(g, ca, 2)
    if ra == 1 and rc == 1:  # dot product
        return b.mul(g, cc), b.mul(g, ca)
    if ra == 1:  # [i] @ [i, j] -> [j]
        return b.matmul(cc, g), b.outer(ca, g)
    if rc == 1:  # [i, j] @ [j] -> [i]
        return b.outer(g, cc), b.matmul(g, ca)
    return b.matmul(g, b.transpose(cc)), b.matmul(b.transpose(ca), g)
