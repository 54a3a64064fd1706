"""syntax: the surface tree, exactly what the user wrote (names unresolved, no shapes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Span

_POS = {"compare": False, "repr": False}


@dataclass(frozen=True, slots=True)
class Number:
    value: complex | float  # an `IMAG` literal such as `2j` is complex
    text: str
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    span: Span = field(**_POS)
    func_span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # one of + - * / @ **
    lhs: Expr
    rhs: Expr
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class UnOp:
    op: str  # - or +
    arg: Expr
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class Index:
    base: Expr
    index: Expr
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class Attr:
    base: Expr
    attr: str
    span: Span = field(**_POS)
    attr_span: Span = field(**_POS)


Expr = Number | Name | Call | BinOp | UnOp | Index | Attr


@dataclass(frozen=True, slots=True)
class Ident:
    """A declared name with the span of just the name."""

    name: str
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class Interval:
    lo: Expr
    hi: Expr
    lo_open: bool
    hi_open: bool
    span: Span = field(**_POS)


Annotation = Ident | Interval


@dataclass(frozen=True, slots=True)
class TensorDecl:
    name: Ident
    shape: tuple[Ident, ...]
    annotations: tuple[Annotation, ...]
    span: Span = field(**_POS)
    default: Expr | None = None  # `= 0`: an optional input or param, this value when absent from the call
    when: Ident | None = None  # `when normalize`: a state that exists only when the switch option is on


@dataclass(frozen=True, slots=True)
class Header:
    name: Ident
    description: str
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class Decl:
    """`input`, `param` or `state` followed by tensor declarations."""

    kind: str
    items: tuple[TensorDecl, ...]
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class Bind:
    """`const`, `option`, `let`: a name bound to an expression."""

    kind: str
    name: Ident
    value: Expr
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class DimDecl:
    name: Ident
    size: int
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class Loop:
    var: Ident
    dim: Ident
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class Update:
    target: Ident
    value: Expr
    loop: Loop | None
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class Output:
    name: Ident
    shape: tuple[Ident, ...] | None
    value: Expr
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class ApiArg:
    """One argument of an `api` line: `ours`, or `lib = ours` (the library calls `ours` `lib`)."""

    public: Ident
    target: Ident
    span: Span = field(**_POS)

    @property
    def name(self) -> str:
        return self.target.name


@dataclass(frozen=True, slots=True)
class Api:
    """`api fla_name(arg, ...)`: the public argument order and names where they differ from declarations."""

    name: Ident
    args: tuple[ApiArg, ...]
    span: Span = field(**_POS)


@dataclass(frozen=True, slots=True)
class Layout:
    """`layout [B, T]`: the leading axes of an input in the public call."""

    dims: tuple[Ident, ...]
    span: Span = field(**_POS)


Statement = Decl | Bind | DimDecl | Update | Output | Api | Layout


@dataclass(frozen=True, slots=True)
class Module:
    header: Header
    statements: tuple[Statement, ...]
    path: str
    source: str = field(compare=False, repr=False)
