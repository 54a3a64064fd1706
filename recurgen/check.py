"""check: syntax.Module -> ir.Spec (name resolution, shape and dtype inference, domains, reserved names).

Every problem found becomes a diagnostic; all of them are reported together.
"""

from __future__ import annotations

import builtins
import keyword
import math
import re
from dataclasses import dataclass, field, replace

from . import ir
from . import syntax as S
from .errors import Reporter, Span, SpecError
from .ir import SCALAR, Kind, Op, Type

IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}\Z")

FUNCTIONS: dict[str, Op] = {
    "exp": Op.EXP, "log": Op.LOG, "sigmoid": Op.SIGMOID, "logsigmoid": Op.LOGSIGMOID, "softplus": Op.SOFTPLUS,
    "silu": Op.SILU, "sqrt": Op.SQRT, "abs": Op.ABS, "tanh": Op.TANH, "relu": Op.RELU, "Re": Op.RE, "Im": Op.IM,
    "conj": Op.CONJ, "max": Op.MAX, "min": Op.MIN, "outer": Op.OUTER, "diag": Op.DIAG, "sum": Op.SUM,
    "norm": Op.NORM, "normalize": Op.NORMALIZE, "complex": Op.COMPLEX,
}
ARITY = {Op.MAX: 2, Op.MIN: 2, Op.OUTER: 2, Op.COMPLEX: 2}
REAL_ONLY = frozenset({Op.SIGMOID, Op.LOGSIGMOID, Op.SOFTPLUS, Op.SILU, Op.TANH, Op.RELU, Op.MAX, Op.MIN,
                       Op.COMPLEX})
DOMAIN_WORDS = {
    "logdecay": ir.Domain(hi=0.0, hi_open=False, logspace=True),
    "positive": ir.Domain(lo=0.0),
    "negative": ir.Domain(hi=0.0),
    "nonnegative": ir.Domain(lo=0.0, lo_open=False),
    "nonpositive": ir.Domain(hi=0.0, hi_open=False),
    "unit": ir.Domain(lo=0.0, hi=1.0),
    "normalized": ir.Domain(normalized=True),
}
# Names the language, the generated code or the public call already use.
RESERVED = frozenset({
    *FUNCTIONS, "I", "prev", "head", "H", "inf", "pi", "j", "tl", "triton", "torch", "math", "self", "cls",
    "cu_seqlens", "initial_state", "output_final_state", "mode", "final_state", "state", "dtype", "device",
    "recurgen", "grad", "ctx", "real", "complex",
}) | frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))
IMPLICIT_SCALE = "scale"


def _fmt_shape(dims: tuple[str, ...]) -> str:
    return f"[{', '.join(dims)}]"


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
    decl_line: dict[str, int] = field(default_factory=dict)


class _Checker:
    def __init__(self, module: S.Module) -> None:
        self.m = module
        self.r = Reporter(module.source)
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
        self.context = "update"  # which statement kind is being checked: update, output, const, option, let
        self.loop: ir.Loop | None = None
        self.declared_later: dict[str, tuple[str, int]] = {}

    # --- names ------------------------------------------------------------------------------
    def _declare_name(self, ident: S.Ident, what: str) -> bool:
        name = ident.name
        if not IDENT.match(name):
            if not name.isascii():
                self.r.error(ident.span, f"{what} name `{name}` has non-ASCII characters",
                             "names are ASCII letters, digits and `_`, starting with a letter")
            else:
                self.r.error(ident.span, f"{what} name `{name}` is not a valid identifier",
                             "names are ASCII letters, digits and `_`, start with a letter, at most 40 long")
            return False
        if name in RESERVED and not (what == "option" and name == IMPLICIT_SCALE):
            self.r.error(ident.span, f"`{name}` is reserved and cannot name a {what}",
                         "choose another name; reserved are Python keywords and builtins, the language's "
                         "functions, and names the generated code uses")
            return False
        if name in self.scope.entries or name in self.dims:
            line = self.scope.decl_line.get(name, 0) or self.dim_spans.get(name, ident.span).line
            self.r.error(ident.span, f"`{name}` is already declared (line {line})", "every name is declared once")
            return False
        return True

    def _dim_of(self, ident: S.Ident) -> str:
        name = ident.name
        if name in self.scope.entries:
            self.r.error(ident.span, f"`{name}` is declared as a {self.scope.entries[name][0].value}, "
                         "not a dimension", "dimension names must differ from tensor names")
        elif not IDENT.match(name) or name in RESERVED:
            self.r.error(ident.span, f"`{name}` cannot name a dimension",
                         "dimension names are identifiers that are not reserved, e.g. K, V, N, D")
        elif name not in self.dims:
            self.dims[name] = ir.Dim(name, None, ident.span)
            self.dim_spans[name] = ident.span
        return name

    # --- statements -------------------------------------------------------------------------
    def run(self) -> ir.Spec:
        header = self.m.header
        if not IDENT.match(header.name.name) or header.name.name in RESERVED:
            self.r.error(header.name.span, f"`{header.name.name}` cannot name a recurrence",
                         "use an ASCII identifier that is not a Python keyword or builtin, e.g. my_gla")
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
        self._finish()
        self.r.raise_if_errors()
        arg_order = tuple(a.name for a in self.api.args) if self.api else \
            tuple(t.name for t in (*self.inputs, *self.params))
        return ir.Spec(header.name.name, header.description, tuple(self.dims.values()), tuple(self.inputs),
                       tuple(self.params), tuple(self.consts), tuple(self.options), tuple(self.states),
                       tuple(self.updates), tuple(self.outputs), arg_order, self.path, self.m.source)

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
        dom = ir.Domain()
        for a in decl.annotations:
            if isinstance(a, S.Ident):
                if a.name in ("real", "complex"):
                    continue
                if a.name not in DOMAIN_WORDS:
                    self.r.error(a.span, f"unknown annotation `{a.name}`",
                                 f"known: {', '.join(DOMAIN_WORDS)}, complex, or an interval `in (0, 1)`")
                    continue
                word = DOMAIN_WORDS[a.name]
                if word.normalized and len(decl.shape) == 0:
                    self.r.error(a.span, "`normalized` needs a vector", "a scalar cannot have unit L2 norm")
                dom = replace(dom, logspace=dom.logspace or word.logspace,
                              normalized=dom.normalized or word.normalized)
                if (word.lo, word.hi) != (-math.inf, math.inf):
                    dom = replace(dom, lo=word.lo, hi=word.hi, lo_open=word.lo_open, hi_open=word.hi_open)
            else:
                lo, hi = self._number(a.lo), self._number(a.hi)
                if lo is None or hi is None:
                    continue
                if lo >= hi:
                    self.r.error(a.span, f"empty interval: {lo:g} is not below {hi:g}", "write `in (lo, hi)`")
                    continue
                dom = replace(dom, lo=lo, hi=hi, lo_open=a.lo_open or lo == -math.inf,
                              hi_open=a.hi_open or hi == math.inf)
        if kind == "state" and dom != ir.Domain():
            self.r.error(decl.span, "a state takes no value domain", "domains describe inputs and params")
        return dom

    def _number(self, e: S.Expr) -> float | None:
        """A literal bound of an interval: a number, `inf`, or a negated one."""
        if isinstance(e, S.Number) and isinstance(e.value, float):
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
            dims = tuple(self._dim_of(i) for i in d.shape)
            is_complex = any(isinstance(a, S.Ident) and a.name == "complex" for a in d.annotations)
            if is_complex and kind is Kind.INPUT:
                self.r.error(d.span, f"input `{d.name.name}` cannot be complex",
                             "inputs are real tensors; build complex values from them with complex(re, im)")
            if len(dims) > 3:
                self.r.error(d.span, f"`{d.name.name}` has {len(dims)} dims; at most 3 are supported",
                             "per-token tensors are scalars, vectors or matrices (plus one loop dim)")
            dom = self._domain(d, st.kind)
            if not self._declare_name(d.name, st.kind):
                continue
            t = ir.Tensor(d.name.name, Type(dims, is_complex), dom, d.span)
            {"input": self.inputs, "param": self.params, "state": self.states}[st.kind].append(t)
            self.scope.entries[t.name] = (kind, t.ty)
            self.scope.decl_line[t.name] = d.span.line

    def _dim_decl(self, st: S.DimDecl) -> None:
        if st.size < 1 or st.size > 4096:
            self.r.error(st.span, f"dimension `{st.name.name}` = {st.size} is out of range",
                         "fixed dimension sizes are between 1 and 4096")
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
        if not self._declare_name(st.name, st.kind) or value is None:
            return
        if st.kind in ("const", "option") and value.ty.dims:
            self.r.error(st.value.span, f"{st.kind} `{st.name.name}` must be a scalar, got shape "
                         f"{_fmt_shape(value.ty.dims)}", "use a `param` for per-head tensors")
            return
        if UNKNOWN in value.ty.dims:
            self.r.error(st.value.span, "cannot infer the size of `I` here", "write `I(K)` with its dimension")
            return
        kind = {"const": Kind.CONST, "option": Kind.OPTION, "let": Kind.INPUT}[st.kind]
        self.scope.decl_line[st.name.name] = st.span.line
        if st.kind == "let":
            self.scope.lets[st.name.name] = value
            self.scope.entries[st.name.name] = (kind, value.ty)
            return
        self.scope.entries[st.name.name] = (kind, value.ty)
        binding = ir.Binding(st.name.name, value, st.span)
        (self.consts if st.kind == "const" else self.options).append(binding)

    def _update(self, st: S.Update) -> None:
        name = st.target.name
        entry = self.scope.entries.get(name)
        if entry is None or entry[0] is not Kind.STATE:
            if entry is None and name in self.declared_later and self.declared_later[name][0] == "state":
                self.r.error(st.target.span, f"state `{name}` is updated before it is declared "
                             f"(line {self.declared_later[name][1]})", "declare states above their updates")
            elif entry is None:
                self.r.error(st.target.span, f"`{name}` is not a declared state",
                             f"declare it first: `state {name}: [K, V]`")
            else:
                self.r.error(st.target.span, f"`{name}` is a {entry[0].value}, not a state; only states are updated")
            return
        if any(u.state == name for u in self.updates):
            self.r.error(st.target.span, f"state `{name}` is updated twice",
                         "updates are simultaneous; for several steps per token write one `update ... for j in J`")
            return
        loop = None
        if st.loop is not None:
            d = self.dims.get(st.loop.dim.name)
            if d is None or d.size is None:
                self.r.error(st.loop.dim.span, f"loop dimension `{st.loop.dim.name}` needs a fixed size",
                             f"declare it before use: `dim {st.loop.dim.name} = 2`")
                return
            if st.loop.var.name in self.scope.entries or st.loop.var.name in self.dims \
                    or not IDENT.match(st.loop.var.name) or st.loop.var.name in (RESERVED - {"j"}):
                self.r.error(st.loop.var.span, f"loop variable `{st.loop.var.name}` clashes with another name",
                             "use a fresh name such as `j`")
                return
            loop = ir.Loop(st.loop.var.name, d.name, d.size)
        self.context, self.loop = "update", loop
        value = self.expr(st.value)
        self.loop = None
        if value is None:
            return
        state_ty = entry[1]
        if UNKNOWN in value.ty.dims and len(set(state_ty.dims)) == 1 and len(state_ty.dims) == 2:
            value = _fix_eye(value, state_ty.dims[0])
        if value.ty.dims != state_ty.dims:
            hint = "an outer product is written `outer(k, v)`" if len(state_ty.dims) == 2 and \
                len(value.ty.dims) < 2 else "the update must have the state's shape"
            self.r.error(st.value.span, f"shape mismatch: the update has shape {_fmt_shape(value.ty.dims)} but "
                         f"state `{name}` has shape {_fmt_shape(state_ty.dims)}", hint)
            return
        if value.ty.complex and not state_ty.complex:
            self.r.error(st.value.span, f"complex/real mixing: the update of real state `{name}` is complex",
                         f"declare `state {name}: {_fmt_shape(state_ty.dims)} complex`, or take Re(...)")
            return
        if not ir.uses(value, {Kind.STATE}):
            self.r.warning(st.value.span, f"the update of `{name}` does not use any state",
                           "the recurrence then has no memory")
        self.updates.append(ir.Update(name, value, loop, st.span))

    def _output(self, st: S.Output) -> None:
        self.context = "output"
        value = self.expr(st.value)
        if not self._declare_name(st.name, "output") or value is None:
            return
        if UNKNOWN in value.ty.dims:
            self.r.error(st.value.span, "cannot infer the size of `I` here", "write `I(K)` with its dimension")
            return
        if st.shape is not None:
            dims = tuple(self._dim_of(i) for i in st.shape)
            if dims != value.ty.dims:
                self.r.error(st.value.span, f"shape mismatch: output `{st.name.name}` is declared "
                             f"{_fmt_shape(dims)} but its value has shape {_fmt_shape(value.ty.dims)}",
                             "change the declared shape or the expression")
                return
        if value.ty.complex:
            self.r.error(st.value.span, f"output `{st.name.name}` is complex",
                         "outputs are real tensors: take Re(...) (as LRU and S5 do) or abs(...)")
            return
        if not ir.uses(value, {Kind.STATE, Kind.PREV_STATE}):
            self.r.error(st.value.span, f"output `{st.name.name}` does not read any state",
                         "a readout reads the state, e.g. `q @ S`")
            return
        self.scope.entries[st.name.name] = (Kind.CONST, value.ty)  # outputs are not referable
        self.scope.decl_line[st.name.name] = st.span.line
        self.outputs.append(ir.Output(st.name.name, value, st.span))

    def _api_stmt(self, st: S.Api) -> None:
        if self.api is not None:
            self.r.error(st.span, "a second `api` line", "a spec has one public signature")
            return
        self.api = st

    def _finish(self) -> None:
        span0 = self.m.header.span
        if not self.states:
            self.r.error(span0, "the spec declares no state", "declare one: `state S: [K, V]`")
        for s in self.states:
            if not any(u.state == s.name for u in self.updates):
                self.r.error(s.span, f"state `{s.name}` is never updated", f"add `update {s.name} = ...`")
        if not self.outputs:
            self.r.error(span0, "the spec has no output", "add a readout: `output o: [V] = q @ S`")
        if not self.inputs:
            self.r.error(span0, "the spec declares no input", "declare the per-token inputs: `input k: [K]`")
        known = {d for t in (*self.inputs, *self.params) for d in t.ty.dims}
        for d in self.dims.values():
            if d.size is None and d.name not in known:
                self.r.error(d.span, f"dimension `{d.name}` appears in no input or param, so its size "
                             "cannot be read from the arguments", f"declare it: `dim {d.name} = 16`")
        if self.api is not None:
            tensors = [t.name for t in (*self.inputs, *self.params)]
            names = [a.name for a in self.api.args]
            for a in self.api.args:
                if a.name not in tensors:
                    self.r.error(a.span, f"`{a.name}` in the api line is not an input or param",
                                 f"the arguments are: {', '.join(tensors)}")
            missing = [t for t in tensors if t not in names]
            dup = {n for n in names if names.count(n) > 1}
            if missing or dup:
                self.r.error(self.api.span, "the api line must list every input and param exactly once"
                             + (f"; missing: {', '.join(missing)}" if missing else "")
                             + (f"; repeated: {', '.join(sorted(dup))}" if dup else ""),
                             "list each of them once, in the order of the public call")

    # --- expressions ------------------------------------------------------------------------
    def expr(self, e: S.Expr) -> ir.Expr | None:
        """Type-check an expression; None after reporting an error inside it."""
        if isinstance(e, S.Number):
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
            base = self.expr(e.base)
            if base is None:
                return None
            if e.attr != "T":
                self.r.error(e.attr_span, f"unknown attribute `.{e.attr}`", "the only attribute is `.T` (transpose)")
                return None
            if len(base.ty.dims) != 2:
                self.r.error(e.span, f"`.T` needs a matrix, got shape {_fmt_shape(base.ty.dims)}",
                             "vectors need no transpose: `a @ S` and `S @ a` contract the matching dim")
                return None
            return ir.Apply(Op.TRANSPOSE, (base,), Type(base.ty.dims[::-1], base.ty.complex), span=e.span)
        raise AssertionError(e)

    def _name(self, e: S.Name) -> ir.Expr | None:
        n = e.name
        if n == "I":
            return ir.Apply(Op.EYE, (), Type((UNKNOWN, UNKNOWN)), UNKNOWN, e.span)
        if n == "pi":
            return ir.Const(math.pi, SCALAR, e.span)
        if n in ("head", "H"):
            if self.context != "const":
                self.r.error(e.span, f"`{n}` can only be used in a `const`", "e.g. `const gamma = 1 - 2 ** (-5 - head)`")
                return None
            return ir.Var(n, Kind.HEAD if n == "head" else Kind.HEADS, SCALAR, e.span)
        if self.loop is not None and n == self.loop.var:
            return ir.Var(n, Kind.LOOP, SCALAR, e.span)
        if n in self.scope.lets:
            return self.scope.lets[n]
        if n in self.dims:
            return ir.Var(n, Kind.DIM, SCALAR, e.span)
        entry = self.scope.entries.get(n)
        if entry is None:
            if n == IMPLICIT_SCALE:
                return self._implicit_scale(e)
            if n in self.declared_later:
                kind, line = self.declared_later[n]
                self.r.error(e.span, f"{kind} `{n}` is used before it is declared (line {line})",
                             "declare names above the statements that use them")
            elif n == "inf":
                self.r.error(e.span, "`inf` is only allowed as an interval bound", "use a finite number")
            else:
                self.r.error(e.span, f"unknown name `{n}`", self._suggest(n))
            return None
        kind, ty = entry
        if self.context in ("const", "option") and kind not in (Kind.CONST, Kind.OPTION):
            self.r.error(e.span, f"a {self.context} cannot depend on {kind.value} `{n}`",
                         "consts use numbers, dims, `head`, `H` and other consts; options use numbers and dims")
            return None
        if kind is Kind.STATE and self.context == "let":
            self.r.error(e.span, f"`let` cannot read state `{n}`", "read states directly in `update` and `output`")
            return None
        if self.context == "output" and kind is Kind.CONST and n in {o.name for o in self.outputs}:
            self.r.error(e.span, f"output `{n}` cannot be read by another output", "use a `let` for shared parts")
            return None
        return ir.Var(n, kind, ty, e.span)

    def _implicit_scale(self, e: S.Name) -> ir.Expr | None:
        if "K" not in self.dims:
            self.r.error(e.span, "`scale` has no default here: there is no dimension `K`",
                         "declare it: `option scale = 1`")
            return None
        default = ir.Apply(Op.POW, (ir.Var("K", Kind.DIM, SCALAR), ir.Const(-0.5)), SCALAR)
        self.options.append(ir.Binding(IMPLICIT_SCALE, default, e.span))
        self.scope.entries[IMPLICIT_SCALE] = (Kind.OPTION, SCALAR)
        return ir.Var(IMPLICIT_SCALE, Kind.OPTION, SCALAR, e.span)

    def _suggest(self, n: str) -> str:
        import difflib

        pool = [*self.scope.entries, *self.scope.lets, *self.dims, *FUNCTIONS]
        close = difflib.get_close_matches(n, pool, n=1)
        if close:
            return f"did you mean `{close[0]}`?"
        return "declare it with `input`, `param`, `state`, `const`, `option` or `let` before use"

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
        return self._elementwise(op, lhs, rhs, e.span, e.op)

    def _elementwise(self, op: Op, lhs: ir.Expr, rhs: ir.Expr, span: Span, sym: str) -> ir.Expr | None:
        a, b = lhs.ty.dims, rhs.ty.dims
        if UNKNOWN in a and len(b) == 2 and b[0] == b[1]:
            lhs, a = _fix_eye(lhs, b[0]), b
        elif UNKNOWN in b and len(a) == 2 and a[0] == a[1]:
            rhs, b = _fix_eye(rhs, a[0]), a
        dims = broadcast(a, b)
        if dims is None:
            hint = "an outer product is written `outer(a, b)`" if len(a) == 1 and len(b) == 1 else \
                "elementwise operands need the same dims, or one's dims among the other's"
            if UNKNOWN in a or UNKNOWN in b:
                hint = "`I` needs a square partner; write `I(K)` with its dimension"
            self.r.error(span, f"shape mismatch in `{sym}`: {_fmt_shape(a)} and {_fmt_shape(b)}", hint)
            return None
        return ir.Apply(op, (lhs, rhs), Type(dims, lhs.ty.complex or rhs.ty.complex), span=span)

    def _matmul(self, e: S.BinOp, lhs: ir.Expr, rhs: ir.Expr) -> ir.Expr | None:
        a, b = lhs.ty.dims, rhs.ty.dims
        if not a or not b:
            self.r.error(e.span, "`@` needs vectors or matrices; one side is a scalar", "scale with `*`")
            return None
        if UNKNOWN in a:
            lhs, a = _fix_eye(lhs, b[0]), (b[0], b[0])
        if UNKNOWN in b:
            rhs, b = _fix_eye(rhs, a[-1]), (a[-1], a[-1])
        if len(a) > 2 or len(b) > 2:
            self.r.error(e.span, "`@` takes vectors and matrices", "index the loop dim first: `k[j] @ S`")
            return None
        if a[-1] != b[0]:
            self.r.error(e.span, f"shape mismatch in `@`: {_fmt_shape(a)} @ {_fmt_shape(b)} contracts "
                         f"`{a[-1]}` with `{b[0]}`", "`@` contracts the last dim on the left with the first on "
                         "the right; use `.T` to transpose")
            return None
        dims = a[:-1] + b[1:]
        return ir.Apply(Op.MATMUL, (lhs, rhs), Type(dims, lhs.ty.complex or rhs.ty.complex), span=e.span)

    def _call(self, e: S.Call) -> ir.Expr | None:
        f = e.func
        if f == "prev":
            return self._prev(e)
        if f == "I":
            if len(e.args) != 1 or not isinstance(e.args[0], S.Name) or e.args[0].name not in self.dims:
                self.r.error(e.span, "`I(...)` takes one dimension name", "e.g. `I(K)`")
                return None
            d = e.args[0].name
            return ir.Apply(Op.EYE, (), Type((d, d)), d, e.span)
        if f not in FUNCTIONS:
            self.r.error(e.func_span, f"unknown function `{f}`",
                         f"the functions are: {', '.join(sorted(FUNCTIONS, key=str.lower))}, prev, I")
            return None
        op = FUNCTIONS[f]
        if op is Op.SUM and len(e.args) == 2:
            return self._sum_over(e)
        want = ARITY.get(op, 1)
        if len(e.args) != want:
            self.r.error(e.span, f"`{f}` takes {want} argument{'s' if want > 1 else ''}, got {len(e.args)}")
            return None
        args = [self.expr(a) for a in e.args]
        if any(a is None for a in args):
            return None
        typed: list[ir.Expr] = [a for a in args if a is not None]
        if op in REAL_ONLY and any(a.ty.complex for a in typed):
            self.r.error(e.span, f"complex/real mixing: `{f}` takes real arguments",
                         "take Re(...), Im(...) or abs(...) first")
            return None
        if op in (Op.MAX, Op.MIN, Op.COMPLEX):
            out = self._elementwise(op, typed[0], typed[1], e.span, f)
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
                self.r.error(e.span, f"`diag` takes a vector, got {_fmt_shape(x.ty.dims)}")
                return None
            return ir.Apply(op, (x,), Type(x.ty.dims * 2, x.ty.complex), span=e.span)
        if op in (Op.SUM, Op.NORM):
            real = op is Op.NORM or not x.ty.complex
            return ir.Apply(op, (x,), Type((), not real), span=e.span)
        if op is Op.NORMALIZE:
            if len(x.ty.dims) != 1:
                self.r.error(e.span, f"`normalize` takes a vector, got {_fmt_shape(x.ty.dims)}")
                return None
            return ir.Apply(op, (x,), x.ty, span=e.span)
        real_out = op in (Op.ABS, Op.RE, Op.IM)
        return ir.Apply(op, (x,), Type(x.ty.dims, x.ty.complex and not real_out), span=e.span)

    def _sum_over(self, e: S.Call) -> ir.Expr | None:
        """`sum(x, N)`: reduce one named dim."""
        x, d = self.expr(e.args[0]), e.args[1]
        if x is None:
            return None
        if not isinstance(d, S.Name) or d.name not in x.ty.dims or x.ty.dims.count(d.name) != 1:
            self.r.error(d.span, f"the second argument of `sum` must be one dim of {_fmt_shape(x.ty.dims)}",
                         "e.g. `sum(C * h, N)`")
            return None
        dims = tuple(n for n in x.ty.dims if n != d.name)
        return ir.Apply(Op.SUM, (x,), Type(dims, x.ty.complex), d.name, e.span)

    def _prev(self, e: S.Call) -> ir.Expr | None:
        if len(e.args) != 1 or not isinstance(e.args[0], S.Name):
            self.r.error(e.span, "`prev(...)` takes one state name", "e.g. `prev(S)`")
            return None
        n = e.args[0].name
        entry = self.scope.entries.get(n)
        if entry is None or entry[0] is not Kind.STATE:
            self.r.error(e.args[0].span, f"`{n}` is not a declared state", "`prev` reads a state's previous value")
            return None
        if self.context != "output":
            self.r.error(e.span, "`prev(...)` is only meaningful in an output",
                         "inside `update`, a state name already means its previous value")
            return None
        return ir.Var(n, Kind.PREV_STATE, entry[1], e.span)

    def _index(self, e: S.Index) -> ir.Expr | None:
        base = self.expr(e.base)
        if base is None:
            return None
        if not base.ty.dims:
            self.r.error(e.span, "cannot index a scalar")
            return None
        first = base.ty.dims[0]
        if isinstance(e.index, S.Name) and self.loop is not None and e.index.name == self.loop.var:
            if first != self.loop.dim:
                self.r.error(e.span, f"`{e.index.name}` runs over `{self.loop.dim}` but the first dim of this "
                             f"value is `{first}`", f"declare the tensor with `{self.loop.dim}` first")
                return None
            idx: ir.Expr = ir.Var(e.index.name, Kind.LOOP, SCALAR, e.index.span)
            attr = ""
        elif isinstance(e.index, S.Number) and isinstance(e.index.value, float) and e.index.value.is_integer():
            d = self.dims.get(first)
            pos = int(e.index.value)
            if d is None or d.size is None or not 0 <= pos < d.size:
                self.r.error(e.index.span, f"index {pos} is not within the fixed dimension `{first}`",
                             f"literal indices need `dim {first} = n` and 0 <= index < n")
                return None
            idx, attr = ir.Const(float(pos)), str(pos)
        else:
            self.r.error(e.index.span, "an index is a `for` loop variable or an integer literal",
                         "e.g. `update S = ... for j in J` with `k[j]`")
            return None
        if self.context == "update" and isinstance(base, ir.Var) and base.kind is Kind.STATE:
            self.r.error(e.span, "a state cannot be indexed in an update", "index the inputs instead")
            return None
        return ir.Apply(Op.INDEX, (base, idx), Type(base.ty.dims[1:], base.ty.complex), attr, e.span)


def check(module: S.Module) -> tuple[ir.Spec, tuple]:
    """Resolve and type the surface tree.

    Returns:
        The spec and the warnings found on the way.
    Raises:
        SpecError: with every error found.
    """
    checker = _Checker(module)
    spec = checker.run()
    return spec, checker.r.warnings()


__all__ = ["SpecError", "broadcast", "check"]
