"""The smart constructors of IR expressions, one folding rule set for every stage, and factor lists.

The analysis (a decay, a Householder beta, a chunk form) and code generation (the step, its adjoint, the two
sweeps: codegen/build.py adds the constructors only they need) build derived expressions with these: each
computes the result type with the checker's broadcasting rule and folds the trivial cases (0 and 1, constants,
double negation and conjugation, `-1 * x`, a negation or a scalar factor moved out of a product), so what is
derived stays small and readable in generated code. Derived expressions are built from the spec's own nodes, so
they keep the spans of what the user wrote; the nodes built here carry no span of their own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from .. import ir
from ..check.language import broadcast
from ..errors import InternalError
from ..ir import Kind, Op, Type

HOLE = "□"  # the placeholder for "the state" in a linear map L(□)
ONE = ir.Const(1.0)
ZERO = ir.Const(0.0)


def hole(ty: Type) -> ir.Var:
    """The placeholder `□` standing for a state of type `ty` in a linear map."""
    return ir.Var(HOLE, Kind.STATE, ty)


def is_hole(e: ir.Expr) -> bool:
    return isinstance(e, ir.Var) and e.name == HOLE


def is_one(e: ir.Expr) -> bool:
    return isinstance(e, ir.Const) and e.value == 1


def is_zero(e: ir.Expr) -> bool:
    return isinstance(e, ir.Const) and e.value == 0


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    # Named broadcasting as the checker does it; when neither operand's dims contain the other's (a [K] gate
    # times a [V] gate, in the analysis' factor lists) the union is what the reference evaluator aligns to.
    known = broadcast(a, b)
    if known is not None:
        return known
    if len(a) >= len(b) and set(b) <= set(a):
        return a
    if set(a) <= set(b):
        return b
    return a + tuple(d for d in b if d not in a)


def _cx(*es: ir.Expr) -> bool:
    return any(e.ty.complex for e in es)


def const(v: complex | float) -> ir.Const:
    if isinstance(v, complex) and v.imag == 0:
        v = v.real
    return ir.Const(v, Type((), isinstance(v, complex)))


def neg(a: ir.Expr) -> ir.Expr:
    if isinstance(a, ir.Const):
        return const(-a.value)
    if isinstance(a, ir.Apply) and a.op is Op.NEG:
        return a.args[0]
    return ir.Apply(Op.NEG, (a,), a.ty)


def add(a: ir.Expr | None, b: ir.Expr | None) -> ir.Expr | None:
    if a is None or is_zero(a):
        return b
    if b is None or is_zero(b):
        return a
    if isinstance(a, ir.Const) and isinstance(b, ir.Const):
        return const(a.value + b.value)
    if isinstance(b, ir.Apply) and b.op is Op.NEG:
        return sub(a, b.args[0])
    return ir.Apply(Op.ADD, (a, b), Type(_union(a.ty.dims, b.ty.dims), _cx(a, b)))


def sub(a: ir.Expr | None, b: ir.Expr | None) -> ir.Expr | None:
    if b is None or is_zero(b):
        return a
    if a is None or is_zero(a):
        return neg(b)
    if isinstance(a, ir.Const) and isinstance(b, ir.Const):
        return const(a.value - b.value)
    return ir.Apply(Op.SUB, (a, b), Type(_union(a.ty.dims, b.ty.dims), _cx(a, b)))


def mul(a: ir.Expr, b: ir.Expr) -> ir.Expr:
    if is_one(a):
        return b
    if is_one(b):
        return a
    if isinstance(a, ir.Const) and isinstance(b, ir.Const):
        return const(a.value * b.value)
    if isinstance(a, ir.Const) and a.value == -1:
        return neg(b)
    if isinstance(b, ir.Const) and b.value == -1:
        return neg(a)
    if isinstance(a, ir.Apply) and a.op is Op.NEG:
        return neg(mul(a.args[0], b))
    if isinstance(b, ir.Apply) and b.op is Op.NEG:
        return neg(mul(a, b.args[0]))
    if a.ty.dims and isinstance(b, ir.Apply) and b.op is Op.MUL and not b.args[0].ty.dims:
        return mul(b.args[0], mul(a, b.args[1]))  # scalars first: c ⊙ (2 · d) -> 2 · (c ⊙ d)
    return ir.Apply(Op.MUL, (a, b), Type(_union(a.ty.dims, b.ty.dims), _cx(a, b)))


def product(factors: Iterable[ir.Expr]) -> ir.Expr:
    """The product of factors, constants first and folded; `1` for none."""
    fs = list(factors)
    c: complex | float = 1.0
    rest: list[ir.Expr] = []
    for f in fs:
        if isinstance(f, ir.Const):
            c *= f.value
        else:
            rest.append(f)
    out: ir.Expr = const(c)
    for f in rest:
        out = mul(out, f)
    return out


def div(a: ir.Expr, b: ir.Expr) -> ir.Expr:
    if is_one(b):
        return a
    return ir.Apply(Op.DIV, (a, b), Type(_union(a.ty.dims, b.ty.dims), _cx(a, b)))


def reciprocal(b: ir.Expr) -> ir.Expr:
    if isinstance(b, ir.Const) and b.value != 0:
        return const(1 / b.value)
    return div(ONE, b)


def matmul(a: ir.Expr, b: ir.Expr) -> ir.Expr:
    x, y = a.ty.dims, b.ty.dims
    if not x or not y or x[-1] != y[0]:
        raise InternalError("analysis", f"bad contraction {a.ty} @ {b.ty}")
    return ir.Apply(Op.MATMUL, (a, b), Type(x[:-1] + y[1:], _cx(a, b)))


def outer(a: ir.Expr, b: ir.Expr) -> ir.Expr:
    # Scalars inside an outer product read better outside it: outer(k, scale * do) = scale * outer(k, do).
    for i, x in enumerate((a, b)):
        if isinstance(x, ir.Apply) and x.op is Op.MUL and not x.args[0].ty.dims and x.args[1].ty.dims:
            rest = (x.args[1], b) if i == 0 else (a, x.args[1])
            return mul(x.args[0], outer(*rest))
    return ir.Apply(Op.OUTER, (a, b), Type(a.ty.dims + b.ty.dims, _cx(a, b)))


def transpose(a: ir.Expr) -> ir.Expr:
    if len(a.ty.dims) < 2:
        return a
    if isinstance(a, ir.Apply) and a.op is Op.TRANSPOSE:
        return a.args[0]
    if isinstance(a, ir.Apply) and a.op in (Op.DIAG, Op.EYE):
        return a
    return ir.Apply(Op.TRANSPOSE, (a,), Type(a.ty.dims[::-1], a.ty.complex))


def conj(a: ir.Expr) -> ir.Expr:
    if not a.ty.complex:
        return a
    if isinstance(a, ir.Apply) and a.op is Op.CONJ:
        return a.args[0]
    return ir.Apply(Op.CONJ, (a,), a.ty)


_REAL_OUT = frozenset({Op.ABS, Op.RE, Op.IM, Op.STEP, Op.SIGN})  # real whatever their argument


def unary(op: Op, a: ir.Expr) -> ir.Expr:
    return ir.Apply(op, (a,), Type(a.ty.dims, a.ty.complex and op not in _REAL_OUT))


def binary(op: Op, a: ir.Expr, b: ir.Expr) -> ir.Expr:
    """An elementwise binary op with no folding rule of its own (pow, max, min)."""
    return ir.Apply(op, (a, b), Type(_union(a.ty.dims, b.ty.dims), _cx(a, b)))


def log(a: ir.Expr) -> ir.Expr:
    """log(a), undoing the obvious forms: log(exp(x)) = x, log(sigmoid(x)) = logsigmoid(x)."""
    if isinstance(a, ir.Apply) and a.op is Op.EXP:
        return a.args[0]
    if isinstance(a, ir.Apply) and a.op is Op.SIGMOID:
        return unary(Op.LOGSIGMOID, a.args[0])
    if isinstance(a, ir.Const) and not isinstance(a.value, complex) and a.value > 0:
        return const(math.log(a.value))
    return unary(Op.LOG, a)


def sum_over(x: ir.Expr, dims: Sequence[str]) -> ir.Expr:
    """Sum `x` over the named dims (in order); the adjoint of broadcasting."""
    for d in dims:
        x = ir.Apply(Op.SUM, (x,), Type(tuple(n for n in x.ty.dims if n != d), x.ty.complex), d)
    return x


def diag(x: ir.Expr) -> ir.Expr:
    return ir.Apply(Op.DIAG, (x,), Type(x.ty.dims * 2, x.ty.complex))


def eye(dim: str) -> ir.Expr:
    return ir.Apply(Op.EYE, (), Type((dim, dim)), dim)


def size(e: ir.Expr, cap: int) -> int:
    """Tree size of `e`, counting at most `cap + 1` nodes (lets share subtrees: never walk them all)."""
    n = 0
    stack = [e]
    while stack and n <= cap:
        x = stack.pop()
        n += 1
        stack.extend(ir.children(x))
    return n


def depends_on_inputs(e: ir.Expr) -> bool:
    return any(isinstance(n, ir.Var) and n.kind is Kind.INPUT for n in ir.walk(e))


def remove_all(pool: Sequence[ir.Expr], items: Sequence[ir.Expr]) -> list[ir.Expr] | None:
    """Multiset difference `pool - items` by structural equality, or None if an item is missing."""
    rest = list(pool)
    for it in items:
        for i, p in enumerate(rest):
            if p == it:
                del rest[i]
                break
        else:
            return None
    return rest


def same_multiset(a: Sequence[ir.Expr], b: Sequence[ir.Expr]) -> bool:
    rest = remove_all(a, b)
    return rest is not None and not rest
