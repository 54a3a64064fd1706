"""The checker's part for updates: one per state, its shape and dtype, `for` loops unrolled and `new(M)`
replaced by M's new value, so that later stages see plain simultaneous updates."""

from __future__ import annotations

from dataclasses import replace

from .. import ir
from .. import syntax as S
from ..errors import Span
from ..ir import Kind, Op
from .language import (
    IDENT,
    MAX_EXPR_DEPTH,
    MAX_EXPR_NODES,
    RESERVED,
    UNKNOWN,
    _a,
    _fix_eye,
    _fmt_shape,
)

# What a term of previous inputs may read besides them: the same at every token.
_PER_CALL_KINDS = frozenset({Kind.PARAM, Kind.CONST, Kind.OPTION, Kind.DIM})


class UpdateChecks:
    """Mixed into the checker (`recurgen.check._Checker`): uses its scope, reporter and declarations."""

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
        value = self.statement_expr(st.value)
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

    def _prev_input(self, e: S.Call, n: str) -> ir.Expr | None:
        """`prev(x)` of an input: x at the previous token, 0 before the first one.

        Desugared here, so that no later stage knows of it: a hidden state `_prev_x` (no spec name starts with
        `_`) whose update is `x` carries each token's input into the next, and `prev(x)` reads its previous
        value. It is an ordinary state after the declared ones: the kernels, decode, the final state and the
        oracle carry it like any other.
        """
        if self.context not in ("output", "update"):
            self.r.error(e.span, f"`prev({n})` reads the previous token's input, in an `update` or an `output` only",
                         f"write `prev({n})` in the update or output itself; a `let` is this token's values")
            return None
        t = next(t for t in self.inputs if t.name == n)
        hidden = ir.prev_input_state(n)
        if hidden not in self.prev_inputs:
            self.prev_inputs[hidden] = (ir.Tensor(hidden, t.ty, ir.Domain(), e.span),
                                        ir.Update(hidden, ir.Var(n, Kind.INPUT, t.ty, e.span), None, e.span))
        return ir.Var(hidden, Kind.STATE if self.context == "update" else Kind.PREV_STATE, t.ty, e.span)

    def _carry_prev_inputs(self) -> None:
        """Add the hidden states behind `prev(x)` of inputs, after the declared ones.

        Each `prev(x)` reads a state `_prev_x` whose update is `x`. A term made of previous inputs only (and params,
        consts, options), like the trapezoidal `outer(prev(B), prev(x))`, is carried as one hidden state whose
        update is the term at this token (`_prev_B_x = outer(B, x)`): the previous tokens' values are inputs of
        the update, and a product of two states would not be affine in the states.
        """
        if not self.prev_inputs:
            return
        to_input = {h: u.value for h, (_, u) in self.prev_inputs.items()}
        carried: dict[ir.Expr, ir.Expr] = {}  # a term at this token -> the term, read from the previous token

        def only_prev(e: ir.Expr) -> bool:
            return all(not isinstance(n, ir.Var) or n.name in to_input or n.kind in _PER_CALL_KINDS
                       for n in ir.walk(e)) and any(isinstance(n, ir.Var) and n.name in to_input for n in ir.walk(e))

        def hoist(e: ir.Expr, prev_kind: Kind) -> ir.Expr:
            if isinstance(e, ir.Apply) and only_prev(e):
                now = ir.rebuild(e, lambda n: to_input[n.name] if isinstance(n, ir.Var) and n.name in to_input
                                 else None)
                carried.setdefault(now, now)
                return ir.Var(now_name(now), prev_kind, e.ty, e.span)
            if isinstance(e, ir.Apply):
                args = tuple(hoist(a, prev_kind) for a in e.args)
                return e if args == e.args else replace(e, args=args)
            return e

        names: dict[ir.Expr, str] = {}  # a carried term -> a placeholder name (no spec name has a space)

        def now_name(now: ir.Expr) -> str:
            return names.setdefault(now, f" {len(names)}")

        self.updates = [replace(u, value=hoist(u.value, Kind.STATE)) for u in self.updates]
        self.outputs = [replace(o, value=hoist(o.value, Kind.PREV_STATE)) for o in self.outputs]
        read = {n.name for e in (*(u.value for u in self.updates), *(o.value for o in self.outputs))
                for n in ir.walk(e) if isinstance(n, ir.Var)}
        kept = [h for h in self.prev_inputs if h in read]
        final: dict[str, str] = {}  # placeholder -> the name: after the inputs it reads, free of the kept ones
        for now, placeholder in names.items():
            base = ir.prev_input_state("_".join(dict.fromkeys(
                n.name for n in ir.walk(now) if isinstance(n, ir.Var) and n.kind is Kind.INPUT)))
            name, i = base, 1
            while name in kept or name in final.values():
                i += 1
                name = f"{base}_{i}"
            final[placeholder] = name

        def rename(e: ir.Expr) -> ir.Expr | None:
            return replace(e, name=final[e.name]) if isinstance(e, ir.Var) and e.name in final else None

        self.updates = [replace(u, value=ir.rebuild(u.value, rename)) for u in self.updates]
        self.outputs = [replace(o, value=ir.rebuild(o.value, rename)) for o in self.outputs]
        for h in kept:
            state, update = self.prev_inputs[h]
            self.states.append(state)
            self.updates.append(update)
        for now, placeholder in names.items():
            self.states.append(ir.Tensor(final[placeholder], now.ty, ir.Domain(), now.span))
            self.updates.append(ir.Update(final[placeholder], now, None, now.span))

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
