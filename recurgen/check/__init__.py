"""check: syntax.Module -> ir.Spec (name resolution, shape and dtype inference, domains, reserved names).

Every problem found becomes a diagnostic; all of them are reported together. A statement that fails
marks what it declares (or updates) as failed, so later statements do not add follow-on errors
("never updated", "used before declared") about the same mistake.

The checker is one class in three parts: statements and declarations here, expressions in `exprs.py`, the
`api` line in `api.py`; the language's vocabulary and limits (functions, domain words, reserved names) are in
`language.py`.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, replace

from .. import ir
from .. import syntax as S
from ..errors import Diagnostic, Reporter, Span, SpecError
from ..ir import Kind, Op, Type
from .api import ApiChecks
from .exprs import ExprChecks
from .language import (
    _LANGUAGE_NAMES,
    DOMAIN_WORDS,
    IDENT,
    IMPLICIT_SCALE,
    MAX_EXPR_DEPTH,
    MAX_EXPR_NODES,
    MAX_NAME,
    RESERVED,
    UNKNOWN,
    _a,
    _fix_eye,
    _fmt_shape,
    _short,
    broadcast,
    reserved_reason,
)


@dataclass
class _Scope:
    """What names mean at one point of the spec, in declaration order."""

    entries: dict[str, tuple[Kind, Type]] = field(default_factory=dict)
    lets: dict[str, ir.Expr] = field(default_factory=dict)
    # name -> (what the user declared it as: "input", "let", "output", ..., the span of the name)
    decl: dict[str, tuple[str, Span]] = field(default_factory=dict)


class _Checker(ApiChecks, ExprChecks):
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
        self.updating: str | None = None  # the state whose update is being checked
        self.lag_warned: set[tuple[str, str]] = set()  # (updated state, other state read bare): warned once
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
        self._inline_new()
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
        self.context, self.loop, self.updating = "update", loop, name
        value = self.expr(st.value)
        self.loop, self.updating = None, None
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
        if not ir.uses(value, {Kind.STATE, Kind.NEW_STATE}):
            self.r.warning(st.value.span, f"the update of `{name}` does not use any state",
                           "the recurrence then has no memory")
        self.updates.append(ir.Update(name, value, loop, st.span))

    def _inline_new(self) -> None:
        """Replace every `new(M)` by M's new value, written with previous values only (M's update, unrolled if
        it loops), so later stages see plain simultaneous updates. A cycle of `new` reads is an error."""
        by_state = {u.state: u for u in self.updates}
        done: dict[str, ir.Expr] = {}  # state -> its new value in previous values only
        resolved: dict[str, ir.Expr | None] = {}  # state -> its update with `new` substituted (None: an error)
        visiting: list[str] = []
        cycles: set[frozenset[str]] = set()

        def new_value(m: str, span: Span) -> ir.Expr | None:
            if m in done:
                return done[m]
            if m in visiting:
                members = visiting[visiting.index(m):]
                if frozenset(members) in cycles:
                    return None
                cycles.add(frozenset(members))  # reported once, where it is first entered
                cycle = " -> ".join(f"`{n}`" for n in (*members, m))
                self.r.error(span, f"the updates read each other's new values in a cycle ({cycle})",
                             "one of them must read the previous value: write the bare name (or `prev(...)`)")
                return None
            u = by_state.get(m)
            if u is None:  # its update failed and was reported
                return None
            visiting.append(m)
            value = resolve(u)
            visiting.pop()
            if value is not None:
                done[m] = value if u.loop is None else _unrolled(value, m, u.loop)
            return done.get(m)

        def resolve(u: ir.Update) -> ir.Expr | None:
            if u.state not in resolved:
                resolved[u.state] = substitute(u)
            return resolved[u.state]

        def substitute(u: ir.Update) -> ir.Expr | None:
            reads = [n for n in ir.walk(u.value) if isinstance(n, ir.Var) and n.kind is Kind.NEW_STATE]
            subst: dict[str, ir.Expr] = {}
            for n in reads:
                if n.name in subst:
                    continue
                v = new_value(n.name, n.span)
                if v is None:
                    return None
                if u.loop is not None and u.state in ir.uses(v, {Kind.STATE}):
                    self.r.error(n.span, f"`new({n.name})` reads `{u.state}` through the update of `{n.name}`, "
                                 f"but inside this `for` update `{u.state}` means its running value",
                                 f"read the previous value of `{n.name}` here, or update `{u.state}` without a loop")
                    return None
                subst[n.name] = v
            if not subst:
                return u.value
            return ir.rebuild(u.value, lambda e: subst[e.name] if isinstance(e, ir.Var)
                              and e.kind is Kind.NEW_STATE else None)

        out = []
        for u in self.updates:
            value = resolve(u)
            if value is None:
                continue
            size, depth = self._measure(value)
            if size > MAX_EXPR_NODES or depth > MAX_EXPR_DEPTH:
                self.r.error(u.span, f"the update of `{u.state}` is too large once `new(...)` is substituted "
                             f"({size} operations, nested {depth} deep)", f"the limit is {MAX_EXPR_NODES} "
                             f"operations nested {MAX_EXPR_DEPTH} deep")
                continue
            out.append(replace(u, value=value))
        self.updates = out

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



def _unrolled(value: ir.Expr, state: str, loop: ir.Loop) -> ir.Expr:
    """The new value of a `for` update: its step applied `loop.size` times, the state's running value threaded."""
    running: ir.Expr = ir.Var(state, Kind.STATE, value.ty)
    for j in range(loop.size):
        def step(e: ir.Expr, j: int = j, prev: ir.Expr = running) -> ir.Expr | None:
            if isinstance(e, ir.Var) and e.kind is Kind.STATE and e.name == state:
                return prev
            if isinstance(e, ir.Var) and e.kind is Kind.LOOP and e.name == loop.var:
                return ir.Const(float(j))
            if isinstance(e, ir.Apply) and e.op is Op.INDEX and not e.attr and isinstance(e.args[1], ir.Const):
                return replace(e, attr=str(int(e.args[1].value.real)))
            return None
        running = ir.rebuild(value, step)
    return running


def _update_shape_hint(value: tuple[str, ...], state: tuple[str, ...]) -> str:
    if len(state) == 2 and len(value) < 2:
        return (f"an outer product `outer(a, b)` of a {_fmt_shape(state[:1])} and a {_fmt_shape(state[1:])} "
                "vector has the state's shape")
    if sorted(value) == sorted(state):
        return "the same dims in another order: swap the arguments of `outer(a, b)`, or transpose with `.T`"
    return f"the update must have the state's shape {_fmt_shape(state)}"


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


__all__ = ["RESERVED", "broadcast", "check", "reserved_reason"]
