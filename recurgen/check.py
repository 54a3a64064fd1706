"""check: syntax.Module -> ir.Spec (name resolution, shape and dtype inference, domains, reserved names).

Every problem found becomes a diagnostic; all of them are reported together. A statement that fails
marks what it declares (or updates) as failed, so later statements do not add follow-on errors
("never updated", "used before declared") about the same mistake.
"""

from __future__ import annotations

import builtins
import difflib
import keyword
import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace

from . import ir
from . import syntax as S
from .errors import MAX_DIAGNOSTICS, Diagnostic, Reporter, Span, SpecError
from .ir import SCALAR, Kind, Op, Type

MAX_NAME = 40
IDENT = re.compile(rf"[A-Za-z][A-Za-z0-9_]{{0,{MAX_NAME - 1}}}\Z")
# Bounds on an expression after `let`s are inlined. Lets share subtrees, so `let a2 = a1 + a1` doubles
# the tree that every later pass walks: without a bound, forty such lines hang the compiler.
MAX_EXPR_NODES = 2000
MAX_EXPR_DEPTH = 96

FUNCTIONS: dict[str, Op] = {
    "exp": Op.EXP, "log": Op.LOG, "sigmoid": Op.SIGMOID, "logsigmoid": Op.LOGSIGMOID, "softplus": Op.SOFTPLUS,
    "silu": Op.SILU, "sqrt": Op.SQRT, "abs": Op.ABS, "tanh": Op.TANH, "relu": Op.RELU, "Re": Op.RE, "Im": Op.IM,
    "conj": Op.CONJ, "max": Op.MAX, "min": Op.MIN, "outer": Op.OUTER, "diag": Op.DIAG, "sum": Op.SUM,
    "norm": Op.NORM, "normalize": Op.NORMALIZE, "complex": Op.COMPLEX,
}
ARITY = {Op.MAX: 2, Op.MIN: 2, Op.OUTER: 2, Op.COMPLEX: 2}
REAL_ONLY = frozenset({Op.SIGMOID, Op.LOGSIGMOID, Op.SOFTPLUS, Op.SILU, Op.TANH, Op.RELU, Op.MAX, Op.MIN,
                       Op.COMPLEX})
# Functions people reach for from numpy/torch, and how the language writes them.
FUNCTION_ALIASES = {
    "transpose": "a transpose is written `x.T`", "dot": "contractions are written `a @ b`",
    "matmul": "contractions are written `a @ b`", "einsum": "contractions are written `a @ b`",
    "pow": "powers are written `a ** b`", "eye": "the identity is `I` (or `I(K)`)",
    "identity": "the identity is `I` (or `I(K)`)", "mean": "write `sum(x, N) / N`",
    "rsqrt": "write `1 / sqrt(x)`", "exp2": "write `exp(x * log(2))`", "square": "write `x * x` or `x ** 2`",
    "softmax": "a softmax is not a linear recurrence; apply it outside the spec",
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
    "I": "the identity matrix", "prev": "the function `prev(S)`", "head": "the head index of a `const`",
    "given": "the function `given(x)`", "select": "the function `select(switch, a, b)`",
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
                     "SPEC_NAME", "SPEC_SHA256", "RECURGEN_VERSION", "F", "hashlib", "itertools", "os",
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
    return f"[{', '.join(dims)}]"


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


UNKNOWN = "?"  # the dim of a bare `I` until its neighbour tells its size


def _fix_eye(e: ir.Expr, dim: str) -> ir.Expr:
    def fix(n: ir.Expr) -> ir.Expr | None:
        if isinstance(n, ir.Apply) and UNKNOWN in n.ty.dims:
            dims = tuple(dim if d == UNKNOWN else d for d in n.ty.dims)
            return replace(n, ty=Type(dims, n.ty.complex), attr=dim if n.op is Op.EYE else n.attr)
        return None
    return ir.rebuild(e, fix)


@dataclass
class _Scope:
    """What names mean at one point of the spec, in declaration order."""

    entries: dict[str, tuple[Kind, Type]] = field(default_factory=dict)
    lets: dict[str, ir.Expr] = field(default_factory=dict)
    # name -> (what the user declared it as: "input", "let", "output", ..., the span of the name)
    decl: dict[str, tuple[str, Span]] = field(default_factory=dict)


class _Checker:
    def __init__(self, module: S.Module, switches: dict[str, float] | None = None) -> None:
        self.m = module
        self.wanted = dict(switches or {})  # switch values asked for; the others take their option's default
        self.switches: dict[str, float] = {}  # every switch met so far, and the value checked
        self.off_states: dict[str, str] = {}  # states that do not exist in this variant -> their switch
        self.r = Reporter(module.source)
        self.lines = module.source.split("\n")
        self.path = module.path
        self.scope = _Scope()
        self.dims: dict[str, ir.Dim] = {}
        self.dim_spans: dict[str, Span] = {}
        self.inputs: list[ir.Tensor] = []
        self.params: list[ir.Tensor] = []
        self.states: list[ir.Tensor] = []
        self.consts: list[ir.Binding] = []
        self.options: list[ir.Binding] = []
        self.updates: list[ir.Update] = []
        self.outputs: list[ir.Output] = []
        self.api: S.Api | None = None
        self.layout: S.Layout | None = None
        self.context = "update"  # which statement kind is being checked: update, output, const, option, let
        self.loop: ir.Loop | None = None
        self.declared_later: dict[str, tuple[str, int]] = {}
        self.failed: set[str] = set()  # names whose declaration was rejected: later uses stay silent
        self.attempted_updates: dict[str, int] = {}  # state -> line of its first update, even a rejected one
        self.attempted_outputs = 0
        self.clashing_dims: set[str] = set()  # tensor names used as dims, reported once each
        self.reported: set[tuple[str, str]] = set()  # (kind, name) of errors reported once per spec
        self.sizes: dict[int, tuple[ir.Expr, int, int]] = {}  # id -> (node, tree size, depth), for `_measure`

    # --- helpers ----------------------------------------------------------------------------
    def _text(self, span: Span) -> str | None:
        """The source text of a short one-line span, to quote in a message."""
        if span.line != span.end_line or not 1 <= span.line <= len(self.lines):
            return None
        text = self.lines[span.line - 1][span.col - 1 : span.end_col - 1].strip()
        return text if 0 < len(text) <= 40 else None

    def _quote(self, span: Span, fallback: str) -> str:
        text = self._text(span)
        return f"`{text}`" if text is not None else fallback

    def _measure(self, e: ir.Expr) -> tuple[int, int]:
        """Tree size and depth of an expression, memoised on node identity (lets share subtrees)."""
        todo = [e]
        while todo:
            node = todo[-1]
            if id(node) in self.sizes:
                todo.pop()
                continue
            missing = [c for c in ir.children(node) if id(c) not in self.sizes]
            if missing:
                todo.extend(missing)
                continue
            todo.pop()
            kids = [self.sizes[id(c)] for c in ir.children(node)]
            self.sizes[id(node)] = (node, 1 + sum(k[1] for k in kids), 1 + max((k[2] for k in kids), default=0))
        _, size, depth = self.sizes[id(e)]
        return size, depth

    # --- names ------------------------------------------------------------------------------
    def _declare_name(self, ident: S.Ident, what: str) -> bool:
        name = ident.name
        if not IDENT.match(name):
            if len(name) > MAX_NAME and IDENT.match(name[:MAX_NAME]):
                self.r.error(ident.span, f"{what} name `{name[:12]}...` is {len(name)} characters long",
                             f"names are at most {MAX_NAME} characters (they become Python argument names)")
            else:  # (non-ASCII names never get here: the parser rejects them with a better message)
                self.r.error(ident.span, f"{what} name `{name}` is not a valid identifier",
                             "names are ASCII letters, digits and `_`, starting with a letter")
            self.failed.add(name)
            return False
        reason = reserved_reason(name)
        if reason is not None and not (what == "option" and name == IMPLICIT_SCALE):
            alt = "lam" if name == "lambda" else f"{name}_"
            why = "a name that is also a keyword makes statements hard to tell apart" \
                if reason == _LANGUAGE_NAMES.get("let") else "spec names become Python names in the generated code"
            self.r.error(ident.span, f"`{name}` is reserved ({reason}) and cannot name {_a(what)}",
                         f"{why}; choose another, e.g. `{alt}`")
            self.failed.add(name)
            return False
        if name in self.dims:
            sp = self.dim_spans[name]
            self.r.error(ident.span, f"`{name}` is already a dimension (line {sp.line}, column {sp.col})",
                         "dimension names must differ from other names")
            self.failed.add(name)
            return False
        if name in self.scope.decl:
            first_what, sp = self.scope.decl[name]
            if what == "option" and name == IMPLICIT_SCALE and first_what == "implicit option":
                self.r.error(ident.span, f"`option scale` comes after `scale` is first used (line {sp.line}), "
                             "where it already took its default `K ** -0.5`", "move the `option` line up")
            else:
                self.r.error(ident.span, f"`{name}` is already declared as {_a(first_what)} "
                             f"(line {sp.line}, column {sp.col})", "every name is declared once")
            return False
        return True

    def _register(self, ident: S.Ident, what: str, kind: Kind, ty: Type) -> None:
        self.scope.entries[ident.name] = (kind, ty)
        self.scope.decl[ident.name] = (what, ident.span)

    def _dim_of(self, ident: S.Ident) -> str:
        name = ident.name
        if name in self.clashing_dims:
            return name
        if name in self.scope.decl:
            self.clashing_dims.add(name)
            what, sp = self.scope.decl[name]
            self.r.error(ident.span, f"`{name}` is {_a(what)} (line {sp.line}), so it cannot also name a dimension",
                         "dimension names must differ from tensor and value names")
        elif not IDENT.match(name) or name in RESERVED:
            reason = reserved_reason(name)
            hint = "shapes are per token and per head: write `q: [K]`, not `q: [B, T, H, K]`" if name == "H" \
                else "dimension names are short identifiers, e.g. K, V, N, D"
            self.r.error(ident.span, f"`{name}` cannot name a dimension" + (f": it is {reason}" if reason else ""),
                         hint)
        elif name not in self.dims:
            self.dims[name] = ir.Dim(name, None, ident.span)
            self.dim_spans[name] = ident.span
        return name

    # --- statements -------------------------------------------------------------------------
    def run(self) -> ir.Spec:
        header = self.m.header
        if not IDENT.match(header.name.name) or header.name.name in RESERVED:
            self.r.error(header.name.span, f"`{header.name.name}` cannot name a recurrence",
                         "it names the generated functions: use an ASCII identifier that is not a Python keyword "
                         "or builtin, e.g. my_gla")
        self._prescan()
        for st in self.m.statements:
            if isinstance(st, S.Decl):
                self._decl(st)
            elif isinstance(st, S.DimDecl):
                self._dim_decl(st)
            elif isinstance(st, S.Bind):
                self._bind(st)
            elif isinstance(st, S.Update):
                self._update(st)
            elif isinstance(st, S.Output):
                self._output(st)
            elif isinstance(st, S.Api):
                self._api_stmt(st)
            elif isinstance(st, S.Layout):
                self._layout_stmt(st)
        self._finish()
        api = self._check_api()
        self._check_optional()
        self.r.raise_if_errors()
        arg_order = tuple(a.target for a in api.args if a.target in {t.name for t in (*self.inputs, *self.params)}) \
            if self.api else tuple(t.name for t in (*self.inputs, *self.params))
        return ir.Spec(header.name.name, header.description, tuple(self.dims.values()), tuple(self.inputs),
                       tuple(self.params), tuple(self.consts), tuple(self.options), tuple(self.states),
                       tuple(self.updates), tuple(self.outputs), arg_order, self.path, self.m.source, api=api,
                       heads=self.layout is None or len(self.layout.dims) == 3,
                       switches=tuple(sorted(self.switches.items())))

    def _prescan(self) -> None:
        """Remember where every name is declared, to tell 'used before declared' from 'unknown'."""
        for st in self.m.statements:
            items: list[tuple[S.Ident, str]] = []
            if isinstance(st, S.Decl):
                items = [(d.name, st.kind) for d in st.items]
            elif isinstance(st, S.Bind):
                items = [(st.name, st.kind)]
            for ident, kind in items:
                self.declared_later.setdefault(ident.name, (kind, ident.span.line))

    def _domain(self, decl: S.TensorDecl, kind: str) -> ir.Domain:
        """The intersection of every annotation's range; `logdecay` and `normalized` are flags on top."""
        dom = ir.Domain()
        words = {a.name for a in decl.annotations if isinstance(a, S.Ident)}
        if {"real", "complex"} <= words:
            self.r.error(decl.name.span, f"`{decl.name.name}` is annotated both `real` and `complex`",
                         "keep one of them")
        for a in decl.annotations:
            if isinstance(a, S.Ident):
                if a.name in ("real", "complex"):
                    continue
                if a.name not in DOMAIN_WORDS:
                    close = difflib.get_close_matches(a.name, [*DOMAIN_WORDS, "complex", "real"], n=1)
                    self.r.error(a.span, f"unknown annotation `{a.name}`",
                                 f"did you mean `{close[0]}`?" if close else
                                 f"known: {', '.join(DOMAIN_WORDS)}, complex, or an interval `in (0, 1)`")
                    continue
                word = DOMAIN_WORDS[a.name]
                if word.normalized and len(decl.shape) == 0:
                    self.r.error(a.span, "`normalized` needs a vector", "a scalar cannot have unit L2 norm")
                dom = replace(dom, logspace=dom.logspace or word.logspace,
                              normalized=dom.normalized or word.normalized)
                lo, hi, lo_open, hi_open = word.lo, word.hi, word.lo_open, word.hi_open
            else:
                lo_, hi_ = self._number(a.lo), self._number(a.hi)
                if lo_ is None or hi_ is None:
                    continue
                lo, hi = lo_, hi_
                if lo >= hi:
                    swapped = f"in {'(' if a.lo_open else '['}{hi:g}, {lo:g}{')' if a.hi_open else ']'}"
                    self.r.error(a.span, f"empty interval: {lo:g} is not below {hi:g}",
                                 f"the lower bound comes first: `{swapped}`" if hi < lo else
                                 "an interval needs two different bounds")
                    continue
                lo_open, hi_open = a.lo_open or lo == -math.inf, a.hi_open or hi == math.inf
            # Intersect, so that `logdecay in (-5, 0]` narrows the log-decay range rather than replacing it.
            if (lo, lo_open) > (dom.lo, dom.lo_open):
                dom = replace(dom, lo=lo, lo_open=lo_open)
            if (hi, not hi_open) < (dom.hi, not dom.hi_open):
                dom = replace(dom, hi=hi, hi_open=hi_open)
            if dom.lo > dom.hi or (dom.lo == dom.hi and (dom.lo_open or dom.hi_open)):
                self.r.error(a.span, f"the annotations of `{decl.name.name}` leave no possible value",
                             "each annotation narrows the range, and with this one nothing is left; drop one")
                return ir.Domain()
        if kind == "state" and dom != ir.Domain():
            self.r.error(decl.span, "a state takes no value domain", "domains describe inputs and params")
        elif "complex" in words and (dom.lo, dom.hi) != (-math.inf, math.inf):
            self.r.error(decl.span, f"complex `{decl.name.name}` cannot have a real interval",
                         "intervals bound real values")
        return dom

    def _number(self, e: S.Expr) -> float | None:
        """A literal bound of an interval: a number, `inf`, or a negated one."""
        if isinstance(e, S.Number) and isinstance(e.value, float):
            if math.isinf(e.value):
                self.r.error(e.span, f"`{_short(e.text)}` is too large for a float",
                             "write `inf` for an unbounded side")
                return None
            return e.value
        if isinstance(e, S.Name) and e.name == "inf":
            return math.inf
        if isinstance(e, S.UnOp):
            inner = self._number(e.arg)
            return None if inner is None else (-inner if e.op == "-" else inner)
        self.r.error(e.span, "an interval bound must be a number or `inf`", "e.g. `in (-inf, 0]`")
        return None

    def _decl(self, st: S.Decl) -> None:
        kind = {"input": Kind.INPUT, "param": Kind.PARAM, "state": Kind.STATE}[st.kind]
        for d in st.items:
            if len(d.shape) > 3:
                layout = [i.name for i in d.shape[:3]] == ["B", "T", "H"]
                self.r.error(d.span, f"`{d.name.name}` has {len(d.shape)} dims; at most 3 are supported",
                             f"shapes are per token and per head: write `{d.name.name}: "
                             f"{_fmt_shape(tuple(i.name for i in d.shape[3:]))}`, not `[B, T, H, ...]`" if layout
                             else "per-token tensors are scalars, vectors or matrices (plus one loop dim)")
                self.failed.add(d.name.name)
                continue
            if d.name.name in {i.name for i in d.shape}:
                fixed = tuple(i.name.upper() if i.name == d.name.name else i.name for i in d.shape)
                self.r.error(d.name.span, f"`{d.name.name}` names both a tensor and one of its own dimensions",
                             f"dimension names are usually upper case: `{d.name.name}: {_fmt_shape(fixed)}`")
                self.clashing_dims.add(d.name.name)
            dims = tuple(self._dim_of(i) for i in d.shape)
            is_complex = any(isinstance(a, S.Ident) and a.name == "complex" for a in d.annotations)
            if is_complex and kind is Kind.INPUT:
                self.r.error(d.span, f"input `{d.name.name}` cannot be complex",
                             "inputs are real tensors; build complex values from them with complex(re, im)")
            dom = self._domain(d, st.kind)
            default = self._default(d, st.kind, dom, is_complex) if d.default is not None else None
            when = self._when(d, st.kind) if d.when is not None else None
            if not self._declare_name(d.name, st.kind):
                continue
            if when is not None and self.switches[when] == 0:
                self.off_states[d.name.name] = when  # this variant has no such state: its update is skipped
                self.scope.decl[d.name.name] = ("state", d.name.span)
                continue
            t = ir.Tensor(d.name.name, Type(dims, is_complex), dom, d.span, default, when)
            {"input": self.inputs, "param": self.params, "state": self.states}[st.kind].append(t)
            self._register(d.name, st.kind, kind, t.ty)

    def _default(self, d: S.TensorDecl, kind: str, dom: ir.Domain, is_complex: bool) -> float | None:
        """The value an optional input or param (`= 0`) takes when the call omits it: a number in its domain."""
        assert d.default is not None
        name, span = d.name.name, d.default.span
        if kind == "state":
            self.r.error(span, f"state `{name}` cannot have a default value",
                         "a state starts at zero, or at the call's `initial_state`")
            return None
        if is_complex or dom.normalized:
            why = "complex" if is_complex else "normalized"
            self.r.error(span, f"a {why} {kind} cannot have a default value",
                         "a default fills every element with one real number; make the argument required")
            return None
        value = self._literal(d.default)
        if value is None:
            return None
        if not dom.contains(value):
            self.r.error(span, f"the default {value:g} of `{name}` is outside its domain `{dom}`",
                         "an omitted argument still has to be a valid value: choose a default inside the domain")
            return None
        return value

    def _when(self, d: S.TensorDecl, kind: str) -> str | None:
        """`state z: [K] when normalize`: the switch option, if it is one."""
        assert d.when is not None
        if kind != "state":
            self.r.error(d.when.span, f"only a state can depend on a switch, not {_a(kind)}",
                         "an optional input or param takes a default instead: `x: [D] = 0`")
            return None
        return d.when.name if self._switch(d.when) is not None else None

    def _switch(self, ident: S.Ident | S.Name) -> float | None:
        """The value of a switch (an option with default 0 or 1) in the variant being checked."""
        option = next((o for o in self.options if o.name == ident.name), None)
        if option is None:
            if ident.name not in self.failed:
                self.r.error(ident.span, f"`{ident.name}` is not a declared option",
                             f"a switch is an option declared above its use: `option {ident.name} = 0`")
            return None
        if not isinstance(option.value, ir.Const) or option.value.value not in (0.0, 1.0):
            self.r.error(ident.span, f"option `{ident.name}` is used as a switch, so its default must be 0 or 1",
                         f"declare it `option {ident.name} = 0` (off unless the call turns it on)")
            return None
        value = float(bool(self.wanted.get(ident.name, option.value.value)))
        self.switches[ident.name] = value
        return value

    def _literal(self, e: S.Expr) -> float | None:
        """A finite real number, possibly negated (a default value)."""
        if isinstance(e, S.UnOp):
            inner = self._literal(e.arg)
            return None if inner is None else (-inner if e.op == "-" else inner)
        if isinstance(e, S.Number) and isinstance(e.value, float) and math.isfinite(e.value):
            return e.value
        self.r.error(e.span, "a default value must be a real number", "e.g. `g: [] logdecay = 0`")
        return None

    def _layout_stmt(self, st: S.Layout) -> None:
        dims = [i.name for i in st.dims]
        if self.layout is not None:
            self.r.error(st.span, f"a second `layout` line (the first is on line {self.layout.span.line})",
                         "a spec has one call layout")
        elif dims not in (["B", "T", "H"], ["B", "T"]):
            self.r.error(st.span, f"unknown layout `[{', '.join(dims)}]`",
                         "the layouts are `[B, T, H]` (the default) and `[B, T]` (no head axis)")
        else:
            self.layout = st

    def _dim_decl(self, st: S.DimDecl) -> None:
        if st.size < 1 or st.size > 4096:
            shown = str(st.size) if st.size < 10**6 else "more than a million"
            self.r.error(st.span, f"dimension `{st.name.name}` = {shown} is out of range",
                         "fixed dimension sizes are between 1 and 4096")
            self.failed.add(st.name.name)
            return
        if st.name.name in self.dims:
            prev = self.dims[st.name.name]
            self.r.error(st.name.span, f"dimension `{st.name.name}` is already used (line {prev.span.line}); "
                         "a fixed size must be declared before any use", "move the `dim` line up")
            return
        if self._declare_name(st.name, "dimension"):
            self.dims[st.name.name] = ir.Dim(st.name.name, st.size, st.span)
            self.dim_spans[st.name.name] = st.name.span

    def _bind(self, st: S.Bind) -> None:
        self.context = st.kind
        value = self.expr(st.value)
        if not self._declare_name(st.name, st.kind):
            return
        if value is None:
            self.failed.add(st.name.name)
            return
        if st.kind in ("const", "option") and value.ty.dims:
            self.r.error(st.value.span, f"{st.kind} `{st.name.name}` must be a scalar, got shape "
                         f"{_fmt_shape(value.ty.dims)}", "use a `param` for per-head tensors")
            self.failed.add(st.name.name)
            return
        if UNKNOWN in value.ty.dims:
            self.r.error(st.value.span, "cannot infer the size of `I` here", "write `I(K)` with its dimension")
            self.failed.add(st.name.name)
            return
        kind = {"const": Kind.CONST, "option": Kind.OPTION, "let": Kind.INPUT}[st.kind]
        self._register(st.name, st.kind, kind, value.ty)
        if st.kind == "let":
            self.scope.lets[st.name.name] = value
            return
        binding = ir.Binding(st.name.name, value, st.span)
        (self.consts if st.kind == "const" else self.options).append(binding)

    def _update(self, st: S.Update) -> None:
        name = st.target.name
        if name in self.off_states:
            self.attempted_updates.setdefault(name, st.span.line)
            return
        entry = self.scope.entries.get(name)
        if name in self.failed:
            return
        if entry is None or entry[0] is not Kind.STATE:
            if entry is None and name in self.declared_later and self.declared_later[name][0] == "state":
                self.r.error(st.target.span, f"state `{name}` is updated before it is declared "
                             f"(line {self.declared_later[name][1]})", "declare states above their updates")
                self.attempted_updates.setdefault(name, st.span.line)
            elif entry is None:
                self.r.error(st.target.span, f"`{name}` is not a declared state", self._suggest(
                    name, [s.name for s in self.states], f"declare it first: `state {name}: [K, V]`"))
            else:
                self.r.error(st.target.span, f"`{name}` is {_a(self.scope.decl[name][0])}, not a state; "
                             "only states are updated", "declare what the recurrence carries with `state`")
            return
        if name in self.attempted_updates:
            self.r.error(st.target.span, f"state `{name}` is updated twice (first on line "
                         f"{self.attempted_updates[name]})", "updates are simultaneous, one per state; for "
                         "several steps per token write one `update ... for j in J`")
            return
        self.attempted_updates[name] = st.span.line
        loop = self._loop(st.loop) if st.loop is not None else None
        if st.loop is not None and loop is None:
            return
        self.context, self.loop = "update", loop
        value = self.expr(st.value)
        self.loop = None
        if value is None:
            return
        state_ty = entry[1]
        if UNKNOWN in value.ty.dims and len(set(state_ty.dims)) == 1 and len(state_ty.dims) == 2:
            value = _fix_eye(value, state_ty.dims[0])
        if value.ty.dims != state_ty.dims:
            self.r.error(st.value.span, f"shape mismatch: the update of `{name}` has shape "
                         f"{_fmt_shape(value.ty.dims)} but the state has shape {_fmt_shape(state_ty.dims)}",
                         _update_shape_hint(value.ty.dims, state_ty.dims))
            return
        if value.ty.complex and not state_ty.complex:
            self.r.error(st.value.span, f"complex/real mixing: the update of real state `{name}` is complex",
                         f"declare `state {name}: {_fmt_shape(state_ty.dims)} complex`, or take Re(...)")
            return
        if not ir.uses(value, {Kind.STATE}):
            self.r.warning(st.value.span, f"the update of `{name}` does not use any state",
                           "the recurrence then has no memory")
        self.updates.append(ir.Update(name, value, loop, st.span))

    def _loop(self, lp: S.Loop) -> ir.Loop | None:
        d = self.dims.get(lp.dim.name)
        if d is None or d.size is None:
            what = "is not a dimension" if d is None else "has no fixed size"
            self.r.error(lp.dim.span, f"loop dimension `{lp.dim.name}` {what}",
                         f"the loop is unrolled when the kernel is generated, so its size is fixed in the spec: "
                         f"declare `dim {lp.dim.name} = 2` above its first use")
            return None
        var = lp.var.name
        if var in self.scope.decl or var in self.dims or not IDENT.match(var) or var in (RESERVED - {"j"}):
            self.r.error(lp.var.span, f"loop variable `{var}` clashes with another name",
                         "use a fresh name such as `j`")
            return None
        return ir.Loop(var, d.name, d.size)

    def _output(self, st: S.Output) -> None:
        self.context = "output"
        self.attempted_outputs += 1
        value = self.expr(st.value)
        if self._declare_name(st.name, "output"):
            self.scope.decl[st.name.name] = ("output", st.name.span)  # outputs are not readable, only unique
        else:
            return
        if value is None:
            return
        if UNKNOWN in value.ty.dims:
            self.r.error(st.value.span, "cannot infer the size of `I` here", "write `I(K)` with its dimension")
            return
        if st.shape is not None:
            unknown = [i for i in st.shape if i.name not in self.dims]
            for i in unknown:
                if i.name in self.clashing_dims:
                    continue
                self.r.error(i.span, f"unknown dimension `{i.name}` in the shape of output `{st.name.name}`",
                             self._suggest(i.name, list(self.dims), "an output's dims come from the inputs"))
            dims = tuple(i.name for i in st.shape)
            if not unknown and dims != value.ty.dims:
                self.r.error(st.value.span, f"shape mismatch: output `{st.name.name}` is declared "
                             f"{_fmt_shape(dims)} but {self._quote(st.value.span, 'its value')} has shape "
                             f"{_fmt_shape(value.ty.dims)}", "change the declared shape or the expression")
                return
        if value.ty.complex:
            self.r.error(st.value.span, f"output `{st.name.name}` is complex",
                         "outputs are real tensors: take Re(...) (as LRU and S5 do) or abs(...)")
            return
        if not ir.uses(value, {Kind.STATE, Kind.PREV_STATE}):
            self.r.error(st.value.span, f"output `{st.name.name}` does not read any state",
                         "a readout reads the state, e.g. `q @ S`; without one the output has no memory")
            return
        self.outputs.append(ir.Output(st.name.name, value, st.span))

    def _api_stmt(self, st: S.Api) -> None:
        if self.api is not None:
            self.r.error(st.span, f"a second `api` line (the first is on line {self.api.span.line})",
                         "a spec has one public signature")
            return
        reason = reserved_reason(st.name.name)  # the generated module defines a function of this name
        if not IDENT.match(st.name.name) or reason is not None:
            self.r.error(st.name.span, f"`{st.name.name}` cannot name the public function",
                         f"it is {reason}" if reason else "use an ASCII identifier of at most 40 characters")
        self.api = st

    def _finish(self) -> None:
        span0 = self.m.header.span
        if not self.states and not any(n in self.failed for n, k in self.declared_later.items() if k[0] == "state"):
            self.r.error(span0, "the spec declares no state", "declare one: `state S: [K, V]`")
        for s in self.states:
            if s.name not in self.attempted_updates:
                self.r.error(self.scope.decl[s.name][1], f"state `{s.name}` is never updated",
                             f"add `update {s.name} = ...`")
        if not self.attempted_outputs:
            self.r.error(span0, "the spec has no output", "add a readout: `output o: [V] = q @ S`")
        if not self.inputs and not any(k[0] == "input" for k in self.declared_later.values()):
            self.r.error(span0, "the spec declares no input", "declare the per-token inputs: `input k: [K]`")
        known = {d for t in (*self.inputs, *self.params) for d in t.ty.dims}
        for d in self.dims.values():
            if d.size is None and d.name not in known:
                self.r.error(d.span, f"dimension `{d.name}` appears in no input or param, so its size "
                             "cannot be read from the arguments", f"declare it: `dim {d.name} = 16`")

    # --- the public call ----------------------------------------------------------------------
    def _check_api(self) -> ir.Api:
        """The api line's arguments: each names a tensor, option or call argument once, maybe renamed."""
        if self.api is None:
            return ir.Api()
        tensors = [t.name for t in (*self.inputs, *self.params)]
        options = [o.name for o in self.options]
        targets = [*tensors, *options, *ir.CALL_ARGS]
        args: list[ir.ApiArg] = []
        publics: dict[str, S.Ident] = {}
        for a in self.api.args:
            if a.target.name not in targets:
                if a.target.name not in self.failed:
                    self.r.error(a.target.span, f"`{a.target.name}` in the api line is not an input, param, "
                                 "option or call argument", self._suggest(a.target.name, targets,
                                                                          f"the arguments are: {', '.join(targets)}"))
                continue
            if a.public is not a.target and not self._public_name(a):
                continue
            first = publics.get(a.public.name)
            if first is not None:
                self.r.error(a.public.span, f"the public call would have two arguments named `{a.public.name}` "
                             f"(the first at column {first.span.col})", "give each argument its own name")
                continue
            publics[a.public.name] = a.public
            args.append(ir.ApiArg(a.public.name, a.target.name))
        self._api_coverage(tensors)
        api = ir.Api(self.api.name.name, tuple(args))
        self._api_clashes(api, publics, [*tensors, *options])
        return api

    def _public_name(self, a: S.ApiArg) -> bool:
        """A library's name for an argument must be a Python identifier the generated code does not use."""
        name = a.public.name
        if not IDENT.match(name):
            self.r.error(a.public.span, f"`{name}` cannot name an argument of the public call",
                         "use an ASCII identifier of at most 40 characters")
            return False
        # a public name never appears in an expression: the language's own words (`normalize`, fla's option) are
        # fine; what clashes is Python's and the generated code's
        reason = None if name in FUNCTIONS or name in _LANGUAGE_NAMES else reserved_reason(name)
        if reason is not None:
            self.r.error(a.public.span, f"`{name}` is reserved ({reason}) and cannot rename `{a.target.name}`",
                         "the public call's arguments are Python names next to the generated code's own; "
                         f"keep `{a.target.name}` or choose another name")
            return False
        return True

    def _api_coverage(self, tensors: list[str]) -> None:
        assert self.api is not None
        names = Counter(a.target.name for a in self.api.args)
        missing = [t for t in tensors if t not in names]
        dup = {n for n, c in names.items() if c > 1}
        if missing or dup:
            self.r.error(self.api.span, "the api line must list every input and param exactly once, and any "
                         "other argument at most once" + (f"; missing: {', '.join(missing)}" if missing else "")
                         + (f"; repeated: {', '.join(sorted(dup))}" if dup else ""),
                         "list each of them once, in the order of the public call")

    def _api_clashes(self, api: ir.Api, publics: dict[str, S.Ident], names: list[str]) -> None:
        """A new name must not be one that another argument keeps (`api f(q, k, v, scale = g)`)."""
        renamed = {a.target for a in api.args if a.public != a.target}
        for n in names:
            if n in renamed or n not in publics:
                continue
            owner = next(a for a in api.args if a.public == n)
            if owner.target != n:
                self.r.error(publics[n].span, f"`{n}` cannot rename `{owner.target}`: the spec's `{n}` keeps "
                             "that name in the public call", f"rename `{n}` too, or choose another name")

    def _check_optional(self) -> None:
        """Optional tensors: their dims readable without them, and no required argument after them."""
        tensors = {t.name: t for t in (*self.inputs, *self.params)}
        required_dims = {d for t in tensors.values() if t.default is None for d in t.ty.dims}
        for t in tensors.values():
            unread = [d for d in t.ty.dims if t.default is not None and d not in required_dims
                      and self.dims[d].size is None]
            if unread:
                self.r.error(t.span, f"the dimension `{unread[0]}` of optional `{t.name}` appears in no required "
                             f"input or param, so its size is unknown when `{t.name}` is omitted",
                             f"make `{t.name}` required, or fix the size: `dim {unread[0]} = 16`")
        if self.api is not None:
            order = [(a.target.name, a.span) for a in self.api.args]
        else:
            order = [(t.name, t.span) for t in tensors.values()]
        optional: str | None = None
        scalar: str | None = None  # the first option or call argument listed
        for name, span in order:
            if name in tensors and scalar is not None:
                self.r.error(span, f"the tensor `{name}` comes after `{scalar}`, which is not a tensor",
                             "list the inputs and params first: recurgen's tools pass the tensors by position "
                             f"(`{scalar}` is still accepted by name)")
                return
            if name in tensors and tensors[name].default is None:
                if optional is not None:
                    self.r.error(span, f"the required argument `{name}` comes after the optional `{optional}`",
                                 "a call fills arguments in order: move the required ones first, or make this "
                                 "one optional with a default (`= 0`)")
                    return
            elif name in tensors:
                optional = optional or name
            else:
                scalar = scalar or name

    # --- expressions ------------------------------------------------------------------------
    def expr(self, e: S.Expr) -> ir.Expr | None:
        """Type-check an expression; None after reporting an error inside it."""
        out = self._expr(e)
        if out is None:
            return None
        size, depth = self._measure(out)
        if size > MAX_EXPR_NODES or depth > MAX_EXPR_DEPTH:
            self.r.error(e.span, f"expression is too large once its `let`s are substituted ({size} operations, "
                         f"nested {depth} deep)", f"the limit is {MAX_EXPR_NODES} operations nested "
                         f"{MAX_EXPR_DEPTH} deep; each use of a `let` copies its whole expression")
            return None
        return out

    def _expr(self, e: S.Expr) -> ir.Expr | None:
        if isinstance(e, S.Number):
            if math.isinf(abs(e.value)):
                self.r.error(e.span, f"`{_short(e.text)}` is too large for a float", "numbers must be finite")
                return None
            return ir.Const(e.value, Type((), isinstance(e.value, complex)), e.span)
        if isinstance(e, S.Name):
            return self._name(e)
        if isinstance(e, S.UnOp):
            arg = self.expr(e.arg)
            if arg is None or e.op == "+":
                return arg
            return ir.Apply(Op.NEG, (arg,), arg.ty, span=e.span)
        if isinstance(e, S.BinOp):
            return self._binop(e)
        if isinstance(e, S.Call):
            return self._call(e)
        if isinstance(e, S.Index):
            return self._index(e)
        if isinstance(e, S.Attr):
            return self._attr(e)
        raise AssertionError(e)

    def _attr(self, e: S.Attr) -> ir.Expr | None:
        base = self.expr(e.base)
        if base is None:
            return None
        if e.attr != "T":
            self.r.error(e.attr_span, f"unknown attribute `.{e.attr}`", "the only attribute is `.T` (transpose)")
            return None
        if len(base.ty.dims) != 2:
            self.r.error(e.span, f"`.T` needs a matrix, but {self._quote(e.base.span, 'the value')} has shape "
                         f"{_fmt_shape(base.ty.dims)}",
                         "vectors need no transpose: `a @ S` and `S @ a` contract the matching dim")
            return None
        return ir.Apply(Op.TRANSPOSE, (base,), Type(base.ty.dims[::-1], base.ty.complex), span=e.span)

    def _name(self, e: S.Name) -> ir.Expr | None:
        n = e.name
        if n == "I":
            return ir.Apply(Op.EYE, (), Type((UNKNOWN, UNKNOWN)), UNKNOWN, e.span)
        if n == "pi":
            return ir.Const(math.pi, SCALAR, e.span)
        if n in ("head", "H"):
            if self.context != "const":
                known = "the head index" if n == "head" else "the number of heads"
                hint = "write this line as a `const` (a per-head scalar)" if self.context in ("let", "option") \
                    else "compute the per-head value in a const, e.g. `const gamma = 1 - 2 ** (-5 - head)`, " \
                    "and use the const here"
                self.r.error(e.span, f"`{n}` ({known}) can only be used in a `const`", hint)
                return None
            return ir.Var(n, Kind.HEAD if n == "head" else Kind.HEADS, SCALAR, e.span)
        if self.loop is not None and n == self.loop.var:
            return ir.Var(n, Kind.LOOP, SCALAR, e.span)
        if n in self.failed:
            return None  # its declaration was reported already
        if n in self.off_states:
            sw = self.off_states[n]
            self.r.error(e.span, f"state `{n}` exists only when `{sw}` is on, and this statement reads it "
                         f"when `{sw}` is off", f"read it in the `{sw}` branch of `select({sw}, ..., ...)`")
            return None
        if n in self.scope.lets:
            return self._let(e)
        if n in self.dims:
            return ir.Var(n, Kind.DIM, SCALAR, e.span)
        if n in self.scope.decl and self.scope.decl[n][0] == "output":
            self.r.error(e.span, f"output `{n}` cannot be read by another statement",
                         "outputs are results only; put the shared part in a `let`")
            return None
        entry = self.scope.entries.get(n)
        if entry is None:
            return self._unknown_name(e)
        kind, ty = entry
        if self.context in _ALLOWED_IN and kind not in _ALLOWED_IN[self.context]:
            self.r.error(e.span, f"{_a(self.context)} cannot depend on {self.scope.decl[n][0]} `{n}`",
                         _PER_HEAD if self.context == "const" else _PER_CALL)
            return None
        if kind is Kind.STATE and self.context == "let":
            self.r.error(e.span, f"`let` cannot read state `{n}`", "read states directly in `update` and `output`")
            return None
        return ir.Var(n, kind, ty, e.span)

    def _let(self, e: S.Name) -> ir.Expr | None:
        value = self.scope.lets[e.name]
        if self.context in _ALLOWED_IN:
            bad = sorted(n.name for n in ir.walk(value) if isinstance(n, ir.Var)
                         and n.kind not in _ALLOWED_IN[self.context])
            if bad:
                self.r.error(e.span, f"{_a(self.context)} cannot depend on let `{e.name}`, which reads `{bad[0]}`",
                             _PER_HEAD if self.context == "const" else _PER_CALL)
                return None
        return value

    def _unknown_name(self, e: S.Name) -> ir.Expr | None:
        n = e.name
        if n == IMPLICIT_SCALE:
            return self._implicit_scale(e)
        if n in self.declared_later and self.declared_later[n][1] == e.span.line:
            self.r.error(e.span, f"`{n}` is used in its own definition", "a `let` names an expression of earlier "
                         "names; to carry a value from token to token, declare a `state`")
        elif n in self.declared_later:
            kind, line = self.declared_later[n]
            self.r.error(e.span, f"{kind} `{n}` is used before it is declared (line {line})",
                         "declare names above the statements that use them")
        elif n == "inf":
            self.r.error(e.span, "`inf` is only allowed as an interval bound", "use a finite number")
        elif n in FUNCTIONS or n == "prev":
            self.r.error(e.span, f"`{n}` is a function", f"call it: `{n}(...)`")
        else:
            pool = [*(k for k in self.scope.decl if self.scope.decl[k][0] != "output"), *self.dims]
            self.r.error(e.span, f"unknown name `{n}`", self._suggest(
                n, pool, "declare it with `input`, `param`, `state`, `const`, `option` or `let` before use"))
        return None

    def _implicit_scale(self, e: S.Name) -> ir.Expr | None:
        if "K" not in self.dims:
            self.r.error(e.span, "`scale` has no default here: there is no dimension `K`",
                         "its default is `K ** -0.5`; without a `K`, declare it: `option scale = 1`")
            return None
        default = ir.Apply(Op.POW, (ir.Var("K", Kind.DIM, SCALAR), ir.Const(-0.5)), SCALAR)
        self.options.append(ir.Binding(IMPLICIT_SCALE, default, e.span))
        self.scope.entries[IMPLICIT_SCALE] = (Kind.OPTION, SCALAR)
        self.scope.decl[IMPLICIT_SCALE] = ("implicit option", e.span)
        return ir.Var(IMPLICIT_SCALE, Kind.OPTION, SCALAR, e.span)

    def _suggest(self, n: str, pool: list[str], otherwise: str) -> str:
        # difflib costs a pass over the pool per call: in a pathological file with thousands of unknown
        # names that is quadratic, and only the first MAX_DIAGNOSTICS errors are shown anyway.
        if len(self.r.diagnostics) >= MAX_DIAGNOSTICS:
            return otherwise
        close = difflib.get_close_matches(n, pool, n=1) or difflib.get_close_matches(n.lower(), pool, n=1)
        return f"did you mean `{close[0]}`?" if close else otherwise

    def _binop(self, e: S.BinOp) -> ir.Expr | None:
        lhs, rhs = self.expr(e.lhs), self.expr(e.rhs)
        if lhs is None or rhs is None:
            return None
        if e.op == "@":
            return self._matmul(e, lhs, rhs)
        op = {"+": Op.ADD, "-": Op.SUB, "*": Op.MUL, "/": Op.DIV, "**": Op.POW}[e.op]
        if op is Op.POW and rhs.ty.dims:
            self.r.error(e.rhs.span, f"the exponent must be a scalar, got shape {_fmt_shape(rhs.ty.dims)}",
                         "use exp(x * log(a)) for elementwise powers")
            return None
        return self._elementwise(op, lhs, rhs, e.span, e.op, (e.lhs.span, e.rhs.span))

    def _elementwise(self, op: Op, lhs: ir.Expr, rhs: ir.Expr, span: Span, sym: str,
                     operand_spans: tuple[Span, Span]) -> ir.Expr | None:
        a, b = lhs.ty.dims, rhs.ty.dims
        if UNKNOWN in a and len(b) == 2 and b[0] == b[1]:
            lhs, a = _fix_eye(lhs, b[0]), b
        elif UNKNOWN in b and len(a) == 2 and a[0] == a[1]:
            rhs, b = _fix_eye(rhs, a[0]), a
        dims = broadcast(a, b)
        if dims is None:
            ta, tb = self._text(operand_spans[0]), self._text(operand_spans[1])
            if UNKNOWN in a or UNKNOWN in b:
                hint = "`I` needs a square partner to tell its size; write `I(K)` with its dimension"
            elif op is Op.MUL and len(a) == 1 and len(b) == 1:
                hint = f"an outer product is written `outer({ta or 'a'}, {tb or 'b'})`"
            else:
                hint = "elementwise operands need the same dims, or one operand's dims among the other's " \
                    "(named broadcasting)"
            left = f"`{ta}` has shape" if ta else "the left side has shape"
            right = f"`{tb}` has shape" if tb else "the right side has shape"
            self.r.error(span, f"shape mismatch in `{sym}`: {left} {_fmt_shape(a)} but {right} {_fmt_shape(b)}",
                         hint)
            return None
        return ir.Apply(op, (lhs, rhs), Type(dims, lhs.ty.complex or rhs.ty.complex), span=span)

    def _matmul(self, e: S.BinOp, lhs: ir.Expr, rhs: ir.Expr) -> ir.Expr | None:
        a, b = lhs.ty.dims, rhs.ty.dims
        ta, tb = self._text(e.lhs.span), self._text(e.rhs.span)
        if not a or not b:
            side = self._quote(e.lhs.span if not a else e.rhs.span, "one side")
            self.r.error(e.span, f"`@` needs vectors or matrices, but {side} is a scalar", "scale with `*`")
            return None
        if UNKNOWN in a:
            lhs, a = _fix_eye(lhs, b[0]), (b[0], b[0])
        if UNKNOWN in b:
            rhs, b = _fix_eye(rhs, a[-1]), (a[-1], a[-1])
        if len(a) > 2 or len(b) > 2:
            big = e.lhs.span if len(a) > 2 else e.rhs.span
            self.r.error(e.span, f"`@` takes vectors and matrices, but {self._quote(big, 'one side')} has shape "
                         f"{_fmt_shape(a if len(a) > 2 else b)}", "reduce the other dims first (`sum(x, N)`) or, "
                         "in a `for` update, index the loop dim: `k[j] @ S`")
            return None
        if a[-1] != b[0]:
            left = f"`{ta}` has shape" if ta else "the left side has shape"
            right = f"`{tb}` has shape" if tb else "the right side has shape"
            self.r.error(e.span, f"shape mismatch in `@`: {left} {_fmt_shape(a)} but {right} {_fmt_shape(b)}; "
                         f"`@` would contract `{a[-1]}` with `{b[0]}`", _matmul_hint(a, b, ta, tb))
            return None
        dims = a[:-1] + b[1:]
        return ir.Apply(Op.MATMUL, (lhs, rhs), Type(dims, lhs.ty.complex or rhs.ty.complex), span=e.span)

    def _call(self, e: S.Call) -> ir.Expr | None:
        f = e.func
        if f == "prev":
            return self._prev(e)
        if f == "given":
            return self._given(e)
        if f == "select":
            return self._select(e)
        if f == "I":
            if len(e.args) != 1 or not isinstance(e.args[0], S.Name) or e.args[0].name not in self.dims:
                self.r.error(e.span, "`I(...)` takes one dimension name", "e.g. `I(K)`")
                return None
            d = e.args[0].name
            return ir.Apply(Op.EYE, (), Type((d, d)), d, e.span)
        if f not in FUNCTIONS:
            self._unknown_function(e)
            return None
        op = FUNCTIONS[f]
        if op is Op.SUM and len(e.args) == 2:
            return self._sum_over(e)
        want = ARITY.get(op, 1)
        if len(e.args) != want:
            counts = "1 or 2 arguments" if op is Op.SUM else f"{want} argument{'s' if want > 1 else ''}"
            self.r.error(e.span, f"`{f}` takes {counts}, got {len(e.args)}",
                         "`sum(x)` adds every element, `sum(x, N)` only along dim N" if op is Op.SUM else "")
            return None
        args = [self.expr(a) for a in e.args]
        if any(a is None for a in args):
            return None
        typed: list[ir.Expr] = [a for a in args if a is not None]
        if op in REAL_ONLY and any(a.ty.complex for a in typed):
            bad = next(s.span for s, a in zip(e.args, typed, strict=True) if a.ty.complex)
            self.r.error(e.span, f"complex/real mixing: `{f}` takes real values, but "
                         f"{self._quote(bad, 'its argument')} is complex", "take Re(...), Im(...) or abs(...) first")
            return None
        if op in (Op.MAX, Op.MIN, Op.COMPLEX):
            out = self._elementwise(op, typed[0], typed[1], e.span, f, (e.args[0].span, e.args[1].span))
            if out is not None and op is Op.COMPLEX:
                out = replace(out, ty=Type(out.ty.dims, True))
            return out
        x = typed[0]
        if op is Op.OUTER:
            y = typed[1]
            if len(x.ty.dims) != 1 or len(y.ty.dims) != 1:
                self.r.error(e.span, f"`outer` takes two vectors, got {_fmt_shape(x.ty.dims)} and "
                             f"{_fmt_shape(y.ty.dims)}", "index the loop dim first: `outer(k[j], v[j])`")
                return None
            return ir.Apply(op, (x, y), Type(x.ty.dims + y.ty.dims, x.ty.complex or y.ty.complex), span=e.span)
        if op is Op.DIAG:
            if len(x.ty.dims) != 1:
                self.r.error(e.span, f"`diag` takes a vector, got {_fmt_shape(x.ty.dims)}",
                             "`diag(w) @ S` scales the rows of S; `w * S` does the same by broadcasting")
                return None
            return ir.Apply(op, (x,), Type(x.ty.dims * 2, x.ty.complex), span=e.span)
        if op in (Op.SUM, Op.NORM):
            if UNKNOWN in x.ty.dims:
                self.r.error(e.span, f"cannot infer the size of `I` in `{f}`", "write `I(K)` with its dimension")
                return None
            real = op is Op.NORM or not x.ty.complex
            return ir.Apply(op, (x,), Type((), not real), span=e.span)
        if op is Op.NORMALIZE:
            if len(x.ty.dims) != 1:
                self.r.error(e.span, f"`normalize` takes a vector, got {_fmt_shape(x.ty.dims)}")
                return None
            return ir.Apply(op, (x,), x.ty, span=e.span)
        real_out = op in (Op.ABS, Op.RE, Op.IM)
        return ir.Apply(op, (x,), Type(x.ty.dims, x.ty.complex and not real_out), span=e.span)

    def _unknown_function(self, e: S.Call) -> None:
        f = e.func
        if f in self.scope.decl:
            what = self.scope.decl[f][0]
            hint = f"index with `{f}[j]`, or multiply with `*`" if what != "output" else ""
            self.r.error(e.func_span, f"`{f}` is {_a(what)}, not a function", hint)
            return
        hint = FUNCTION_ALIASES.get(f.lower()) or self._suggest(
            f, [*FUNCTIONS, "prev", "I"], f"the functions are: {', '.join(sorted(FUNCTIONS, key=str.lower))}, "
            "prev, I")
        self.r.error(e.func_span, f"unknown function `{f}`", hint)

    def _sum_over(self, e: S.Call) -> ir.Expr | None:
        """`sum(x, N)`: reduce one named dim."""
        x, d = self.expr(e.args[0]), e.args[1]
        if x is None:
            return None
        if not isinstance(d, S.Name) or d.name not in x.ty.dims or x.ty.dims.count(d.name) != 1:
            self.r.error(d.span, f"the second argument of `sum` must be one dim of "
                         f"{self._quote(e.args[0].span, 'the first')}, which has shape {_fmt_shape(x.ty.dims)}",
                         "e.g. `sum(C * h, N)` reduces the dim `N`")
            return None
        dims = tuple(n for n in x.ty.dims if n != d.name)
        return ir.Apply(Op.SUM, (x,), Type(dims, x.ty.complex), d.name, e.span)

    def _select(self, e: S.Call) -> ir.Expr | None:
        """`select(switch, on, off)`: one of two expressions, chosen per call by a switch option (0 or 1).

        Each variant of the spec is checked and compiled on its own, with the switch fixed, so only the chosen
        branch is part of it: the other may read states that this variant does not have.
        """
        if len(e.args) != 3 or not isinstance(e.args[0], S.Name):
            self.r.error(e.span, "`select(...)` takes a switch option and two expressions",
                         "e.g. `select(normalize, (q @ S) / (q @ z), q @ S)`")
            return None
        value = self._switch(e.args[0])
        if value is None:
            return None
        return self.expr(e.args[1] if value else e.args[2])

    def _given(self, e: S.Call) -> ir.Expr | None:
        """`given(x)`: 1 when the call passes the optional `x`, 0 when it omits it (a per-call number)."""
        if len(e.args) != 1 or not isinstance(e.args[0], S.Name):
            self.r.error(e.span, "`given(...)` takes the name of an optional input or param", "e.g. `given(z)`")
            return None
        n = e.args[0].name
        if n in self.failed:
            return None
        t = next((t for t in (*self.inputs, *self.params) if t.name == n), None)
        if t is None or t.default is None:
            self.r.error(e.args[0].span, f"`{n}` is not an optional input or param",
                         "`given(x)` tells whether the call passed `x`, declared optional with a default: "
                         "`input x: [D] = 0`")
            return None
        name = ir.presence_option(n)
        if name not in {o.name for o in self.options}:  # hidden from the call: the generated code sets it
            self.options.append(ir.Binding(name, ir.Const(1.0), e.span))
        return ir.Var(name, Kind.OPTION, SCALAR, e.span)

    def _prev(self, e: S.Call) -> ir.Expr | None:
        if len(e.args) != 1 or not isinstance(e.args[0], S.Name):
            self.r.error(e.span, "`prev(...)` takes one state name", "e.g. `prev(S)`")
            return None
        n = e.args[0].name
        entry = self.scope.entries.get(n)
        if n in self.failed:
            return None
        if entry is None or entry[0] is not Kind.STATE:
            self.r.error(e.args[0].span, f"`{n}` is not a declared state", "`prev` reads a state's previous value")
            return None
        if self.context != "output":
            hint = "inside `update`, a state name already means its previous value" if self.context == "update" \
                else "states are read in `update` and `output` only"
            self.r.error(e.span, "`prev(...)` is only meaningful in an output", hint)
            return None
        return ir.Var(n, Kind.PREV_STATE, entry[1], e.span)

    def _index(self, e: S.Index) -> ir.Expr | None:
        base = self.expr(e.base)
        if base is None:
            return None
        if not base.ty.dims:
            self.r.error(e.span, f"cannot index a scalar: {self._quote(e.base.span, 'the value')} has shape []")
            return None
        first = base.ty.dims[0]
        if first == UNKNOWN:
            self.r.error(e.span, "cannot infer the size of `I` here", "write `I(K)` with its dimension")
            return None
        if isinstance(e.index, S.Name) and self.loop is not None and e.index.name == self.loop.var:
            if first != self.loop.dim:
                self.r.error(e.span, f"`{e.index.name}` runs over `{self.loop.dim}` but the first dim of "
                             f"{self._quote(e.base.span, 'this value')} is `{first}`",
                             f"declare the tensor with `{self.loop.dim}` first")
                return None
            idx: ir.Expr = ir.Var(e.index.name, Kind.LOOP, SCALAR, e.index.span)
            attr = ""
        elif isinstance(e.index, S.Number) and isinstance(e.index.value, float) and e.index.value.is_integer():
            d = self.dims.get(first)
            pos = int(e.index.value)
            if d is None or d.size is None:
                self.r.error(e.index.span, f"a literal index needs a fixed size, but dimension `{first}` has none",
                             f"declare `dim {first} = n` above its first use")
                return None
            if not 0 <= pos < d.size:
                shown = str(pos) if abs(pos) < 10**6 else _short(e.index.text)
                self.r.error(e.index.span, f"index {shown} is out of range for dimension `{first}` of size {d.size}",
                             f"indices start at 0: use 0 to {d.size - 1}")
                return None
            idx, attr = ir.Const(float(pos)), str(pos)
        elif isinstance(e.index, S.Name) and self.loop is None:
            if ("loop", e.index.name) not in self.reported:  # once per name, not at every `k[j]`
                self.reported.add(("loop", e.index.name))
                self.r.error(e.index.span, f"`{e.index.name}` is not a loop variable here",
                             f"a loop variable is bound by its update: `update S = ... for {e.index.name} in J`")
            return None
        elif isinstance(e.index, S.Name) and self.loop is not None:
            self.r.error(e.index.span, f"`{e.index.name}` is not the loop variable of this update",
                         f"this update loops with `{self.loop.var}`: write `[{self.loop.var}]`")
            return None
        elif isinstance(e.index, S.Number) and not isinstance(e.index.value, complex):
            self.r.error(e.index.span, f"index `{_short(e.index.text)}` is not a whole number",
                         "literal indices are integers: `k[0]`")
            return None
        else:
            self.r.error(e.index.span, "an index is a `for` loop variable or an integer literal",
                         "e.g. `update S = ... for j in J` with `k[j]`, or `k[0]`")
            return None
        if self.context == "update" and isinstance(base, ir.Var) and base.kind is Kind.STATE:
            self.r.error(e.span, "a state cannot be indexed in an update", "index the inputs instead")
            return None
        return ir.Apply(Op.INDEX, (base, idx), Type(base.ty.dims[1:], base.ty.complex), attr, e.span)


def _update_shape_hint(value: tuple[str, ...], state: tuple[str, ...]) -> str:
    if len(state) == 2 and len(value) < 2:
        return (f"an outer product `outer(a, b)` of a {_fmt_shape(state[:1])} and a {_fmt_shape(state[1:])} "
                "vector has the state's shape")
    if sorted(value) == sorted(state):
        return "the same dims in another order: swap the arguments of `outer(a, b)`, or transpose with `.T`"
    return f"the update must have the state's shape {_fmt_shape(state)}"


def _matmul_hint(a: tuple[str, ...], b: tuple[str, ...], ta: str | None, tb: str | None) -> str:
    base = "`@` contracts the last dim on the left with the first dim on the right"
    if ta and tb:
        if len(a) == 1 and len(b) == 2 and b[1] == a[0]:
            return f"{base}: `{tb} @ {ta}` contracts `{a[0]}`"
        if len(a) == 2 and len(b) == 1 and a[0] == b[0]:
            return f"{base}: `{tb} @ {ta}` contracts `{b[0]}`"
        if len(a) == 2 and len(b) == 2 and a[-1] == b[-1]:
            return f"{base}: `{ta} @ {tb}.T` contracts `{a[-1]}`"
        if len(a) == 2 and len(b) >= 1 and a[0] == b[0]:
            return f"{base}: `{ta}.T @ {tb}` contracts `{a[0]}`"
    return f"{base}; transpose a matrix with `.T`"


def check(module: S.Module, switches: dict[str, float] | None = None) -> tuple[ir.Spec, tuple[Diagnostic, ...]]:
    """Resolve and type the surface tree, in the variant `switches` selects (default: the options' defaults).

    The other variants (each switch flipped) are checked too, so that an error in a branch the default does
    not take is reported now rather than at the first call that takes it.

    Returns:
        The spec and the warnings found on the way.
    Raises:
        SpecError: with every error found.
    """
    checker = _Checker(module, switches)
    spec = checker.run()
    for name, value in spec.switches:
        if name not in (switches or {}):
            _Checker(module, {**(switches or {}), name: 1.0 - value}).run()
    return spec, checker.r.warnings()


__all__ = ["SpecError", "broadcast", "check", "reserved_reason"]
