"""sweeps: the two-sweep backward of a diagonally decayed recurrence, with no stored states.

When every state is updated as S_t = D_t ⊙ S_{t-1} + B_t, with D_t = exp(L_t) (or a gradient-free factor) and
B_t free of states, and every output reads the new states linearly, the backward pass needs no state of the
past in the backward walk:

- a forward sweep recomputes S_t from the initial state and takes the readout-side gradients, which need S_t
  but not dS_t (for GLA dq = scale · S_t do_t), and the readout cotangent R_t = ∂o_t/∂S_tᵀ do_t (state-free);
- a backward sweep walks dS_t = R_t + D_{t+1} ⊙ dS_{t+1} from dS_T and takes the gradients through B_t.

The decay gradient is the only term that needs both S_{t-1} and dS_t: Z_t = D_t ⊙ S_{t-1} ⊙ dS_t. Because
S_t ⊙ dS_t = Z_t + B_t ⊙ dS_t and S_t ⊙ dS_t = S_t ⊙ R_t + Z_{t+1}, it obeys
    Z_t = Z_{t+1} + S_t ⊙ R_t - B_t ⊙ dS_t,    Z_{T+1} = S_T ⊙ dS_T (the final state's cotangent),
so its reduction to L's dims, z_t, is a reverse running sum of a_t = r(S_t ⊙ R_t) (forward sweep, stored per
token) and r(B_t ⊙ dS_t) (backward sweep), and L's inputs get the gradient of L with cotangent z_t
(flash-linear-attention's GLA backward uses the same identity, as dg_t = Σ_{s≥t} q_s dq_s - k_s dk_s).

When L_t = u_t ⊙ w has a time-invariant factor w of L's dims and a per-token factor u_t of fewer dims (Mamba's
Δ_t ⊙ A: L is [E, N], u is [E]), a_t is not stored at L's dims: z_t = z'_t + Σ_{s≥t} a_s with z'_t the backward
sweep's part, and the gradients of L's leaves are linear in z_t, so u's cotangent r_u(w ⊙ z_t) needs only the
reduced ã_t = r_u(w ⊙ a_t) per token (a running sum in the backward sweep), and w's, Σ_t r_w(u_t ⊙ z_t), gets
its a-part Σ_s r_w(a_s ⊙ U_s), U_s = Σ_{t≤s} u_t, in the forward sweep (`_factor`). Split that way, z'_t and
Σ a_s grow with the tokens left and cancel in the gradients (fp32 error ∝ T); so the split restarts every
SWEEP_SEGMENT tokens: the forward sweep stores each segment's Σ a_s at L's dims (one tile per segment) and U
restarts at 0, the backward sweep adds that sum to z' when it leaves the segment (z' is then z again) and restarts
Σ ã: the error is ∝ the segment length, as the unsplit running sum's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import ir
from ..ir import Apply, Expr, Kind, Op, Var
from . import autodiff
from . import build as b
from .simplify import simplify
from .split_dims import _MIXING, _per_tile, _reduces_over, _split_pressure
from .step import Step, _substitute, cotangent_var, state_var
from .triton_printer import TritonPrinter, Val

_GRAD_KINDS = frozenset({Kind.INPUT, Kind.PARAM})
# fp32 state elements per backward program: 8192 (K = 64 of a 128 x 128 state: two programs per head re-read v and
# do half as often as four) when few vectors of the split dim are live per token, else 4096. A split-dim vector is
# replicated across the threads that hold the tile's other dim: at 8192, more than WIDE_TILE_PRESSURE of them in a
# sweep's kernel (its per-token statements and prologue, the params that have the split dim and their gradients'
# accumulators) spill on sm_80/sm_90 at any warp count (rwkv5: 14, mamba2: 21 spill; rwkv6: 13, hgrn2: 9 do not;
# `recurgen inspect`). The sweeps are two kernels: in one, rwkv6's spill (either alone does not).
WIDE_TILE_BUDGET, TILE_BUDGET, WIDE_TILE_PRESSURE = 8192, 4096, 13
SWEEP_SEGMENT = 64  # tokens per restart of a factored decay's split running sum (see the module doc)


@dataclass(frozen=True, slots=True)
class Decay:
    """One state's update S = factor ⊙ S + drive; `log` = L when factor = exp(L) carries gradients."""

    state: ir.Tensor
    factor: Expr | None  # None: 1 (no decay)
    log: Expr | None
    drive: Expr


@dataclass(frozen=True, slots=True)
class SweepCode:
    """Code of the two sweeps (see the module doc); the template lays it out."""

    fwd_prologue: str
    fwd_body: str  # the recompute of S_t, the gradients that read the state, a_t (each load before its first use)
    bwd_prologue: str
    z_init: str  # z_{T+1} = r(S_T ⊙ dS_T), after the forward sweep
    bwd_body: str  # the z update, gradients through B and L, dS_{t-1}
    input_grads: tuple[str, ...]
    param_grads: tuple[str, ...]
    scratch: tuple[tuple[str, tuple[str, ...]], ...]  # (state, dims of L): a_t per token (per tile), fp32
    split: str | None  # the state dim split across programs (K for GLA: only dv is then a per-tile partial)
    tile_budget: int  # fp32 state elements per program
    dim_setup: str
    dstate_init: str
    dh0_store: str
    last_store: str  # the forward sweep's S_T, for the backward sweep's z_{T+1} (the sweeps are two kernels)
    last_load: str
    dparam_reload: str  # the forward sweep's parts of the param gradients, added to the backward sweep's
    segments: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (state, dims of L): Σ a_t per segment, fp32


def _uses_state(e: Expr) -> bool:
    return bool(ir.uses(e, {Kind.STATE, Kind.PREV_STATE}))


def _carries_grad(e: Expr) -> bool:
    return bool(ir.uses(e, _GRAD_KINDS))


def _decay(s: ir.Tensor, e: Expr) -> Decay | None:
    if not isinstance(e, Apply) or e.op is not Op.ADD:
        return None
    sv = state_var(s)
    for term, drive in ((e.args[0], e.args[1]), (e.args[1], e.args[0])):
        if _uses_state(drive) or drive.ty.dims != s.ty.dims:
            continue
        if term == sv:
            return Decay(s, None, None, drive)
        if isinstance(term, Apply) and term.op is Op.MUL:
            for x, y in (term.args, term.args[::-1]):
                if y != sv or _uses_state(x) or not set(x.ty.dims) <= set(s.ty.dims) or x.ty.complex:
                    continue
                if isinstance(x, Apply) and x.op is Op.EXP:
                    return Decay(s, x, x.args[0] if _carries_grad(x) else None, drive)
                if not _carries_grad(x):
                    return Decay(s, x, None, drive)
    return None


def decompose(spec: ir.Spec, step: Step) -> tuple[Decay, ...] | None:
    """Each state's decay and drive, or None when the spec does not have this form (see the module doc)."""
    if any(u.loop is not None for u in spec.updates) or any(s.ty.complex for s in spec.states):
        return None
    decays = []
    for s, (_, e) in zip(spec.states, step.new_states, strict=True):
        d = _decay(s, e)
        if d is None:
            return None
        decays.append(d)
    return tuple(decays)


def _distribute(e: Expr) -> Expr | None:
    """x @ (A + outer(a, c)) -> x @ A + (x @ a) * c: a readout with a rank-1 term (RWKV's bonus) then has
    vector-sized gradients for it instead of state-sized temporaries (fewer registers in the forward sweep)."""
    if not (isinstance(e, Apply) and e.op is Op.MATMUL and len(e.args[0].ty.dims) == 1):
        return None
    x, m = e.args
    if isinstance(m, Apply) and m.op is Op.OUTER:
        return b.mul(b.matmul(x, m.args[0]), m.args[1])
    if isinstance(m, Apply) and m.op in (Op.ADD, Op.SUB) and any(
            isinstance(a, Apply) and a.op is Op.OUTER for a in m.args):
        parts = [_distribute(b.matmul(x, a)) or b.matmul(x, a) for a in m.args]
        return (b.add if m.op is Op.ADD else b.sub)(*parts)
    return None


def readouts(spec: ir.Spec) -> tuple[tuple[tuple[str, Expr], ...], bool] | None:
    """The outputs as functions of the states (leaves), and whether they read S_{t-1} (prev(S), as RWKV's
    bonus readout does) rather than S_t; None if they read both."""
    outs = [(o.name, ir.rebuild(simplify(_substitute(o.value, {})), _distribute)) for o in spec.outputs]
    news = any(ir.uses(e, {Kind.STATE}) for _, e in outs)
    prevs = any(ir.uses(e, {Kind.PREV_STATE}) for _, e in outs)
    if news and prevs:
        return None
    if not prevs:
        return tuple(outs), False
    # prev(S) becomes the state leaf: the forward sweep reads the readout before the recompute overwrites it
    return tuple((n, ir.rebuild(e, lambda x: Var(x.name, Kind.STATE, x.ty)
                                if isinstance(x, Var) and x.kind is Kind.PREV_STATE else None)) for n, e in outs), True


def _reduce_to(x: Expr, target: ir.Type) -> Expr:
    return b.unbroadcast(x, ir.Type(target.dims))


def _reduce_product(x: Expr, y: Expr, target: ir.Type) -> Expr:
    """r(x ⊙ y) to `target`'s dims. With y = outer(u, w) and u of the target's dims it is u ⊙ (x @ w): no
    state-sized temporary (for GLA, a_t = q ⊙ dq and r(B ⊙ dS) = k ⊙ dk, sharing the dq and dk reductions)."""
    if isinstance(y, Apply) and y.op is Op.OUTER and len(x.ty.dims) == 2 and x.ty.dims == y.ty.dims:
        u, w = y.args
        if u.ty.dims == target.dims and len(w.ty.dims) == 1:
            return b.mul(u, b.matmul(x, w))
    return _reduce_to(b.mul(x, y), target)


def z_var(s: ir.Tensor, ty: ir.Type) -> Var:
    return Var(f"∂z_{s.name}", Kind.INPUT, ty)


def a_var(s: ir.Tensor, ty: ir.Type) -> Var:
    return Var(f"∂a_{s.name}", Kind.INPUT, ty)


@dataclass(frozen=True, slots=True)
class SweepPlan:
    decays: tuple[Decay, ...]
    readout_grads: dict[Expr, Expr]  # leaf -> the part of its cotangent from the outputs that reads a state
    free_grads: dict[Expr, Expr]  # input leaf -> the state-free part (taken in the backward sweep)
    prev: bool  # the outputs read S_{t-1}: their cotangent R_t joins dS_{t-1}, and a_t pairs S_{t-1} with R_t


def plan_sweeps(spec: ir.Spec, step: Step) -> SweepPlan | None:
    """The two-sweep form of a spec's backward, or None when it does not apply."""
    decays = decompose(spec, step)
    ro = readouts(spec)
    if decays is None or ro is None:
        return None
    outs, prev = ro
    grads = autodiff.vjp([(e, cotangent_var(n, e.ty)) for n, e in outs])
    for d in decays:
        r = grads.get(state_var(d.state))
        if r is not None and _uses_state(r):
            return None  # the readout is not linear in the state: R_t would need S_t in the backward sweep
    # an input whose readout gradient does not read the state (RWKV's bonus to k and v, Mamba's D * u) gets it in
    # the backward sweep, so an input shared with the drive gets its gradient from one sweep
    inputs = {leaf for leaf, _ in _input_grads(grads)}
    fwd = {leaf: g for leaf, g in grads.items() if leaf not in inputs or _uses_state(g)}
    free = {leaf: g for leaf, g in grads.items() if leaf not in fwd}
    bwd_inputs = {_input_name(leaf) for leaf, _ in _input_grads(autodiff.vjp(_bwd_roots(decays)))}
    bwd_inputs |= {_input_name(leaf) for leaf in free}
    if {_input_name(leaf) for leaf, _ in _input_grads(fwd)} & bwd_inputs:
        return None  # an input with gradients from both sweeps would need a partial round trip
    return SweepPlan(decays, fwd, free, prev)


def _bwd_grads(sp: SweepPlan, factors: dict[str, tuple[Expr, Expr]] | None = None) -> dict[Expr, Expr]:
    """The backward sweep's gradients: through the drives and decays, plus the readouts' state-free terms."""
    grads = dict(autodiff.vjp(_factored_roots(sp.decays, factors) if factors else _bwd_roots(sp.decays)))
    for leaf, g in sp.free_grads.items():
        grads[leaf] = b.add(grads[leaf], g) if leaf in grads else g
    return grads


def _input_grads(grads: dict[Expr, Expr]) -> list[tuple[Expr, Expr]]:
    """The (leaf, cotangent) pairs of inputs and their loop slices."""
    return [(leaf, g) for leaf, g in grads.items()
            if (isinstance(leaf, Var) and leaf.kind is Kind.INPUT and not leaf.name.startswith("∂"))
            or (isinstance(leaf, Apply) and leaf.op is Op.INDEX)]


def _input_name(leaf: Expr) -> str:
    base = leaf.args[0] if isinstance(leaf, Apply) else leaf
    assert isinstance(base, Var)
    return base.name


def _param_grads(spec: ir.Spec, grads: dict[Expr, Expr]) -> list[tuple[str, Expr]]:
    return [(p.name, g) for p in spec.params if (g := grads.get(Var(p.name, Kind.PARAM, p.ty))) is not None]


def _bwd_roots(decays: tuple[Decay, ...]) -> list[tuple[Expr, Expr]]:
    roots: list[tuple[Expr, Expr]] = []
    for d in decays:
        roots.append((d.drive, cotangent_var(d.state.name, d.state.ty)))
        if d.log is not None:
            roots.append((d.log, z_var(d.state, d.log.ty)))
    return roots


def _factor(d: Decay) -> tuple[Expr, Expr] | None:
    """(u, w) when the decay's log is u ⊙ w with w time-invariant, of the log's dims, and u per token with fewer
    dims (Mamba's Δ_t ⊙ A): a_t is then kept as r_u(w ⊙ a_t) (see the module doc)."""
    L = d.log
    if not (isinstance(L, Apply) and L.op is Op.MUL) or L.ty.complex:
        return None
    for u, w in (L.args, L.args[::-1]):
        if (w.ty.dims == L.ty.dims and len(u.ty.dims) < len(L.ty.dims) and not ir.uses(w, {Kind.INPUT})
                and not _uses_state(w) and ir.uses(u, {Kind.INPUT}) and not _uses_state(u)):
            return u, w
    return None


def ra_var(s: ir.Tensor, ty: ir.Type) -> Var:
    """Σ_{s≥t} ã_s of a factored decay (the backward sweep's running sum)."""
    return Var(f"∂ra_{s.name}", Kind.INPUT, ty)


def u_var(s: ir.Tensor, ty: ir.Type) -> Var:
    """U_t = Σ_{s≤t} u_s of a factored decay (the forward sweep's running sum)."""
    return Var(f"∂u_{s.name}", Kind.INPUT, ty)


def _factored_roots(decays: tuple[Decay, ...], factors: dict[str, tuple[Expr, Expr]]) -> list[tuple[Expr, Expr]]:
    """_bwd_roots with each factored log's root (L, z) as (u, r_u(w ⊙ z') + Σ ã) and (w, r_w(z' ⊙ u))."""
    roots: list[tuple[Expr, Expr]] = []
    for d in decays:
        roots.append((d.drive, cotangent_var(d.state.name, d.state.ty)))
        if d.log is None:
            continue
        z = z_var(d.state, d.log.ty)
        if d.state.name not in factors:
            roots.append((d.log, z))
            continue
        u, w = factors[d.state.name]
        roots.append((u, b.add(_reduce_to(b.mul(w, z), u.ty), ra_var(d.state, u.ty))))
        roots.append((w, _reduce_to(b.mul(z, u), w.ty)))
    return roots


def choose_split(spec: ir.Spec, sp: SweepPlan) -> str | None:
    """The state dim to split the sweeps along: carried by every state, never mixed by the recurrence or the
    readout cotangent, and every gradient of an input without it a sum of per-tile parts. Of those, the one
    most inputs carry (each tile then reads only its slice of them)."""
    grads2 = _bwd_grads(sp)
    exprs = [e for d in sp.decays for e in (d.drive, d.factor, d.log) if e is not None]
    exprs += [r for d in sp.decays if (r := sp.readout_grads.get(state_var(d.state))) is not None]
    leaf_grads = [(leaf, g, leaf.ty.dims) for leaf, g in _input_grads(sp.readout_grads) + _input_grads(grads2)]
    leaf_grads += [(None, g, spec.tensor(p).ty.dims)
                   for p, g in _param_grads(spec, sp.readout_grads) + _param_grads(spec, grads2)]
    states = {s.name for s in spec.states}
    ok = []
    for d in dict.fromkeys(x for s in spec.states for x in s.ty.dims):
        if any(d not in s.ty.dims for s in spec.states) or any(_reduces_over(e, d, (Op.SUM, Op.MATMUL, *_MIXING))
                                                                for e in exprs):
            continue
        if any(_reduces_over(g, d, _MIXING) or (d in dims and _reduces_over(g, d, (Op.SUM, Op.MATMUL))) or
               (d not in dims and not _per_tile(g, d, states)) for _, g, dims in leaf_grads):
            continue
        ok.append(d)
    carried = {d: sum(d in i.ty.dims for i in spec.inputs) for d in ok}
    return max(ok, key=lambda d: carried[d]) if ok else None


def sweep_code(spec: ir.Spec, sp: SweepPlan, leaves: dict[Expr, Val], varying: Callable[[Expr], bool],
               loads: list[str], dy_loads: list[str], rec_prologue: list[str], rec_code: list[str],
               dims: tuple[str, ...]) -> SweepCode:
    """Print both sweeps. `leaves` name the inputs, params, consts, options and states (b_<S>, holding S_t
    after the recompute); `loads` are the per-token input loads, `rec_code` the recompute's statements."""
    from .kernel_text import (
        DPARAM_ROW,
        _dim_setup,
        _dstate_code,
        _load,
        _store,
        _tile_of,
        grad_stores,
        kernel_names,
        param_accumulates,
        sink_loads,
        tile_shape,
    )

    taken = kernel_names(spec)  # names the kernels give the spec's tensors: no temporary takes one
    split = choose_split(spec, sp)
    tiled = {i.name for i in spec.inputs if split is None or split in i.ty.dims}

    dstate_init, dh0 = _dstate_code(spec, {st.name: (f"b_d{st.name}",) for st in spec.states}, split)
    cot = {cotangent_var(o.name, o.ty): f"b_d{o.name}" for o in spec.outputs}
    dS = {d.state.name: f"b_d{d.state.name}" for d in sp.decays}
    dvar = {d.state.name: cotangent_var(d.state.name, d.state.ty) for d in sp.decays}
    logs = [d for d in sp.decays if d.log is not None]
    factors = {d.state.name: f for d in logs
               if not sp.prev and (split is None or split in d.log.ty.dims) and (f := _factor(d)) is not None}
    us = {u_var(spec.tensor(n), u.ty): f"b_U_{n}" for n, (u, _) in factors.items()}
    ras = {ra_var(spec.tensor(n), u.ty): f"b_ra_{n}" for n, (u, _) in factors.items()}

    # forward sweep: readout-side gradients and a_t = r(S_t ⊙ R_t)
    f1 = TritonPrinter({**leaves, **cot, **us}, varying, prefix="b_f", reserved=taken)
    stores1, got1 = grad_stores(_input_grads(sp.readout_grads), f1, tiled, split)
    acc1, pg1 = param_accumulates(spec, _param_grads(spec, sp.readout_grads), f1)
    scratch, a_loads, has_a = [], [], []
    segments: list[tuple[str, tuple[str, ...]]] = []
    for d in logs:
        assert d.log is not None
        r = sp.readout_grads.get(state_var(d.state))
        if r is None:
            continue
        a = _reduce_product(state_var(d.state), r, d.log.ty)
        keep = d.log.ty.dims
        if d.state.name in factors:
            # factored: U_t += u_t, w's gradient Σ r_w(a_t ⊙ U_t) here, and only ã_t = r_u(w ⊙ a_t) kept
            u, w = factors[d.state.name]
            n, seg = d.state.name, SWEEP_SEGMENT
            uv = _tile_of(f1.value(u), u.ty.dims, False, u.ty.dims)[0]
            f1.body += [f"if t % {seg} == 0:", f"    b_U_{n} = b_U_{n} * 0.0", f"b_U_{n} += {uv}"]
            # without an initial state z_1 is set to 0 in the backward sweep (below): token 1 leaves U too
            f1.body += ["if not USE_INITIAL_STATE:  # noqa: SIM102  (constexpr: pruned at compile time)",
                        "    if t == 0:", f"        b_U_{d.state.name} = b_U_{d.state.name} * 0.0"]
            gw = autodiff.vjp([(w, _reduce_to(b.mul(a, u_var(d.state, u.ty)), w.ty))])
            acc_w, pg_w = param_accumulates(spec, _param_grads(spec, gw), f1)
            acc1, pg1 = [*acc1, *acc_w], (*pg1, *pg_w)
            # Σ a_t of the segment at L's dims, stored when it ends (the backward sweep restarts there)
            g = _tile_of(f1.value(a), d.log.ty.dims, False, a.ty.dims)[0]
            stores1 += [f"b_G_{n} += {g}", f"if (t % {seg} == {seg - 1}) or (t == T_seq - 1):",
                        *(f"    {x}" for x in _store(f"zg_{n}", _segment_row(), d.log.ty.dims, (f"b_G_{n}",))),
                        f"    b_G_{n} = b_G_{n} * 0.0"]
            segments.append((n, d.log.ty.dims))
            a, keep = _reduce_to(b.mul(w, a), u.ty), u.ty.dims
        tile = _tile_of(f1.value(a), keep, False, a.ty.dims)[0]
        # a_t of a decay without the split dim is a per-tile part (as its z and its gradients)
        row = "i_tok" if split is None or split in keep else "(i_v * NTOK + i_tok)"
        stores1 += _store(f"za_{d.state.name}", row, keep, (tile,))
        scratch.append((d.state.name, keep))
        a_loads.append(f"b_a_{d.state.name} = {_load(f'za_{d.state.name}', row, keep, False)[0]}")
        has_a.append(d.state.name)
    # the readout of S_{t-1} is differentiated before the recompute overwrites b_<S>
    readout_code = [*f1.body, *stores1, *acc1]
    fwd_code = [*readout_code, *rec_code] if sp.prev else [*rec_code, *readout_code]

    # z_{T+1} = r(S_T ⊙ dS_T)
    f0 = TritonPrinter({**leaves, **{dvar[n]: v for n, v in dS.items()}}, lambda e: True, prefix="b_i",
                       reserved=taken)
    z_init = []
    for d in logs:
        assert d.log is not None
        z = _reduce_to(b.mul(state_var(d.state), dvar[d.state.name]), d.log.ty)
        z_init.append(f"b_z_{d.state.name} = {_tile_of(f0.value(z), d.log.ty.dims, False, z.ty.dims)[0]}")
    z_init = [*f0.body, *z_init]
    z_init += [f"b_ra_{n} = tl.zeros({tile_shape(u.ty.dims)}, dtype=tl.float32)" for n, (u, _) in factors.items()]

    # backward sweep. Outputs of S_t: dS_t = R_t + D_{t+1} ⊙ dS_{t+1}, z_t = z_{t+1} + a_t - r(B_t ⊙ dS_t).
    # Outputs of S_{t-1}: dS_{t-1} = D_t ⊙ dS_t + R_t after step t's gradients, and a_t = r(S_{t-1} ⊙ R_t)
    # joins z there (z_{t-1} = z_t + a_t - r(B_{t-1} ⊙ dS_{t-1})).
    zl = {z_var(d.state, d.log.ty): f"b_z_{d.state.name}" for d in logs if d.log is not None}
    f2 = TritonPrinter({**leaves, **cot, **{dvar[n]: v for n, v in dS.items()}, **zl, **ras}, varying, prefix="b_s",
                       reserved=taken)

    def add_readout() -> None:
        for d in sp.decays:
            r = sp.readout_grads.get(state_var(d.state))
            if r is not None:
                f2.body.append(f"{dS[d.state.name]} += {_tile_of(f2.value(r), d.state.ty.dims, False, r.ty.dims)[0]}")

    if not sp.prev:
        add_readout()
    for d in logs:
        assert d.log is not None
        rb = _reduce_product(dvar[d.state.name], d.drive, d.log.ty)
        a = f"b_a_{d.state.name} - " if d.state.name in has_a and not sp.prev and d.state.name not in factors else "-"
        f2.body.append(f"b_z_{d.state.name} += {a}{_tile_of(f2.value(rb), d.log.ty.dims, False, rb.ty.dims)[0]}")
        if d.state.name in factors and d.state.name in has_a:
            f2.body.append(f"b_ra_{d.state.name} += b_a_{d.state.name}")
    if logs:
        # without an initial state Z_1 = D_1 ⊙ S_0 ⊙ dS_1 is exactly 0, where the running sum leaves a rounding
        # residue (relative to |S_1 ⊙ dS_1|)
        f2.body += ["if not USE_INITIAL_STATE:  # noqa: SIM102  (constexpr: pruned at compile time)", "    if t == 0:",
                    *(f"        b_z_{d.state.name} = tl.zeros_like(b_z_{d.state.name})" for d in logs),
                    *(f"        b_ra_{n} = tl.zeros_like(b_ra_{n})" for n in factors)]
    grads2 = _bwd_grads(sp, factors)
    stores2, got2 = grad_stores(_input_grads(grads2), f2, tiled, split)
    acc2, pg2 = param_accumulates(spec, _param_grads(spec, grads2), f2)
    body2 = [*f2.body, *stores2, *acc2]
    f2.body.clear()
    # dS_{t-1} = D_t ⊙ dS_t, after the stores (a gradient may be dS_t itself)
    for d in sp.decays:
        if d.factor is not None:
            new = b.mul(d.factor, dvar[d.state.name])
            f2.body.append(f"{dS[d.state.name]} = {_tile_of(f2.value(new), d.state.ty.dims, False, new.ty.dims)[0]}")
    if sp.prev:
        add_readout()
        f2.body += [f"b_z_{n} += b_a_{n}" for n in has_a]
    for n, dims_l in segments:  # leaving a segment: z' + the segment's Σ a_s is z again; Σ ã restarts
        f2.body += [f"if t % {SWEEP_SEGMENT} == 0:",
                    f"    b_z_{n} += {_load(f'zg_{n}', _segment_row(), dims_l, False)[0]}",
                    f"    b_ra_{n} = tl.zeros_like(b_ra_{n})"]
    bwd_code = [*body2, *f2.body]
    fwd_step, bwd_step = sink_loads(loads + dy_loads, fwd_code), sink_loads(loads + dy_loads + a_loads, bwd_code)
    # a param with the split dim is live for the whole sweep, and so is its gradient's accumulator
    held = sum(1 + (p.name in pg1 + pg2) for p in spec.params if split in p.ty.dims)
    wide = held + max(_split_pressure([*rec_prologue, *f1.prologue, *fwd_step], split),
                      _split_pressure([*f2.prologue, *bwd_step], split)) <= WIDE_TILE_PRESSURE
    last = {st.name: (f"st_{st.name}", "i_bh64", st.ty.dims) for st in spec.states}
    pgrads = tuple(dict.fromkeys((*pg1, *pg2)))
    u_init = [f"b_U_{n} = tl.zeros({tile_shape(u.ty.dims)}, dtype=tl.float32)" for n, (u, _) in factors.items()]
    u_init += [f"b_G_{n} = tl.zeros({tile_shape(dims_l)}, dtype=tl.float32)" for n, dims_l in segments]
    return SweepCode(
        fwd_prologue="\n".join([*rec_prologue, *f1.prologue, *u_init]),
        fwd_body="\n".join(fwd_step), bwd_prologue="\n".join(f2.prologue),
        z_init="\n".join(z_init), bwd_body="\n".join(bwd_step),
        input_grads=tuple(dict.fromkeys((*got1, *got2))), param_grads=pgrads,
        scratch=tuple(scratch), split=split, tile_budget=WIDE_TILE_BUDGET if wide else TILE_BUDGET,
        dim_setup="\n".join(_dim_setup(dims, split, ir.aliases(spec), even=True)),
        dstate_init="\n".join(dstate_init), dh0_store="\n".join(dh0),
        last_store="\n".join(line for n, (ptr, row, d) in last.items() for line in _store(ptr, row, d, (f"b_{n}",))),
        last_load="\n".join(f"b_{n} = {_load(ptr, row, d, False)[0]}" for n, (ptr, row, d) in last.items()),
        dparam_reload="\n".join(f"b_dp_{p} += {_load(f'dp_{p}', DPARAM_ROW, spec.tensor(p).ty.dims, False)[0]}"
                                 for p in pgrads),
        segments=tuple(segments))


def _segment_row() -> str:
    """The row of token t's segment in the per-segment scratch: slots as the checkpoints' (_ckpt_rows)."""
    return f"((bos // {SWEEP_SEGMENT} + i_b + t // {SWEEP_SEGMENT}) * H + i_h)"
