"""The checker's part for expressions: names, operators, calls, indexing; shapes and dtypes inferred."""

from __future__ import annotations

import difflib
import math
from dataclasses import replace

from .. import ir
from .. import syntax as S
from ..errors import MAX_DIAGNOSTICS, Span
from ..ir import SCALAR, Kind, Op, Type
from .language import (
    _ALLOWED_IN,
    _PER_CALL,
    _PER_HEAD,
    ARITY,
    FUNCTION_ALIASES,
    FUNCTIONS,
    IMPLICIT_SCALE,
    MAX_EXPR_DEPTH,
    MAX_EXPR_NODES,
    REAL_ONLY,
    SOFT_REDUCTIONS,
    UNKNOWN,
    _a,
    _fix_eye,
    _fmt_shape,
    _short,
    broadcast,
    meet_repeated,
    unalias,
)
from .reductions import ReductionChecks


class ExprChecks(ReductionChecks):
    """Mixed into the checker (`recurgen.check._Checker`): uses its scope, reporter and declarations."""

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

    def statement_expr(self, e: S.Expr) -> ir.Expr | None:
        """The value of a whole `let`, `update` or `output`: aliases of repeated dims named back."""
        return None if (out := self.expr(e)) is None else unalias(out)

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
        if kind is Kind.STATE and self.context == "update" and self.updating not in (None, n) \
                and (self.updating, n) not in self.lag_warned:
            self.lag_warned.add((self.updating, n))  # once per pair: the hint applies to every use
            self.r.warning(e.span, f"the update of `{self.updating}` reads `{n}` before this token's update "
                           f"({n}_(t-1)): updates are simultaneous",
                           f"write `new({n})` for its value after this token's update, or `prev({n})` to keep the "
                           "previous value and silence this warning")
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
        elif n in FUNCTIONS or n in ("prev", "new", *SOFT_REDUCTIONS):
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
        lhs, rhs = meet_repeated(lhs, rhs)
        a, b = lhs.ty.dims, rhs.ty.dims
        dims = broadcast(a, b)
        if dims is None:
            ta, tb = self._text(operand_spans[0]), self._text(operand_spans[1])
            if UNKNOWN in a or UNKNOWN in b:
                hint = "`I` needs a square partner to tell its size; write `I(K)` with its dimension"
            elif any(x.count(d) > 1 for x in (a, b) for d in x):
                hint = ("a dim repeated in one operand meets a value that has it once when it is there exactly twice "
                        "(`M: [X, X, D]` times `h: [X, D]`: h meets the last `X`), or an operand with every "
                        "occurrence in the same order")
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
        if (len(a) > 2 or len(b) > 2) and 1 not in (len(a), len(b)):
            big = e.lhs.span if len(a) > 2 else e.rhs.span
            self.r.error(e.span, f"`@` takes vectors and matrices, but {self._quote(big, 'one side')} has shape "
                         f"{_fmt_shape(a if len(a) > 2 else b)} and the other is no vector",
                         "a 3-dim side contracts with a vector (`q @ S2`); reduce the other dims first (`sum(x, N)`) "
                         "or, in a `for` update, index the loop dim: `k[j] @ S`")
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
        if f in ("prev", "new"):
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
        if f in SOFT_REDUCTIONS or (f == "max" and (len(e.args) == 1 or (
                len(e.args) == 2 and isinstance(e.args[1], S.Name) and e.args[1].name in self.dims))):
            return self._reduction(e)
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
            both = x.ty.dims + y.ty.dims
            if not x.ty.dims or not y.ty.dims or len(both) > 3 or UNKNOWN in both:
                self.r.error(e.span, f"`outer` takes two vectors, or a vector and a matrix, got "
                             f"{_fmt_shape(x.ty.dims)} and {_fmt_shape(y.ty.dims)}",
                             "a tensor has at most 3 dims (`outer(outer(k, k), v)` is [K, K, V]); in a loop, index "
                             "the loop dim first: `outer(k[j], v[j])`")
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
            f, [*FUNCTIONS, *SOFT_REDUCTIONS, "prev", "new", "I"],
            f"the functions are: {', '.join(sorted([*FUNCTIONS, *SOFT_REDUCTIONS], key=str.lower))}, prev, new, I")
        self.r.error(e.func_span, f"unknown function `{f}`", hint)

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
        """`prev(S)`: S before this token's update; `new(S)`: after it. Which one a bare name means depends on
        the statement (the previous value in an update, the new one in an output), so one of the two only
        states the default there; the other is the point of the function."""
        f = e.func
        what = "previous" if f == "prev" else "new"
        if len(e.args) != 1 or not isinstance(e.args[0], S.Name):
            self.r.error(e.span, f"`{f}(...)` takes one state name", f"e.g. `{f}(S)`")
            return None
        n = e.args[0].name
        entry = self.scope.entries.get(n)
        if n in self.failed:
            return None
        if n in self.off_states:
            return self._name(e.args[0])  # reports the switch
        if f == "prev" and any(t.name == n for t in self.inputs):
            return self._prev_input(e, n)
        if entry is None or entry[0] is not Kind.STATE:
            hint = f"`{f}` reads a state's {what} value"
            if entry is not None and entry[0] is Kind.INPUT and f == "new":
                hint = f"an input has no new value: `{n}` is this token's; `prev({n})` is the previous token's"
            elif entry is not None and entry[0] in (Kind.PARAM, Kind.CONST, Kind.OPTION):
                hint = f"{_a(self.scope.decl[n][0])} is the same at every token: write `{n}`"
            self.r.error(e.args[0].span, f"`{n}` is not a declared state", hint)
            return None
        if self.context not in ("output", "update"):
            self.r.error(e.span, f"`{f}(...)` reads a state, in an `update` or an `output` only",
                         "states are read in `update` and `output` only")
            return None
        if self.context == "update" and n == self.updating:
            hint = f"in its own update `{n}` already means its previous value" if f == "prev" else \
                f"`{n}`'s new value is what this update computes; read its previous value as `{n}`"
            self.r.error(e.span, f"`{f}({n})` in the update of `{n}` itself", hint)
            return None
        if self.context == "update":
            return ir.Var(n, Kind.STATE if f == "prev" else Kind.NEW_STATE, entry[1], e.span)
        return ir.Var(n, Kind.PREV_STATE if f == "prev" else Kind.STATE, entry[1], e.span)

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
        # rows and columns share the name: the generated tiles cannot tell them apart (the identity's rows are its
        # columns: `I(E)[0]` is the first unit vector)
        if first in base.ty.dims[1:] and not (isinstance(base, ir.Apply) and base.op is Op.EYE):
            self.r.error(e.span, f"cannot index {self._quote(e.base.span, 'this value')}: it has shape "
                         f"[{', '.join(base.ty.dims)}], the dimension `{first}` twice",
                         "index an operand before the product instead (`x[0] * x` for `outer(x, x)[0]`)")
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
        if self.context == "update" and isinstance(base, ir.Var) and base.kind is Kind.STATE \
                and base.name not in self.prev_inputs:  # `prev(x)[0]` indexes the previous token's input
            self.r.error(e.span, "a state cannot be indexed in an update", "index the inputs instead")
            return None
        return ir.Apply(Op.INDEX, (base, idx), Type(base.ty.dims[1:], base.ty.complex), attr, e.span)


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
