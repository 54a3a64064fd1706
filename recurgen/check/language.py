"""The spec language's vocabulary, as the checker enforces it: its functions, domain words, reserved names and
size limits, and the shape rules (named broadcasting) every stage shares."""

from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import replace

from .. import ir
from ..ir import Kind, Op, Type

MAX_NAME = 40
IDENT = re.compile(rf"[A-Za-z][A-Za-z0-9_]{{0,{MAX_NAME - 1}}}\Z")
# Bounds on an expression after `let`s are inlined. Lets share subtrees, so `let a2 = a1 + a1` doubles
# the tree that every later pass walks: without a bound, forty such lines hang the compiler.
MAX_EXPR_NODES = 2000
MAX_EXPR_DEPTH = 96

FUNCTIONS: dict[str, Op] = {
    "exp": Op.EXP, "log": Op.LOG, "sigmoid": Op.SIGMOID, "logsigmoid": Op.LOGSIGMOID, "softplus": Op.SOFTPLUS,
    "silu": Op.SILU, "sqrt": Op.SQRT, "abs": Op.ABS, "tanh": Op.TANH, "sin": Op.SIN, "cos": Op.COS, "relu": Op.RELU,
    "Re": Op.RE, "Im": Op.IM,
    "conj": Op.CONJ, "max": Op.MAX, "min": Op.MIN, "outer": Op.OUTER, "diag": Op.DIAG, "sum": Op.SUM,
    "norm": Op.NORM, "normalize": Op.NORMALIZE, "complex": Op.COMPLEX,
}
# Reductions that are not ops of their own: the checker writes them out with `max(x, N)` (Op.AMAX), `exp`, `sum`
# and `log`, in the stable form (the max subtracted first), so every later stage knows them already.
SOFT_REDUCTIONS = ("softmax", "logsumexp")
ARITY = {Op.MAX: 2, Op.MIN: 2, Op.OUTER: 2, Op.COMPLEX: 2}
REAL_ONLY = frozenset({Op.SIGMOID, Op.LOGSIGMOID, Op.SOFTPLUS, Op.SILU, Op.TANH, Op.SIN, Op.COS, Op.RELU, Op.MAX,
                       Op.MIN, Op.COMPLEX})
# Functions people reach for from numpy/torch, and how the language writes them.
FUNCTION_ALIASES = {
    "transpose": "a transpose is written `x.T`", "dot": "contractions are written `a @ b`",
    "matmul": "contractions are written `a @ b`", "einsum": "contractions are written `a @ b`",
    "pow": "powers are written `a ** b`", "eye": "the identity is `I` (or `I(K)`)",
    "identity": "the identity is `I` (or `I(K)`)", "mean": "write `sum(x, N) / N`",
    "rsqrt": "write `1 / sqrt(x)`", "exp2": "write `exp(x * log(2))`", "square": "write `x * x` or `x ** 2`",
    "logsoftmax": "write `x - logsumexp(x, N)`", "amax": "the largest element is `max(x)`, along a dim `max(x, N)`",
    "l2norm": "write `normalize(x)`", "cumsum": "cumulative sums are what the recurrence computes",
}
DOMAIN_WORDS = {
    "logdecay": ir.Domain(hi=0.0, hi_open=False, logspace=True),
    "positive": ir.Domain(lo=0.0),
    "negative": ir.Domain(hi=0.0),
    "nonnegative": ir.Domain(lo=0.0, lo_open=False),
    "nonpositive": ir.Domain(hi=0.0, hi_open=False),
    "unit": ir.Domain(lo=0.0, hi=1.0),
    "normalized": ir.Domain(normalized=True),
}
# Names the language, the generated code or the public call already use, with the reason a
# diagnostic gives for each group.
_LANGUAGE_NAMES = {
    "I": "the identity matrix", "prev": "the function `prev(S)`", "new": "the function `new(M)`",
    "head": "the head index of a `const`",
    "given": "the function `given(x)`", "softmax": "the function `softmax(x, N)`",
    "logsumexp": "the function `logsumexp(x, N)`", "select": "the function `select(switch, a, b)`",
    "H": "the number of heads in a `const`", "inf": "infinity in intervals", "pi": "the constant pi",
    "j": "the imaginary unit's suffix", "real": "an annotation", "complex": "an annotation and a function",
    # Lark lexes a keyword as a name where only a name fits, so `let output = ...` would parse; a reader
    # could not tell the statements apart.
    **dict.fromkeys(("recurrence", "input", "param", "const", "option", "dim", "state", "let", "update", "output",
                     "api", "layout", "for", "in", "when"), "a keyword of the spec language"),
}
_GENERATED_NAMES = {
    "tl": "a module the generated code imports", "triton": "a module the generated code imports",
    "torch": "a module the generated code imports", "math": "a module the generated code imports",
    "recurgen": "a module the generated code imports",
    **dict.fromkeys(("self", "cls", "ctx", "grad", "dtype", "device", "mode", "final_state"),
                    "a name in the generated code"),
    **dict.fromkeys(("cu_seqlens", "initial_state", "output_final_state", "backend", "checkpoint_every",
                     "chunk_size"), "an argument of the generated public call"),
    **dict.fromkeys(("INPUTS", "PARAMS", "STATES", "OUTPUTS", "OPTIONS", "ARG_ORDER", "FIXED_DIMS", "TILED_DIM",
                     "SPEC_NAME", "SPEC_SHA256", "RECURGEN_VERSION", "hashlib", "itertools", "os",
                     "Optional"),
                    "a module-level name of the generated code"),
}
RESERVED = frozenset({*FUNCTIONS, *_LANGUAGE_NAMES, *_GENERATED_NAMES}) | frozenset(keyword.kwlist) \
    | frozenset(keyword.softkwlist) | frozenset(dir(builtins))
IMPLICIT_SCALE = "scale"
_ALLOWED_IN = {  # what a const or an option may read
    "const": frozenset({Kind.CONST, Kind.OPTION, Kind.DIM, Kind.HEAD, Kind.HEADS}),
    "option": frozenset({Kind.CONST, Kind.OPTION, Kind.DIM}),
}


_PER_HEAD = "a const is one number per head: it may use numbers, dims, `head`, `H` and other consts; " \
    "use a `let` for values computed from inputs"
_PER_CALL = "an option is one number per call: it may use numbers, dims and consts"


def _fmt_shape(dims: tuple[str, ...]) -> str:
    if UNKNOWN in dims:
        return "[n, n] (an `I` whose size is not known yet)"
    return f"[{', '.join(ir.base_dim(d) for d in dims)}]"  # an alias is its dim, to the spec's writer


def _short(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:20]}..."


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def reserved_reason(name: str) -> str | None:
    """Why `name` cannot be declared, or None if it can."""
    if name in _LANGUAGE_NAMES:
        return _LANGUAGE_NAMES[name]
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return "a Python keyword"
    if name in FUNCTIONS:
        return f"the function `{name}(...)` of the language"
    if name in _GENERATED_NAMES:
        return _GENERATED_NAMES[name]
    if name in RESERVED:
        return "a Python builtin"
    return None


def broadcast(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...] | None:
    """Named broadcasting: equal shapes, a scalar, or one operand's dims a subset of the other's."""
    if a == b or not b:
        return a
    if not a:
        return b
    if len(set(a)) == len(a) and len(set(b)) == len(b):
        if set(a) <= set(b):
            return b
        if set(b) <= set(a):
            return a
        return None
    # a repeated dim: the smaller operand holds every occurrence, in the same order (`I(E)` against [E, E, D])
    for small, big in ((a, b), (b, a)):
        if tuple(d for d in big if d in small) == small:
            return big
    return None


def rename(e: ir.Expr, dims: tuple[str, ...]) -> ir.Expr:
    """`e` with its dims named `dims`, position by position (the same values): a RENAME node, or none."""
    if isinstance(e, ir.Apply) and e.op is Op.RENAME:
        e = e.args[0]
    if e.ty.dims == dims:
        return e
    return ir.Apply(Op.RENAME, (e,), Type(dims, e.ty.complex), span=e.span)


def meet_repeated(lhs: ir.Expr, rhs: ir.Expr) -> tuple[ir.Expr, ir.Expr]:
    """Repeated dims in elementwise operations: an operand that has `E` once meets the **last** `E` of one that has
    it twice (`M: [E, E, D]` times `h: [E, D]` is M[i, j, d] h[j, d], as `M @ h` for matrices). Both occurrences
    that meet are renamed to the alias `_E`, so the product is [E, _E, D] and named broadcasting, reductions
    (`sum(M * h, E)` reduces `_E`) and every later stage stay by name."""
    for d in dict.fromkeys((*lhs.ty.dims, *rhs.ty.dims)):
        counts = (lhs.ty.dims.count(d), rhs.ty.dims.count(d))
        alias = ir.alias_dim(d)
        if sorted(counts) != [1, 2] or alias in lhs.ty.dims or alias in rhs.ty.dims:
            continue
        big_is_lhs = counts[0] == 2
        big, small = (lhs, rhs) if big_is_lhs else (rhs, lhs)
        last = len(big.ty.dims) - 1 - big.ty.dims[::-1].index(d)
        big = rename(big, tuple(alias if i == last else x for i, x in enumerate(big.ty.dims)))
        small = rename(small, tuple(alias if x == d else x for x in small.ty.dims))
        lhs, rhs = (big, small) if big_is_lhs else (small, big)
    return lhs, rhs


def reduced_dim(dims: tuple[str, ...], d: str) -> str:
    """The dim a reduction over `d` (`sum(x, d)`, softmax, ...) removes: the occurrence of `d` another operand met
    (its alias) when `x` holds both, else `d` itself."""
    alias = ir.alias_dim(d)
    return alias if alias in dims and d in dims else d


def unalias(e: ir.Expr) -> ir.Expr:
    """A statement's value with its aliases named back (`[E, _E, D]` is `[E, E, D]` to the state it updates)."""
    dims = tuple(ir.base_dim(d) for d in e.ty.dims)
    return e if dims == e.ty.dims else rename(e, dims)


UNKNOWN = "?"  # the dim of a bare `I` until its neighbour tells its size


def _fix_eye(e: ir.Expr, dim: str) -> ir.Expr:
    def fix(n: ir.Expr) -> ir.Expr | None:
        if isinstance(n, ir.Apply) and UNKNOWN in n.ty.dims:
            dims = tuple(dim if d == UNKNOWN else d for d in n.ty.dims)
            return replace(n, ty=Type(dims, n.ty.complex), attr=dim if n.op is Op.EYE else n.attr)
        return None
    return ir.rebuild(e, fix)
