"""check: syntax.Module -> ir.Spec (name resolution, shape and dtype inference, domains, reserved names).

Every problem found becomes a diagnostic; all of them are reported together. A statement that fails
marks what it declares (or updates) as failed, so later statements do not add follow-on errors
("never updated", "used before declared") about the same mistake.

The checker is one class in parts: the statements' order, lets, outputs and the spec's completeness here;
names and declarations in `decls.py`, updates (and `new(M)`) in `updates.py`, expressions in `exprs.py`, the
`api` line in `api.py`; the language's vocabulary and limits (functions, domain words, reserved names) are in
`language.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import ir
from .. import syntax as S
from ..errors import Diagnostic, Reporter, Span, SpecError
from ..ir import Kind, Type
from .api import ApiChecks
from .decls import DeclChecks
from .exprs import ExprChecks
from .language import IDENT, RESERVED, UNKNOWN, _fmt_shape, broadcast, reserved_reason
from .updates import UpdateChecks


@dataclass
class _Scope:
    """What names mean at one point of the spec, in declaration order."""

    entries: dict[str, tuple[Kind, Type]] = field(default_factory=dict)
    lets: dict[str, ir.Expr] = field(default_factory=dict)
    # name -> (what the user declared it as: "input", "let", "output", ..., the span of the name)
    decl: dict[str, tuple[str, Span]] = field(default_factory=dict)


class _Checker(DeclChecks, UpdateChecks, ApiChecks, ExprChecks):
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
        # `prev(x)` of an input: hidden state -> (the state, its update `_prev_x = x`), added after the declared ones
        self.prev_inputs: dict[str, tuple[ir.Tensor, ir.Update]] = {}

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
        self._carry_prev_inputs()
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

    def _bind(self, st: S.Bind) -> None:
        self.context = st.kind
        value = self.statement_expr(st.value)
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

    def _output(self, st: S.Output) -> None:
        self.context = "output"
        self.attempted_outputs += 1
        value = self.statement_expr(st.value)
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


__all__ = ["RESERVED", "SpecError", "broadcast", "check", "reserved_reason"]
