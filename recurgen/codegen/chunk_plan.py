"""chunk_plan: Analysis -> ChunkPlan, the chunked-parallel form of a spec as calls of kernel families.

Each state's transition class picks a family of spec-independent chunk kernels (templates/chunk/):
  matmul  S_t = diag(exp(g_t)) S_{t-1} + k_t v_tᵀ, o_t = q_tᵀ S_t (or S_{t-1})  identity, scalar, row-diagonal
  wy      S_t = (I − β_t k_t k_tᵀ) diag(exp(g_t)) S_{t-1} + β_t k_t v_tᵀ          Householder / delta
  scan    S_t = a_t ⊙ S_{t-1} + b_t, o_t = S_t c_t (or S_t)                       elementwise, complex diagonal
The plan says, as IR expressions of one token's inputs, what the family's canonical arguments are
(q, k, v, g, β; or a, b, c): these come straight from the analysis' structured pieces (Decay.log,
Householder α/β/k, OuterTerm factors, the readout's query). The readout is the spec's own output
expression with each state read replaced by the family's output (a placeholder variable), so
skips, bonuses, gates and normalisers are computed around the kernel, and autodiff covers them.
A state whose class or readout has no family form makes the whole spec recurrent-only, with the
reason in `ChunkPlan.reason` (`recurgen explain` prints it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .. import ir
from ..analysis import exprs as X
from ..analysis.chunk import no_chunk_reason
from ..analysis.result import Analysis, Axis, Decay, GateOrder, Side, StateAnalysis, Transition, TransitionKind
from ..ir import Apply, Expr, Kind, Op, Type, Var
from .simplify import simplify

CHUNK_SIZE = 64  # tokens per chunk (matmul, wy, dplr) or per scan block
DPLR_READY = True  # the diagonal-plus-rank-1 family (templates/chunk/dplr.py.jinja) is generated


class NoChunkForm(Exception):
    """This state (or readout) has no chunk form in the families we generate."""


@dataclass(frozen=True, slots=True)
class CoreCall:
    """One call of a chunk kernel family for one state."""

    state: str
    family: str  # "matmul" | "wy" | "scan"
    flags: tuple[tuple[str, object], ...]  # template flags, e.g. (("decay", "channel"), ("prev", False))
    args: tuple[tuple[str, Expr | None], ...]  # canonical argument -> one token's value (None: absent)
    dims: tuple[str, ...]  # the family's state dims, in the family's order ([K, V] or [P, Q])
    transposed: bool  # the family's state is the spec state transposed
    vector: bool  # the spec state is a vector: the family sees it as [P, 1]
    steps: int  # sub-steps per token (`update ... for j in J`): interleaved as extra tokens
    read: Var  # placeholder for the family's output in the readout expressions
    math: tuple[str, ...]  # the family's recurrence with the spec's names, for explain
    stage: int = 0  # 0: arguments from the inputs; k: its query reads the read-outs of calls of stages < k


@dataclass(frozen=True, slots=True)
class RunningCall:
    """A running max `m_t = max(shift_t + m_{t-1}, floor_t)`: its whole sequence, computed before the calls."""

    state: str
    shift: Expr | None
    floor: Expr
    dims: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ShiftCall:
    """A memoryless state `M_t = b_t` (its update reads no state; `prev(x)` of an input desugars to one): its whole
    sequence is a formula of the inputs, so a state whose update reads M_(t-1) takes it as an input term, the
    formula shifted by one token (each sequence's initial state first). Computed before the calls, like a max."""

    state: str
    value: Expr
    dims: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    spec: ir.Spec
    calls: tuple[CoreCall, ...]  # empty when `reason` is set
    outputs: tuple[tuple[str, Expr], ...]  # each output with the state reads replaced by placeholders
    reason: str | None  # why there is no chunk form (recurrent mode only)
    # running maxes and memoryless states: sequences known before the calls, whose arguments and outputs read them
    running: tuple[RunningCall | ShiftCall, ...] = ()

    @property
    def chunkable(self) -> bool:
        return self.reason is None


# ------------------------------------------------------------------------------------------------
# readouts
# ------------------------------------------------------------------------------------------------
def _is_state(e: Expr, state: str) -> bool:
    return isinstance(e, Var) and (X.is_hole(e) or (e.name == state and e.kind in (Kind.STATE, Kind.PREV_STATE)))


def _replace_reads(e: Expr, state: str, query: Expr | None, side: Side | None, read: Var,
                   prev: Var | None = None) -> Expr:
    """`e` with `query @ S` (or `S @ query`, or bare `S` when there is no query) replaced by `read`; with
    `prev`, a bare `prev(S)` by `prev` (the scan family's states shifted by one token)."""
    def fn(n: Expr) -> Expr | None:
        if query is None:
            if prev is not None and isinstance(n, Var) and n.kind is Kind.PREV_STATE and n.name == state:
                return prev
            return read if _is_state(n, state) else None
        if isinstance(n, Apply) and n.op is Op.MATMUL:
            a, b = n.args
            if side is Side.LEFT and a == query and _is_state(b, state):
                return read
            if side is Side.RIGHT and b == query and _is_state(a, state):
                return read
        return None
    return ir.rebuild(e, fn)


def _mentions_state(e: Expr, states: set[str]) -> bool:
    return any(isinstance(n, Var) and (X.is_hole(n) or (n.kind in (Kind.STATE, Kind.PREV_STATE) and n.name in states))
               for n in ir.walk(e))


def prev_read(call: CoreCall) -> Var:
    """The placeholder for `prev(S)` of a scan-family state read whole: its states shifted by one token, the
    initial state first in each sequence (the generated readout shifts what the kernels return)."""
    return replace(call.read, name=f"chunk_prev_{call.state}")


def _reads_prev(a: Analysis, state: str) -> bool:
    return any(r.prev for ro in a.readouts for r in ro.reads if r.state == state)


def _staged(a: Analysis) -> dict[str, tuple[Expr, Side]]:
    """States an output contracts with a query made of other states' reads (GSA's `softmax(q @ hk) @ hv`: hv's
    query is a function of hk's read): per state, that query (with the state reads) and the side it contracts."""
    states = {s.name for s in a.spec.states}
    kinds = frozenset({Kind.STATE, Kind.PREV_STATE})
    out: dict[str, tuple[Expr, Side]] = {}
    for o in a.spec.outputs:
        for n in ir.walk(o.value):
            if not (isinstance(n, Apply) and n.op in (Op.MATMUL, Op.OUTER) and all(ir.uses(x, kinds) for x in n.args)):
                continue
            lhs, rhs = n.args
            bare = [(x.name, (q, side)) for x, q, side in ((rhs, lhs, Side.LEFT), (lhs, rhs, Side.RIGHT))
                    if isinstance(x, Var) and x.kind is Kind.STATE and x.name in states and len(q.ty.dims) == 1]
            if n.op is not Op.MATMUL or len(bare) != 1 or out.get(bare[0][0], bare[0][1]) != bare[0][1]:
                lhs_s, rhs_s = (sorted(ir.uses(x, kinds)) for x in n.args)
                raise NoChunkForm(f"output `{o.name}` contracts a read of `{lhs_s[0]}` with a read of `{rhs_s[0]}`: "
                                  "chunk mode runs such a readout in passes when one side is a state read whole "
                                  "(`f(q @ S1) @ S2`), the other a vector made of other states' reads")
            out[bare[0][0]] = bare[0][1]
    return out


def _readout_query(a: Analysis, state: str) -> tuple[Expr | None, Side | None, bool]:
    """The one query through which the outputs read `state` (None: the whole state), and `prev`."""
    staged = _staged(a).get(state)
    if staged is not None:  # a query made of other states' reads: resolved to their read-outs by _resolve_stages
        return staged[0], staged[1], False
    reads = [r for ro in a.readouts for r in ro.reads if r.state == state]
    if not reads:
        raise NoChunkForm(f"no output reads state `{state}`")
    first = reads[0]
    for r in reads[1:]:
        if (r.query, r.contraction, r.prev) != (first.query, first.contraction, first.prev):
            raise NoChunkForm(f"the outputs read `{state}` in two different ways")
    return first.query, first.contraction, first.prev


# ------------------------------------------------------------------------------------------------
# families
# ------------------------------------------------------------------------------------------------
def _log_decay(decay: Decay) -> Expr:
    if decay.log is not None:
        return decay.log
    return Apply(Op.LOG, (decay.coef,), decay.coef.ty)


def _matmul(sa: StateAnalysis, a: Analysis, read: Var) -> CoreCall:
    t = sa.transition
    dims = t.linear.ty.dims
    query, side, prev = _readout_query(a, t.state)
    if query is None:
        raise NoChunkForm(f"`{t.state}` is read whole, not through a query; the matmul form needs `q @ {t.state}`")
    vector = len(dims) == 1
    transposed = side is Side.RIGHT and not vector
    key_dim = dims[-1] if transposed else dims[0]
    if vector:
        if t.offset is None:
            raise NoChunkForm(f"`{t.state}` has no input term")
        key, value = t.offset, None
    else:
        terms = t.offset_terms or ()
        if len(terms) != 1:
            raise NoChunkForm(f"the input term of `{t.state}` is not one outer product k vᵀ")
        term = terms[0]
        key, value = (term.right, term.left) if transposed else (term.left, term.right)
        if term.coef is not None:
            key = X.mul(term.coef, key)
    if t.kind is TransitionKind.IDENTITY:
        decay, g = "none", None
    else:
        assert t.decay is not None
        g = _log_decay(t.decay)
        if not g.ty.dims:
            decay = "scalar"
        elif g.ty.dims == (key_dim,):
            decay = "channel"
        else:
            raise NoChunkForm(f"the decay of `{t.state}` is on {list(g.ty.dims)}, not on the key dim {key_dim} "
                              "that the readout contracts")
    val = "1" if value is None else "v_t"
    math = (f"S_t = {'diag(exp(g_t)) ' if g is not None else ''}S_(t-1) + k_t {val}ᵀ   "
            f"(state [{', '.join(dims[::-1] if transposed else dims)}]{', transposed' if transposed else ''})",
            f"o_t = q_tᵀ S_{'(t-1)' if prev else 't'}")
    return CoreCall(t.state, "matmul", (("decay", decay), ("prev", prev)),
                    (("q", query), ("k", key), ("v", value), ("g", g)),
                    (key_dim,) if vector else ((dims[-1], dims[0]) if transposed else dims),
                    transposed, vector, 1, read, math)


def _wy(sa: StateAnalysis, a: Analysis, read: Var) -> CoreCall:
    t = sa.transition
    h = t.householder
    assert h is not None
    dims = t.linear.ty.dims
    query, side, prev = _readout_query(a, t.state)
    if len(dims) != 2 or t.side is not Side.LEFT or side is not Side.LEFT or prev:
        raise NoChunkForm(f"the WY form needs `q @ {t.state}` read after the update, with the reflection on "
                          "the state's first dim")
    terms = t.offset_terms or ()
    if len(terms) != 1 or terms[0].coef != h.beta or terms[0].left != h.key:
        raise NoChunkForm(f"the input term of `{t.state}` is not β k vᵀ with the reflection's β and k")
    if h.alpha is None:
        decay, g = "none", None
    else:
        g = _log_decay(h.alpha)
        if not g.ty.dims:
            decay = "scalar"
        elif h.order is GateOrder.RIGHT and g.ty.dims == (dims[0],):
            decay = "channel"
        else:
            raise NoChunkForm("a per-channel gate applied after the reflection has no WY form here")
    math = (f"S_t = (I − β_t k_t k_tᵀ) {'diag(exp(g_t)) ' if g is not None else ''}S_(t-1) + β_t k_t v_tᵀ"
            + (f"   ({t.steps} steps per token, interleaved)" if t.steps > 1 else ""),
            "o_t = q_tᵀ S_t")
    return CoreCall(t.state, "wy", (("decay", decay),),
                    (("q", query), ("k", h.key), ("v", terms[0].right), ("beta", h.beta), ("g", g)),
                    dims, False, False, t.steps, read, math)


def _scan(sa: StateAnalysis, a: Analysis, read: Var) -> CoreCall:
    t = sa.transition
    if t.decay is None or t.offset is None:
        raise NoChunkForm(f"`{t.state}` has no decay or no input term")
    dims = t.linear.ty.dims
    # `prev(S)` (RWKV-4's readout): the kernels return every S_t, and the readout shifts them by one token
    prev = _reads_prev(a, t.state)
    query, side = (None, None) if prev else _readout_query(a, t.state)[:2]
    vector = len(dims) == 1
    if query is not None and (vector or len(query.ty.dims) != 1):
        query, side = None, None  # read the whole state
    transposed = query is not None and side is Side.LEFT
    cdims = (dims[-1], dims[0]) if transposed else (dims[0], dims[-1])
    cplx = t.linear.ty.complex
    readout = "contract" if query is not None else "state"
    math = ("S_t = a_t ⊙ S_(t-1) + b_t   (elementwise" + (", complex" if cplx else "") + ")",
            "o_t = S_t c_t" if query is not None else "o_t = S_t",
            *((f"prev({t.state})_t = S_(t-1): the states shifted by one token, the initial state first",)
              if prev else ()))
    return CoreCall(t.state, "scan", (("complex", cplx), ("readout", readout)),
                    (("a", t.decay.coef), ("b", t.offset), ("c", query)),
                    (dims[0],) if vector else cdims, transposed, vector, 1, read, math)


def _dplr(sa: StateAnalysis, a: Analysis, read: Var) -> CoreCall:
    """Diagonal plus rank-1: RWKV7's `diag(d) + u wᵀ`, and a per-channel gate after a reflection,
    `diag(α)(I − β k kᵀ) = diag(α) − (β α ⊙ k) kᵀ`."""
    t = sa.transition
    dims = t.linear.ty.dims
    query, side, prev = _readout_query(a, t.state)
    if len(dims) != 2 or t.side is not Side.LEFT or side is not Side.LEFT or prev or t.steps > 1:
        raise NoChunkForm(f"the diagonal-plus-rank-1 form needs `q @ {t.state}` read after one update per token, "
                          "with the transition on the state's first dim")
    terms = t.offset_terms or ()
    if len(terms) != 1:
        raise NoChunkForm(f"the input term of `{t.state}` is not one outer product k vᵀ")
    key = terms[0].left if terms[0].coef is None else X.mul(terms[0].coef, terms[0].left)
    if t.lowrank is not None:
        decay, u, w = t.lowrank.diag, t.lowrank.u, t.lowrank.w
    else:
        h = t.householder
        assert h is not None
        assert h.alpha is not None
        decay = h.alpha
        u, w = X.neg(X.mul(h.beta, X.mul(h.alpha.coef, h.key))), h.key
    g = _log_decay(decay)
    math = ("S_t = diag(exp(g_t)) S_(t-1) + u_t (w_tᵀ S_(t-1)) + k_t v_tᵀ", "o_t = q_tᵀ S_t")
    return CoreCall(t.state, "dplr", (), (("q", query), ("k", key), ("v", terms[0].right), ("u", u), ("w", w),
                                          ("g", g)), dims, False, False, 1, read, math)


def _family(sa: StateAnalysis, a: Analysis) -> CoreCall:
    t = sa.transition
    dims = t.linear.ty.dims
    read = Var(f"chunk_out_{t.state}", Kind.INPUT, Type(dims, t.linear.ty.complex))
    if t.coupled or t.kind is TransitionKind.DENSE:
        raise NoChunkForm(no_chunk_reason(t))
    if not dims or len(dims) > 2:
        what = "a scalar state" if not dims else f"a {len(dims)}-dim state"
        raise NoChunkForm(f"`{t.state}` is {what}; the chunk kernels hold vector or matrix states")
    if t.kind is TransitionKind.DPLR:
        if not DPLR_READY:
            raise NoChunkForm(f"`{t.state}` is diagonal plus rank-1: its generalised WY kernels are not generated yet")
        return _dplr(sa, a, read)
    if t.kind is TransitionKind.HOUSEHOLDER:
        h = t.householder
        if DPLR_READY and h is not None and h.alpha is not None and h.order is GateOrder.LEFT and h.alpha.coef.ty.dims:
            return _dplr(sa, a, read)  # a per-channel gate after the reflection: diagonal plus rank-1
        return _wy(sa, a, read)
    if t.linear.ty.complex or t.axis is Axis.ELEMENTWISE:
        return _scan(sa, a, read)
    if t.kind is TransitionKind.DIAGONAL and t.axis in (Axis.ROWS, Axis.COLUMNS):
        gate = dims[0] if t.axis is Axis.ROWS else dims[-1]
        if gate != (dims[-1] if _readout_query(a, t.state)[1] is Side.RIGHT else dims[0]):
            return _scan(sa, a, read)  # the matmul kernels gate the contracted key dim only (GSA's slot keys)
    if t.steps > 1:
        raise NoChunkForm(f"`{t.state}` takes several steps per token outside the Householder class")
    if t.shifted and len(t.offset_terms or ()) != 1 and t.decay is not None and len(dims) == 2:
        # b_t adds the previous token's term (a memoryless state read one token back) to this token's: not one
        # outer product k vᵀ, which the matmul kernels need; the scan family takes any b_t
        return _scan(sa, a, read)
    return _matmul(sa, a, read)


def _typed_read(call: CoreCall, a: Analysis) -> Var:
    """The placeholder with the type of what the family returns for this state."""
    t = a.state(call.state).transition
    if call.family == "scan" and dict(call.flags)["readout"] == "state":
        return replace(call.read, ty=t.linear.ty)
    query, _, _ = _readout_query(a, call.state)
    dims = [d for d in t.linear.ty.dims if query is None or d not in query.ty.dims]
    return replace(call.read, ty=Type(tuple(dims), t.linear.ty.complex))


def _outputs(a: Analysis, calls: tuple[CoreCall, ...]) -> tuple[tuple[str, Expr], ...]:
    states = {c.state for c in calls}
    out = []
    for o, ro in zip(a.spec.outputs, a.readouts, strict=True):
        if ro.linear:
            value: Expr | None = ro.offset
            for r in ro.reads:
                if r.state not in states:  # a running max or memoryless state: bound as a sequence
                    seq = Var(r.state, Kind.PREV_STATE if r.prev else Kind.STATE, a.spec.tensor(r.state).ty)
                    part = ir.rebuild(r.expr, lambda n, seq=seq: seq if X.is_hole(n) else None)
                    value = part if value is None else X.add(value, part)
                    continue
                call = next(c for c in calls if c.state == r.state)
                q = None if call.family == "scan" and dict(call.flags)["readout"] == "state" else r.query
                read = prev_read(call) if r.prev and call.family == "scan" else call.read
                part = _replace_reads(r.expr, r.state, q, r.contraction, read)
                value = part if value is None else X.add(value, part)
            assert value is not None
        else:
            value = o.value
            for call in calls:
                if call.family == "scan" and dict(call.flags)["readout"] == "state":
                    value = _replace_reads(value, call.state, None, None, call.read, prev_read(call))
                    continue
                q, side, _ = _readout_query(a, call.state)
                if call.stage:  # its query as resolved: the earlier calls' reads are already replaced in `value`
                    q = dict(call.args)["c" if call.family == "scan" else "q"]
                value = _replace_reads(value, call.state, q, side, call.read)
        if _mentions_state(value, states):
            raise NoChunkForm(f"output `{o.name}` reads a state other than through its query")
        out.append((o.name, simplify(value)))  # e.g. RWKV6's bonus r·((u⊙k) vᵀ) as (r·(u⊙k)) v, never [K, V]
    return tuple(out)


def _resolve_stages(calls: list[CoreCall], a: Analysis) -> tuple[CoreCall, ...]:
    """Calls whose query reads other states (`_staged`) with those reads replaced by the other calls' read-outs,
    each a stage after the calls it reads; ordered by stage. A cycle has no chunk form."""
    by_state = {c.state: c for c in calls}
    kinds = frozenset({Kind.STATE, Kind.PREV_STATE})
    stage: dict[str, int] = {}

    def visit(state: str, path: tuple[str, ...]) -> int:
        if state in path:
            raise NoChunkForm(f"the readout's queries read each other in a cycle: {' -> '.join((*path, state))}")
        if state in stage:
            return stage[state]
        c = by_state[state]
        # running maxes and memoryless states are sequences known before every call, not stages
        deps = sorted({n for _, e in c.args if e is not None for n in ir.uses(e, kinds)} & set(by_state) - {state})
        stage[state] = 1 + max((visit(d, (*path, state)) for d in deps), default=-1)
        args = c.args
        for d in deps:
            q, side, _ = _readout_query(a, d)
            read = by_state[d].read
            q = None if by_state[d].family == "scan" and dict(by_state[d].flags)["readout"] == "state" else q
            args = tuple((n, None if e is None else _replace_reads(e, d, q, side, read)) for n, e in args)
        if any(e is not None and _mentions_state(e, set(by_state)) for _, e in args):
            raise NoChunkForm(f"the query of `{state}` reads another state other than through that state's query")
        by_state[state] = replace(c, args=args, stage=stage[state])
        return stage[state]

    for c in calls:
        visit(c.state, ())
    return tuple(sorted(by_state.values(), key=lambda c: stage[c.state]))


def _memoryless(t: Transition) -> bool:
    """`M_t = b_t`: the update reads no state (A_t = 0, no other state)."""
    return X.is_zero(t.linear) and not t.coupled and t.loop is None and \
        (t.offset is None or not ir.uses(t.offset, {Kind.STATE, Kind.PREV_STATE}))


def plan_chunk(a: Analysis) -> ChunkPlan:
    """The chunk plan of an analysed spec; `reason` says why not when a state has no family form."""
    try:
        calls: list[CoreCall] = []
        running: list[RunningCall | ShiftCall] = []
        for sa in a.states:
            t = sa.transition
            rm = t.running_max
            if rm is not None:
                running.append(RunningCall(sa.state, rm.shift, rm.floor, t.linear.ty.dims))
                continue
            if _memoryless(t):
                running.append(ShiftCall(sa.state, t.offset if t.offset is not None else ir.Const(0.0, t.linear.ty),
                                         t.linear.ty.dims))
                continue
            call = _family(sa, a)
            calls.append(replace(call, read=_typed_read(call, a)))
        staged = _resolve_stages(calls, a)
        return ChunkPlan(a.spec, staged, _outputs(a, staged), None, tuple(running))
    except NoChunkForm as e:
        return ChunkPlan(a.spec, (), (), str(e))


def describe(plan: ChunkPlan, scan_block: bool = False) -> tuple[str, ...]:
    """What `mode="chunk"` runs, in math, for `recurgen explain` (one line when there is no chunk form);
    `scan_block`: Triton runs the spec's blocked-scan forward (codegen/scan_block.py) instead of the kernels."""
    from ..analysis.pretty import Style, pretty

    if not plan.chunkable:
        return (f"none: {plan.reason}; mode='chunk' is refused and 'auto' runs the recurrent kernels",)
    st = Style(time="t")
    lines = []
    for r in plan.running:
        if isinstance(r, ShiftCall):
            lines += [f"{r.state}: memoryless, {r.state}_t = {pretty(r.value, st)}, for every token at once (torch)",
                      f"  read as {r.state}_(t-1): the same shifted by one token, the initial state first"]
            continue
        shift = f"{pretty(r.shift, st)} + " if r.shift is not None else ""
        lines += [f"{r.state}: a running max, first, over the whole sequence (torch, float64)",
                  f"  {r.state}_t = max({shift}{r.state}_(t-1), {pretty(r.floor, st)}) = A_t + max({r.state}_0, "
                  "max_(s≤t) (b_s − A_s)), A the cumulative shift",
                  f"  the kernels below read it as an input ({r.state}_(t-1) in their arguments)"]
    for c in plan.calls:
        flags = ", ".join(f"{k}={v}" for k, v in c.flags)
        lines.append(f"{c.state}: the {c.family} kernels ({flags}), {CHUNK_SIZE} tokens per chunk"
                     + (f"; pass {c.stage + 1}, after the read-outs its query reads" if c.stage else ""))
        lines += [f"  {m}" for m in c.math]
        args = [f"{n} = {pretty(e, st)}" for n, e in c.args if e is not None]
        lines.append("  with " + ",  ".join(args))
    if scan_block:
        lines.append("Triton: one blocked-scan forward kernel instead (a, b and the outputs formed from the inputs in "
                     "registers, never stored), then the recurrent backward")
    prevs = {prev_read(c) for c in plan.calls}
    for name, e in plan.outputs:
        legend = "chunk_out_S: the kernels' o_t of state S" + \
            ("; chunk_prev_S: its S_(t-1)" if any(n in prevs for n in ir.walk(e)) else "")
        lines.append(f"{name}_t = {pretty(e, st)}   ({legend})")
    return tuple(lines)
