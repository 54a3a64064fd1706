"""The checker's part for declarations: names (reserved, clashing, declared twice), dims, inputs, params and
states with their domains, defaults and switches, and the `layout` line."""

from __future__ import annotations

import difflib
import math
from dataclasses import replace

from .. import ir
from .. import syntax as S
from ..ir import Kind, Type
from .language import (
    _LANGUAGE_NAMES,
    DOMAIN_WORDS,
    IDENT,
    IMPLICIT_SCALE,
    MAX_NAME,
    RESERVED,
    _a,
    _fmt_shape,
    _short,
    reserved_reason,
)


class DeclChecks:
    """Mixed into the checker (`recurgen.check._Checker`): uses its scope, reporter and declarations."""

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

    # --- declarations ---------------------------------------------------------------------
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
