"""ir: the resolved, typed spec. Every expression node knows its shape (named dims) and dtype class.

Semantics (per batch element and head, token by token):
  * inputs are read at token t; params and consts are per head; options are per call;
  * inside `update`, a state name means its value after token t-1 (all updates are simultaneous),
    except inside a `for` update, where it means the running value of that state; `new(M)` means another
    state's value after token t (the checker substitutes M's update, so later stages never see it);
  * inside `output`, a state name means its value after token t, `prev(S)` its value after t-1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import Enum

from .errors import NOSPAN, Span

_POS = {"compare": False, "repr": False, "default": NOSPAN}


class Kind(Enum):
    """What a name refers to."""

    INPUT = "input"
    PARAM = "param"
    CONST = "const"
    OPTION = "option"
    STATE = "state"  # in updates: after t-1 (running value in loops); in outputs: after t
    PREV_STATE = "prev"  # `prev(S)`: after t-1 (in outputs; in updates the same as a bare name, stated explicitly)
    NEW_STATE = "new"  # `new(M)` in an update: M after token t (the checker inlines M's update in its place)
    DIM = "dim"  # the size of a named dimension, as a number
    HEAD = "head"  # the head index (consts only)
    HEADS = "heads"  # the number of heads H (consts only)
    LOOP = "loop"  # the index of a `for` update


class Op(Enum):
    ADD = "+"
    SUB = "-"
    MUL = "*"
    DIV = "/"
    POW = "**"
    NEG = "neg"
    MATMUL = "@"
    OUTER = "outer"
    DIAG = "diag"
    EYE = "I"
    TRANSPOSE = "T"
    SUM = "sum"
    AMAX = "amax"  # the largest element (attr: along that dim only); `max(x, N)` / `max(x)` in a spec
    NORM = "norm"
    NORMALIZE = "normalize"
    INDEX = "index"
    MAX = "max"
    MIN = "min"
    EXP = "exp"
    LOG = "log"
    SIGMOID = "sigmoid"
    LOGSIGMOID = "logsigmoid"
    SOFTPLUS = "softplus"
    SILU = "silu"
    SQRT = "sqrt"
    ABS = "abs"
    TANH = "tanh"
    SIN = "sin"
    COS = "cos"
    RELU = "relu"
    RE = "Re"
    IM = "Im"
    CONJ = "conj"
    COMPLEX = "complex"
    # Internal: produced by the code generator's autodiff, never by the checker.
    STEP = "step"  # 1 where x >= 0 else 0
    SIGN = "sign"
    DIAGONAL = "diagonal"  # the diagonal of a square matrix
    BROADCAST = "broadcast"  # expand to `ty.dims`
    TENSORDOT = "tensordot"  # the last `attr` dims of args[0] contracted with the first `attr` dims of args[1]
    EMBED = "embed"  # the adjoint of INDEX: args[0] placed at position `attr` of a new first dim `ty.dims[0]`
    # Produced by the checker for repeated dims (`M: [E, E, D]` times `h: [E, D]`): the same values, some dims
    # given their alias names (`ty.dims`, position by position); see `alias_dim`.
    RENAME = "rename"


ELEMENTWISE_UNARY = frozenset({Op.NEG, Op.EXP, Op.LOG, Op.SIGMOID, Op.LOGSIGMOID, Op.SOFTPLUS, Op.SILU, Op.SQRT,
                               Op.ABS, Op.TANH, Op.SIN, Op.COS, Op.RELU, Op.RE, Op.IM, Op.CONJ, Op.STEP, Op.SIGN})
ELEMENTWISE_BINARY = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.POW, Op.MAX, Op.MIN, Op.COMPLEX})


@dataclass(frozen=True, slots=True)
class Type:
    dims: tuple[str, ...]  # named dims, outermost first; () for a scalar
    complex: bool = False

    def __str__(self) -> str:
        return f"[{', '.join(self.dims)}]" + (" complex" if self.complex else "")


SCALAR = Type(())


@dataclass(frozen=True, slots=True)
class Const:
    value: complex | float
    ty: Type = SCALAR
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class Var:
    name: str
    kind: Kind
    ty: Type
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class Apply:
    op: Op
    args: tuple[Expr, ...]
    ty: Type
    attr: str = ""  # EYE: its dim; INDEX with a literal: the position as text
    span: Span = field(**_POS)


Expr = Const | Var | Apply


def children(e: Expr) -> tuple[Expr, ...]:
    return e.args if isinstance(e, Apply) else ()


def walk(e: Expr) -> Iterator[Expr]:
    """Pre-order traversal."""
    yield e
    for c in children(e):
        yield from walk(c)


def rebuild(e: Expr, fn: Callable[[Expr], Expr | None]) -> Expr:
    """Bottom-up rewrite: `fn` returns a replacement or None to keep the (rebuilt) node."""
    if isinstance(e, Apply):
        new_args = tuple(rebuild(a, fn) for a in e.args)
        if new_args != e.args:
            e = replace(e, args=new_args)
    out = fn(e)
    return e if out is None else out


def uses(e: Expr, kinds: frozenset[Kind] | set[Kind]) -> set[str]:
    return {n.name for n in walk(e) if isinstance(n, Var) and n.kind in kinds}


@dataclass(frozen=True, slots=True)
class Domain:
    """The value range an input or param is declared to take; drives assumptions and test inputs."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = True
    hi_open: bool = True
    logspace: bool = False  # a gate given as a log-decay: exp(x) is the decay, x <= 0
    normalized: bool = False  # unit L2 norm along the last dim

    def __str__(self) -> str:
        parts = []
        if self.logspace:
            parts.append("logdecay")
        if (self.lo, self.hi) != (-math.inf, math.inf):
            lo = "-inf" if self.lo == -math.inf else f"{self.lo:g}"
            hi = "inf" if self.hi == math.inf else f"{self.hi:g}"
            parts.append(f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}")
        if self.normalized:
            parts.append("normalized")
        return " ".join(parts)

    def contains(self, x: float) -> bool:
        lo_ok = x > self.lo if self.lo_open else x >= self.lo
        hi_ok = x < self.hi if self.hi_open else x <= self.hi
        return lo_ok and hi_ok


UNBOUNDED = Domain()


@dataclass(frozen=True, slots=True)
class Tensor:
    """An input (per token), a param (per head) or a state (per batch element and head)."""

    name: str
    ty: Type
    domain: Domain = UNBOUNDED
    span: Span = field(**_POS)
    default: float | None = None  # an optional input or param: the value it takes when the call omits it
    when: str | None = None  # a state that exists only when this switch option is on (1)


@dataclass(frozen=True, slots=True)
class Binding:
    """A const (per head, may use `head` and `H`) or an option (a per-call scalar with a default)."""

    name: str
    value: Expr
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class Dim:
    name: str
    size: int | None  # fixed by `dim N = 4`, or None: read from the arguments' shapes
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class Loop:
    var: str
    dim: str
    size: int


@dataclass(frozen=True, slots=True)
class Update:
    state: str
    value: Expr  # `let`s are inlined
    loop: Loop | None = None
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class Output:
    name: str
    value: Expr
    span: Span = field(**_POS)

    @property
    def ty(self) -> Type:
        return self.value.ty


def product_subscripts(e: Apply) -> str:
    """The einsum of a product over leading batch dims (`...`): `@` contracts one dim, a tensordot `attr` dims,
    an outer product none. Positional, so a 3-dim `[K, K, V]` that repeats a name is read right."""
    la, lb = len(e.args[0].ty.dims), len(e.args[1].ty.dims)
    n = {Op.MATMUL: 1, Op.OUTER: 0}[e.op] if e.op is not Op.TENSORDOT else int(e.attr)
    if n == 0 and la == lb == 1:
        return "...a,...b->...ab"
    # vectors and matrices keep the letters the generated modules have always had: [a] b [c]
    lhs, shared, rhs = ("a"[:la - n], "b", "c"[:lb - n]) if n == 1 and la <= 2 and lb <= 2 else \
        ("adef"[:la - n], "bghi"[:n], "cjkl"[:lb - n])
    return f"...{lhs}{shared},...{shared}{rhs}->...{lhs}{rhs}"


def reduced_axes(e: Apply) -> tuple[int, ...]:
    """The axes of its argument a sum or max reduces: every axis named `attr` ([K, K, V] summed over K loses both
    K), or all of them."""
    src = e.args[0].ty.dims
    return tuple(i for i, d in enumerate(src) if d == e.attr) if e.attr else tuple(range(len(src)))


def alias_dim(dim: str) -> str:
    """The name of a repeated dim's occurrence that meets another operand (`M: [E, E, D]` times `h: [E, D]`: the
    last `E` of M and h's `E` become `_E`), so every later stage keeps broadcasting and reducing by name. It starts
    with `_`, which no spec name can; its size, lanes and masks are the dim's own."""
    return f"_{dim}"


def base_dim(dim: str) -> str:
    """The dim an alias (`alias_dim`) stands for; a dim that is no alias is its own base."""
    return dim.lstrip("_")


def aliases(spec: Spec) -> tuple[str, ...]:
    """The aliases of repeated dims (`alias_dim`) the spec's updates and outputs use, in order of appearance."""
    found = (d for e in (*spec.updates, *spec.outputs) for n in walk(e.value) for d in n.ty.dims if d != base_dim(d))
    return tuple(dict.fromkeys(found))


def presence_option(tensor: str) -> str:
    """The hidden option behind `given(tensor)`: 1.0 when the call passes the optional tensor, else 0.0.

    Its name starts with `_`, which no spec name can, so it never clashes and never enters the public call.
    """
    return f"_given_{tensor}"


def prev_input_state(tensor: str) -> str:
    """The hidden state behind `prev(tensor)` of an input: it carries each token's input into the next.

    Like a presence option, its name starts with `_`, so it never clashes with a spec name; it is the last of
    the states (after the declared ones) in `initial_state` and the final state.
    """
    return f"_prev_{tensor}"


def is_hidden(option: str) -> bool:
    return option.startswith("_")


# The generated public call's own arguments (besides the spec's tensors and options) that an `api` line
# may place and rename, with their defaults as Python source.
CALL_ARGS = {"initial_state": "None", "output_final_state": "False", "cu_seqlens": "None", "chunk_size": "None"}


@dataclass(frozen=True, slots=True)
class ApiArg:
    """One argument of the public call as a library spells it: `public` feeds the spec's `target`."""

    public: str
    target: str  # an input, param or option of the spec, or one of CALL_ARGS


@dataclass(frozen=True, slots=True)
class Api:
    """The `api` line: the library's function name and its leading arguments, in order."""

    name: str | None = None
    args: tuple[ApiArg, ...] = ()

    def public(self, target: str) -> str:
        """The name the public call gives `target` (its own name unless the api line renames it)."""
        return next((a.public for a in self.args if a.target == target), target)


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    description: str
    dims: tuple[Dim, ...]
    inputs: tuple[Tensor, ...]
    params: tuple[Tensor, ...]
    consts: tuple[Binding, ...]
    options: tuple[Binding, ...]
    states: tuple[Tensor, ...]
    updates: tuple[Update, ...]
    outputs: tuple[Output, ...]
    arg_order: tuple[str, ...]  # the public call's tensor arguments (inputs and params), in order, by spec name
    path: str = field(default="<spec>", compare=False)
    source: str = field(default="", compare=False, repr=False)
    api: Api = Api()
    heads: bool = True  # False with `layout [B, T]`: the public call's tensors have no head axis
    # the switch options (`state z: [K] when normalize`, `select(normalize, a, b)`) and the value this spec
    # was specialised for: a call with other values runs the spec checked with those (`recurgen.load` does it)
    switches: tuple[tuple[str, float], ...] = ()

    def tensor(self, name: str) -> Tensor:
        for t in (*self.inputs, *self.params, *self.states):
            if t.name == name:
                return t
        raise KeyError(name)

    def update_of(self, state: str) -> Update:
        return next(u for u in self.updates if u.state == state)

    def dim(self, name: str) -> Dim:
        return next(d for d in self.dims if d.name == name)
