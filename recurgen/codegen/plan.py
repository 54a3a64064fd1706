"""plan: ir.Spec -> RecurrentPlan, every spec-fixed decision of the fused recurrent kernels.

Decided here (so the template only lays code out): which state dim is split across programs,
the block size of every dim, argument names, the per-token loads and stores, and the printed
forward step and adjoint step.

Tiling: one program per (state tile, batch x head). A dim may be split when no expression of the
step mixes values along it (no contraction, reduction or diagonal over it) and every output has
it; states without it are recomputed in every tile, and gradients that do not carry it are summed
over tiles on the host (the adjoint is linear in the cotangents, so the partial sums add up).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import ir
from ..ir import Apply, Expr, Kind, Op, Var
from .kernel_text import (
    DPARAM_ROW,
    _dim_setup,
    _dstate_code,
    _input_row,
    _load,
    _names,
    _store,
    _tile_of,
    _used_loads,
    _val,
    block_numel,
    block_offsets,
    grad_stores,
    group,
    kernel_names,
    numel,
    param_accumulates,
    plus,
    tile_shape,
    times,
)
from .step import Adjoint, Step, build_adjoint, build_step, cotangent_var, state_var
from .triton_printer import TritonPrinter, Val

if TYPE_CHECKING:
    from .sweeps import SweepCode

STATE_TILE_BUDGET = 2048  # fp32 state elements per forward program: 8 KiB (4096 spills for rwkv6 at K = V = 128)
BWD_STATE_TILE_BUDGET = 2048  # the backward holds S, dS and their temporaries: half the tile
# the forward of the two-sweep specs (a decay and an outer product per token): 4096 fp32 (K = 32 of a 128 x 128
# state) compile without spills at 8 warps (sm_80/sm_90); its backward's budget is decided per spec in sweeps.py.
SWEEP_TILE_BUDGET = 4096
# More state-sized temporaries than this in the adjoint step spill at 4 warps (sm_80/sm_90, K = V = 128):
# measured with `recurgen inspect` (delta_product: 28, s4d: 43 spill; kda: 18, gated_delta_rule: 19 do not).
BWD_PRESSURE_FOR_8_WARPS = 10


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    dims: tuple[str, ...]
    complex: bool
    tiled: bool  # carries the split dim: a program touches only its slice


@dataclass(frozen=True, slots=True)
class RecurrentPlan:
    spec: ir.Spec
    prefix: str  # kernel name prefix, e.g. "gla"
    dims: tuple[str, ...]  # every dim a kernel needs as a runtime size
    tiled: str | None  # the split dim
    inputs: tuple[TensorInfo, ...]
    params: tuple[TensorInfo, ...]
    states: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    options: tuple[str, ...]
    dim_setup: str
    param_loads: str
    input_loads: str
    fwd_prologue: str
    fwd_body: str
    fwd_assign: str
    output_stores: str
    state_init: str
    final_store: str
    ckpt_store: str
    ckpt_load: str
    scratch_store: str
    scratch_load: str
    seg_init: str  # the segment's states held on chip: a [BCKPT, *state] register tile per state
    seg_store: str
    seg_load: str
    rec_loads: str  # the input loads the recompute reads (a dead load still moves bytes in the interpreter)
    bwd_loads: str  # the input loads the adjoint step reads
    rec_body: str  # recompute: new states only
    rec_assign: str
    bwd_prologue: str
    bwd_body: str
    dstate_init: str
    dstate_assign: str
    grad_stores: str
    dparam_init: str
    dparam_acc: str
    dparam_store: str
    dh0_store: str
    dy_loads: str
    input_grads: tuple[str, ...]  # inputs that receive a gradient
    param_grads: tuple[str, ...]
    state_grads: tuple[str, ...]
    math_comment: str
    sweeps: SweepCode | None  # the two-sweep backward (no stored states), when the spec has its form
    bwd_num_warps: int  # 8 when the adjoint keeps many state-sized tiles live (fewer registers per thread)


def _nodes(exprs: Iterable[Expr]) -> Iterable[Expr]:
    for e in exprs:
        yield from ir.walk(e)


def _splittable(d: str, step: Step) -> bool:
    roots = [e for _, e in step.new_states] + [e for _, e in step.outputs]
    if any(d not in e.ty.dims for _, e in step.outputs):
        return False
    for n in _nodes(roots):
        if not isinstance(n, Apply):
            continue
        src = n.args[0].ty.dims if n.args else ()
        if n.op is Op.MATMUL and src and src[-1] == d:
            return False
        if n.op in (Op.SUM, Op.AMAX) and (n.attr == d or (not n.attr and d in src)):
            return False
        if n.op in (Op.NORM, Op.NORMALIZE, Op.DIAG, Op.EYE, Op.DIAGONAL, Op.TRANSPOSE) and \
                (d in src or d in n.ty.dims):
            return False
    return True


def choose_split(spec: ir.Spec, step: Step) -> str | None:
    fixed = {d.name for d in spec.dims if d.size is not None}
    fixed |= {ir.base_dim(a) for a in ir.aliases(spec)}  # a block's dim is reduced whole (its alias has no tile)
    candidates = [d for s in spec.states for d in reversed(s.ty.dims) if d not in fixed]
    for d in dict.fromkeys(candidates):
        if _splittable(d, step):
            return d
    return None


# --- code fragments -------------------------------------------------------------------------------
def plan_recurrent(spec: ir.Spec) -> RecurrentPlan:
    step = build_step(spec)
    adj = build_adjoint(step)
    split = choose_split(spec, step)
    used_dims = list(dict.fromkeys(d for t in (*spec.inputs, *spec.params, *spec.states) for d in t.ty.dims))
    used_dims += [o.ty.dims[i] for o in spec.outputs for i in range(len(o.ty.dims))]
    dims = tuple(dict.fromkeys(used_dims))

    def info(t_name: str, t_dims: tuple[str, ...], cplx: bool) -> TensorInfo:
        return TensorInfo(t_name, t_dims, cplx, split is not None and split in t_dims)

    from .sweeps import plan_sweeps, sweep_code  # local: sweeps prints with this module's helpers

    inputs = tuple(info(t.name, t.ty.dims, False) for t in spec.inputs)
    params = tuple(info(t.name, t.ty.dims, False) for t in spec.params)
    states = tuple(info(t.name, t.ty.dims, t.ty.complex) for t in spec.states)
    outputs = tuple(info(o.name, o.ty.dims, False) for o in spec.outputs)

    setup = _dim_setup(dims, split, ir.aliases(spec))

    # leaves: what the printer may read without computing
    leaves: dict[Expr, Val] = {}
    param_loads = []
    for p in spec.params:
        leaves[Var(p.name, Kind.PARAM, p.ty)] = f"b_{p.name}"
        # grouped heads: a tensor with fewer heads serves H // H_x consecutive heads of the state
        row = f"(i_h // (H // H_{p.name}))"
        param_loads.append(f"b_{p.name} = {_load(f'p_{p.name}', row, p.ty.dims, False)[0]}")
    for o in spec.options:
        leaves[Var(o.name, Kind.OPTION, ir.SCALAR)] = f"opt_{o.name}"
    const_printer_leaves = dict(leaves)

    # inputs: whole, or the loop slices the step reads (k[j] -> b_k_j)
    input_loads = []
    for i in spec.inputs:
        slices = sorted({int(n.attr) for n in _nodes([e for _, e in step.new_states] + [e for _, e in step.outputs])
                         if isinstance(n, Apply) and n.op is Op.INDEX and isinstance(n.args[0], Var)
                         and n.args[0].name == i.name})
        whole_used = any(isinstance(n, Var) and n.kind is Kind.INPUT and n.name == i.name
                         for n in _nodes([e for _, e in step.new_states] + [e for _, e in step.outputs]))
        if whole_used or not slices:
            leaves[Var(i.name, Kind.INPUT, i.ty)] = f"b_{i.name}"
            input_loads.append(f"b_{i.name} = {_load(f'x_{i.name}', _input_row(i.name), i.ty.dims, False)[0]}")
        for j in slices:
            sub = i.ty.dims[1:]
            node = Apply(Op.INDEX, (Var(i.name, Kind.INPUT, i.ty), ir.Const(float(j))), ir.Type(sub), str(j))
            leaves[node] = f"b_{i.name}_{j}"
            load = _load(f"x_{i.name}", _input_row(i.name), sub, False, times(str(j), numel(sub)), i.ty.dims)[0]
            input_loads.append(f"b_{i.name}_{j} = {load}")

    state_names = {s.name: _names(f"b_{s.name}", s.ty.complex) for s in spec.states}
    for s in spec.states:
        leaves[state_var(s)] = _val(state_names[s.name])

    for c in spec.consts:
        leaves[Var(c.name, Kind.CONST, ir.SCALAR)] = f"c_{c.name}"

    def varying(e: Expr) -> bool:
        return bool(ir.uses(e, {Kind.INPUT, Kind.STATE, Kind.PREV_STATE}))

    taken = kernel_names(spec)  # no temporary may take a name the kernel gives an input (`b_g3` for `g3`)
    # consts: per head, printed once into the prologue
    cp = TritonPrinter(const_printer_leaves, lambda e: False, prefix="b_c", reserved=taken)
    const_lines = []
    for c in spec.consts:
        v = cp.real(c.value)
        const_lines.append(f"c_{c.name} = {v}")
    const_code = cp.prologue + const_lines

    # forward
    fp = TritonPrinter(leaves, varying, prefix="b_t", reserved=taken)
    new_vals = {n: fp.value(e) for n, e in step.new_states}
    out_vals = {n: fp.value(e) for n, e in step.outputs}
    assign, stores = [], []
    for s in spec.states:
        tiles = _tile_of(new_vals[s.name], s.ty.dims, s.ty.complex, s.ty.dims)
        for name, tile in zip(state_names[s.name], tiles, strict=True):
            assign.append(f"{name} = {tile}")
    for o in spec.outputs:
        tile = _tile_of(out_vals[o.name], o.ty.dims, False, o.ty.dims)[0]
        stores += _store(f"y_{o.name}", "i_tok", o.ty.dims, (tile,))

    state_init, final_store, ckpt_store, ckpt_load, scr_store, scr_load = [], [], [], [], [], []
    seg_init, seg_store, seg_load = [], [], []
    for s in spec.states:
        names = state_names[s.name]
        init = [f"{n} = tl.zeros({tile_shape(s.ty.dims)}, dtype=tl.float32)" for n in names]
        loads = _load(f"h0_{s.name}", "i_bh64", s.ty.dims, s.ty.complex)
        init.append("if USE_INITIAL_STATE:")
        init += [f"    {n} += {ld}" for n, ld in zip(names, loads, strict=True)]
        state_init += init
        final_store += _store(f"ht_{s.name}", "i_bh64", s.ty.dims, names)
        # checkpoints in the state's own layout, so the backward pass may tile differently
        ckpt_store += _store(f"ck_{s.name}", "((i_slot + t // CKPT) * H + i_h)", s.ty.dims, names)
        ckpt_load += [f"{n} = {ld}" for n, ld in
                      zip(names, _load(f"ck_{s.name}", "((i_slot + i_c) * H + i_h)", s.ty.dims, s.ty.complex),
                          strict=True)]
        bo, bn = block_offsets(s.ty.dims), block_numel(s.ty.dims)
        for c, n in enumerate(names):
            sslot = group(plus(times("(i_prog * CKPT + s)", str(len(names))), str(c)))
            scr_store.append(f"tl.store({plus(f'sc_{s.name}', times(sslot, bn), bo)}, {n})")
            scr_load.append(f"{n} = tl.load({plus(f'sc_{s.name}', times(sslot, bn), bo)})")
        # on chip: row s of the tile is selected by a compare (registers cannot be indexed by a loop variable)
        rank = len(s.ty.dims)
        row = f"l_ckpt[:{', None' * rank}] == s"
        lift = f"[None, {', '.join(':' * rank)}]" if rank else ""
        for n in names:
            seg = n.replace("b_", "b_seg_", 1)
            seg_init.append(f"{seg} = tl.zeros([BCKPT{''.join(f', B{d}' for d in s.ty.dims)}], dtype=tl.float32)")
            seg_store.append(f"{seg} = tl.where({row}, {n}{lift}, {seg})")
            seg_load.append(f"{n} = tl.sum(tl.where({row}, {seg}, 0.0), axis=0)")

    # recompute (new states only) for the backward pass
    rp = TritonPrinter(leaves, varying, prefix="b_r", reserved=taken)
    rec_vals = {n: rp.value(e) for n, e in step.new_states}
    rec_assign = []
    for s in spec.states:
        tiles = _tile_of(rec_vals[s.name], s.ty.dims, s.ty.complex, s.ty.dims)
        rec_assign += [f"{n} = {t}" for n, t in zip(state_names[s.name], tiles, strict=True)]

    # adjoint
    bleaves = dict(leaves)
    dstate_names = {s.name: _names(f"b_d{s.name}", s.ty.complex) for s in spec.states}
    dy_loads = []
    for s in spec.states:
        bleaves[cotangent_var(s.name, s.ty)] = _val(dstate_names[s.name])
    for o in spec.outputs:
        bleaves[cotangent_var(o.name, o.ty)] = f"b_d{o.name}"
        dy_loads.append(f"b_d{o.name} = {_load(f'dy_{o.name}', 'i_tok', o.ty.dims, False)[0]}")
    bp = TritonPrinter(bleaves, lambda e: varying(e) or bool(_uses_cot(e)), prefix="b_g", reserved=taken)
    grads = _adjoint_code(spec, adj, bp, dstate_names, inputs, params, split)

    dparam_init = [f"b_dp_{p.name} = tl.zeros({tile_shape(p.ty.dims)}, dtype=tl.float32)"
                   if p.ty.dims else f"b_dp_{p.name} = 0.0" for p in spec.params if p.name in grads.param_grads]
    dstate_init, dh0 = _dstate_code(spec, dstate_names, split)
    dparam_store = []
    for p in spec.params:
        if p.name in grads.param_grads:
            dparam_store += _store(f"dp_{p.name}", DPARAM_ROW, p.ty.dims, (f"b_dp_{p.name}",))

    math_comment = _math_comment(spec)
    sp = plan_sweeps(spec, step)
    # a vector state's segment fits on chip (SEGMENT_ON_CHIP_BUDGET), which moves fewer bytes than two sweeps
    matrix = any(len(s.ty.dims) >= 2 for s in spec.states)
    sweeps = sweep_code(spec, sp, leaves, varying, input_loads, dy_loads, rp.prologue, [*rp.body, *rec_assign],
                        dims) if sp is not None and matrix else None
    return RecurrentPlan(
        spec=spec, prefix=spec.name, dims=dims, tiled=split, inputs=inputs, params=params, states=states,
        outputs=outputs, options=tuple(o.name for o in spec.options),
        dim_setup="\n".join(setup), param_loads="\n".join(param_loads + const_code),
        input_loads="\n".join(input_loads), fwd_prologue="\n".join(fp.prologue), fwd_body="\n".join(fp.body),
        fwd_assign="\n".join(assign), output_stores="\n".join(stores), state_init="\n".join(state_init),
        final_store="\n".join(final_store), ckpt_store="\n".join(ckpt_store), ckpt_load="\n".join(ckpt_load),
        scratch_store="\n".join(scr_store), scratch_load="\n".join(scr_load),
        seg_init="\n".join(seg_init), seg_store="\n".join(seg_store), seg_load="\n".join(seg_load),
        rec_body="\n".join(rp.body), rec_assign="\n".join(rec_assign),
        rec_loads=_used_loads(input_loads, [*rp.body, *rec_assign]),
        bwd_loads=_used_loads(input_loads, [*bp.body, *grads.input_stores, *grads.dparam_acc,
                                            *grads.dstate_assign]),
        bwd_prologue="\n".join(rp.prologue + bp.prologue), bwd_body="\n".join(bp.body),
        dstate_init="\n".join(dstate_init), dstate_assign="\n".join(grads.dstate_assign),
        grad_stores="\n".join(grads.input_stores), dparam_init="\n".join(dparam_init),
        dparam_acc="\n".join(grads.dparam_acc), dparam_store="\n".join(dparam_store), dh0_store="\n".join(dh0),
        dy_loads="\n".join(dy_loads), input_grads=grads.input_grads, param_grads=grads.param_grads,
        state_grads=tuple(s.name for s in spec.states), math_comment=math_comment, sweeps=sweeps,
        bwd_num_warps=8 if _pressure(bp.body, spec) > BWD_PRESSURE_FOR_8_WARPS else 4,
    )


def _pressure(body: list[str], spec: ir.Spec) -> int:
    """How many statements of a kernel body produce a tile the size of a matrix state."""
    tags = {f"# [{', '.join(s.ty.dims)}]" for s in spec.states if len(s.ty.dims) >= 2}
    return sum(1 for line in body if any(line.endswith(t) for t in tags))


def _uses_cot(e: Expr) -> bool:
    return any(isinstance(n, Var) and n.name.startswith("∂") for n in ir.walk(e))


@dataclass
class _Grads:
    dstate_assign: list[str]
    input_stores: list[str]
    dparam_acc: list[str]
    input_grads: tuple[str, ...]
    param_grads: tuple[str, ...]


def _adjoint_code(spec: ir.Spec, adj: Adjoint, bp: TritonPrinter, dstate_names: dict[str, tuple[str, ...]],
                  inputs: tuple[TensorInfo, ...], params: tuple[TensorInfo, ...], split: str | None) -> _Grads:
    new_d = {n: bp.value(g) for n, g in adj.prev_states}
    dstate_assign = []
    for s in spec.states:
        names = dstate_names[s.name]
        if s.name in new_d:
            tiles = _tile_of(new_d[s.name], s.ty.dims, s.ty.complex, s.ty.dims)
        else:
            tiles = tuple(f"tl.zeros({tile_shape(s.ty.dims)}, dtype=tl.float32)" for _ in names)
        dstate_assign += [f"{n} = {t}" for n, t in zip(names, tiles, strict=True)]
    stores, got = grad_stores(adj.inputs, bp, {i.name for i in inputs if i.tiled}, split)
    acc, pgrads = param_accumulates(spec, adj.params, bp)
    return _Grads(dstate_assign, stores, acc, got, pgrads)


def _math_comment(spec: ir.Spec) -> str:
    from ..format import expr_text  # local: formatting is only needed for the header

    lines = []
    for u in spec.updates:
        loop = f"   for {u.loop.var} in {u.loop.dim}" if u.loop else ""
        lines.append(f"{u.state}_t = {expr_text(u.value)}{loop}")
    for o in spec.outputs:
        lines.append(f"{o.name}_t = {expr_text(o.value)}")
    return "\n".join(lines)
