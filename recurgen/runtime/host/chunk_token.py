"""chunk_token: the token kernels of chunk mode and the chunk families between them, as one differentiable torch
custom op per pass (section `chunk_token`).

A leaf's gradient has two parts: the families' operands' cotangents pulled back through the prologue, and the
outputs' cotangents pulled back through the epilogue. One kernel (leaves) writes both at once, so it runs after
the families' backward and needs what the epilogue saw: the prologue, the families and the epilogue are one op,
whose backward op runs dreads, the families' backward and leaves. torch.compile sees two opaque nodes (no graph
break, no traced formulas); the families' own custom ops serve the specs without token kernels.

Copied into the chunk section of a generated module that has token kernels (templates/chunk_mode.py.jinja),
which defines the tables and kernels read here.
"""

from __future__ import annotations

import torch
import triton

from .bound import (
    _CHUNK_CALLS,
    _CHUNK_FAMILIES,
    _CHUNK_NUM_WARPS,
    _STATE_INDEX,
    _TOKEN_BUFFERS,
    _TOKEN_DIMS,
    _TOKEN_DIRECT,
    _TOKEN_FOLDED,
    _TOKEN_GRADS,
    _TOKEN_KERNELS,
    _TOKEN_LEAVES,
    _TOKEN_OPERANDS,
    _TOKEN_OPTIONS,
    _TOKEN_OUTPUTS,
    _TOKEN_READS,
    INPUTS,
    OUTPUTS,
    STATES,
    TOKEN_BLOCK,
    _chunk_fake_outputs,
    _chunk_final,
    _chunk_s0,
    _chunk_scales,
    _chunk_seqlens,
    _token_bwd_op,
    _token_fwd_op,
)
from .common import _launch, _sum_parts

_T = torch.Tensor | None


#: section chunk_token
# the inputs the families take as they are (no formula reads them), one entry each
_TOKEN_DIRECT_INPUTS = tuple(dict.fromkeys(x for _, _, x, _ in _TOKEN_DIRECT))


def _token_launch(kernel, sz, B, T, H, *args):
    NC = triton.cdiv(T, TOKEN_BLOCK)
    if NC * B * H == 0:
        return
    _launch(kernel, (NC, B * H), _CHUNK_NUM_WARPS, *args, T, H, NC, *(sz[d] for d in _TOKEN_DIMS),
            BT=TOKEN_BLOCK, **{f"B{d}": triton.next_power_of_2(sz[d]) for d in _TOKEN_DIMS})


def _token_sizes(x0, dims):
    B, T, H = x0.shape[:3]
    low = x0.dtype if x0.dtype in (torch.bfloat16, torch.float16) else torch.float32  # tl.dot operands
    return B, T, H, dict(zip(_TOKEN_DIMS, dims, strict=True)), low


def _token_shape(sz, B, T, H, dims):
    return (B, T, H, *(1 if d == "1" else sz[d] for d in dims))


def _token_operands(leaves, directs, bufs, low):
    """Per call state and canonical argument, the tensor the family takes (leaves and directs as they are, in the
    dot dtype for dot operands; the prologue's buffers)."""
    index = {name: i for i, (_, name) in enumerate(_TOKEN_LEAVES)}
    args = {}
    for state, name, source, x_name, key, _, dot in _TOKEN_OPERANDS:
        x = leaves[index[x_name]] if source == "input" else bufs[key]
        args.setdefault(state, {})[name] = x.to(low) if dot and x.dtype != low else x
    for state, name, x_name, dot in _TOKEN_DIRECT:
        x = directs[_TOKEN_DIRECT_INPUTS.index(x_name)]
        args.setdefault(state, {})[name] = x.to(low) if dot and x.dtype != low else x
    return args


def _token_family_args(args, state, names):
    return [args[state].get(n) for n in names]


def _token_reads(os):
    """The read-outs the epilogue takes, from the families' raw o (a vector state's last axis of 1 dropped)."""
    raw = {state: o for (state, *_), o in zip(_CHUNK_CALLS, os, strict=True)}
    vector = {state: v for state, _, _, _, v, *_ in _CHUNK_CALLS}
    return [(raw[s].squeeze(-1) if vector[s] else raw[s]).contiguous() for s in _TOKEN_READS]


def _token_fwd_run(x0, leaves, directs, s0s, cu_seqlens, opts, dims, output_final_state, chunk_size, scales, fake):
    """Prologue, the families, epilogue: [*outputs the epilogue computes, *families' o, *(final states),
    *prologue buffers] (the buffers and o for the backward). `fake`: shapes only."""
    B, T, H, sz, low = _token_sizes(x0, dims)
    prologue, epilogue, _, _ = _TOKEN_KERNELS
    bufs = {key: x0.new_empty(_token_shape(sz, B, T, H, d), dtype=low if dot else torch.float32)
            for key, d, dot in _TOKEN_BUFFERS}
    if prologue is not None and not fake:
        _token_launch(prologue, sz, B, T, H, *leaves, *bufs.values(), *opts)
    args = _token_operands(leaves, directs, bufs, low)
    if not fake:
        cu_seqlens = _chunk_seqlens(cu_seqlens, [*leaves, *directs])
    os, hts = [], []
    for i, (state, _, names, *_) in enumerate(_CHUNK_CALLS):
        family, readout, fwd, _, epi = _CHUNK_FAMILIES[state]
        tensors = _token_family_args(args, state, names)
        s0 = s0s[i] if s0s else None
        if fake:
            res = _chunk_fake_outputs(family, readout, tensors, s0, cu_seqlens, output_final_state, epi)
        else:
            kw = {"scale": scales[i], "low": True} if epi else {}
            o, ht = fwd(*tensors, s0, cu_seqlens, output_final_state, chunk_size, **kw)
            res = [o, ht] if output_final_state else [o]
        os.append(res[0])
        hts += res[1:]
    ys = [x0.new_empty((B, T, H, *(sz[d] for d in d_))) for _, _, d_ in _TOKEN_OUTPUTS]
    if epilogue is not None and not fake:
        _token_launch(epilogue, sz, B, T, H, *leaves, *_token_reads(os), *ys, *opts)
    return [*ys, *os, *hts, *bufs.values()]


def _token_fwd(x0: torch.Tensor, leaves: list[torch.Tensor], directs: list[torch.Tensor], s0s: list[torch.Tensor],
               cu_seqlens: _T, opts: list[float], dims: list[int], output_final_state: bool, chunk_size: int,
               scales: list[float]) -> list[torch.Tensor]:
    return _token_fwd_run(x0, leaves, directs, s0s, cu_seqlens, opts, dims, output_final_state, chunk_size, scales,
                          False)


def _token_fwd_fake(x0, leaves, directs, s0s, cu_seqlens, opts, dims, output_final_state, chunk_size, scales):
    return _token_fwd_run(x0, leaves, directs, s0s, cu_seqlens, opts, dims, output_final_state, chunk_size, scales,
                          True)


def _token_bwd_run(x0, leaves, directs, s0s, cu_seqlens, bufs, os, dys, dos, dhts, opts, dims, chunk_size, scales,
                   fake):
    """dreads, the families' backward, leaves: [*gradients of _TOKEN_GRADS, *of the direct inputs, *dh0 (one per
    call, with s0s)]. `dys`: the epilogue's outputs' cotangents; `dos`, `dhts`: the families' o's and final states'
    (None: no cotangent). `fake`: shapes only."""
    index = {name: i for i, (_, name) in enumerate(_TOKEN_LEAVES)}
    if fake:
        return [torch.empty_like(leaves[index[name]]) for _, name in _TOKEN_GRADS] + \
            [torch.empty_like(x) for x in directs] + [torch.empty_like(s) for s in s0s]
    B, T, H, sz, low = _token_sizes(x0, dims)
    _, _, dreads, leaves_kernel = _TOKEN_KERNELS
    reads = _token_reads(os)
    drs = [torch.empty(r.shape, dtype=torch.float32, device=r.device) for r in reads]
    if dreads is not None:
        _token_launch(dreads, sz, B, T, H, *leaves, *reads, *dys, *drs, *opts)
    drs = dict(zip(_TOKEN_READS, drs, strict=True))
    args = _token_operands(leaves, directs, dict(zip((k for k, _, _ in _TOKEN_BUFFERS), bufs, strict=True)), low)
    cu_seqlens = _chunk_seqlens(cu_seqlens, [*leaves, *directs])
    das, dh0s = {}, []
    for i, (state, _, names, _, vector, *_) in enumerate(_CHUNK_CALLS):
        _, _, _, bwd, epi = _CHUNK_FAMILIES[state]
        tensors = _token_family_args(args, state, names)
        s0 = s0s[i] if s0s else None
        do = drs.get(state)
        do = None if do is None else (do.unsqueeze(-1) if vector else do)
        if dos[i] is not None:
            do = dos[i] if do is None else do + dos[i]  # a read-out that is both an output and the epilogue's
        if do is None:
            do = torch.zeros_like(os[i])
        dht = dhts[i] if dhts else None
        *grads, dh0 = bwd(*tensors, s0, cu_seqlens, do.contiguous(), None if dht is None else dht.contiguous(),
                          chunk_size, **({"scale": scales[i]} if epi else {}))
        for n, x, g in zip(names, tensors, grads, strict=True):
            if x is not None:
                das[(state, n)] = (g if g is not None else torch.zeros_like(x)).to(x.dtype).contiguous()
        if s0 is not None:
            dh0s.append(dh0 if dh0 is not None else torch.zeros_like(s0))
    grads = {}
    for kind, name in _TOKEN_GRADS:
        x = leaves[index[name]]
        NC = triton.cdiv(T, TOKEN_BLOCK)
        grads[(kind, name)] = torch.empty((B * NC, *x.shape), dtype=torch.float32, device=x.device) \
            if kind == "param" else torch.empty_like(x, dtype=x.dtype if kind == "input" else torch.float32)
    if leaves_kernel is not None:
        dys_list = [das[(state, name)] for state, name, *_ in _TOKEN_OPERANDS]
        _token_launch(leaves_kernel, sz, B, T, H, *leaves, *reads, *dys, *dys_list, *grads.values(), *opts)
    out = []
    for (kind, name), g in grads.items():
        if kind == "param":  # per-program (chunk of tokens) partial sums, added by a kernel in program order
            g = _sum_parts(g, leaves[index[name]].dtype)
        out.append(g)
    ddirect = [None] * len(directs)
    for state, name, x_name, _ in _TOKEN_DIRECT:
        j = _TOKEN_DIRECT_INPUTS.index(x_name)
        g = das[(state, name)].to(directs[j].dtype)
        ddirect[j] = g if ddirect[j] is None else ddirect[j] + g
    return out + ddirect + dh0s


def _token_bwd(x0: torch.Tensor, leaves: list[torch.Tensor], directs: list[torch.Tensor], s0s: list[torch.Tensor],
               cu_seqlens: _T, bufs: list[torch.Tensor], os: list[torch.Tensor], dys: list[torch.Tensor],
               dos: list[_T], dhts: list[_T], opts: list[float], dims: list[int], chunk_size: int,
               scales: list[float]) -> list[torch.Tensor]:
    return _token_bwd_run(x0, leaves, directs, s0s, cu_seqlens, bufs, os, dys, dos, dhts, opts, dims, chunk_size,
                          scales, False)


def _token_bwd_fake(x0, leaves, directs, s0s, cu_seqlens, bufs, os, dys, dos, dhts, opts, dims, chunk_size, scales):
    return _token_bwd_run(x0, leaves, directs, s0s, cu_seqlens, bufs, os, dys, dos, dhts, opts, dims, chunk_size,
                          scales, True)


def _token_setup_context(ctx, inputs, output):
    x0, leaves, directs, s0s, cu_seqlens, opts, dims, output_final_state, chunk_size, scales = inputs
    n_y, n_c = len(_TOKEN_OUTPUTS), len(_CHUNK_CALLS)
    n_h = n_c if output_final_state else 0
    os, bufs = output[n_y: n_y + n_c], output[n_y + n_c + n_h:]
    ctx.save_for_backward(x0, *leaves, *directs, *s0s, *bufs, *os)
    ctx.set_materialize_grads(False)  # the buffers and the o's get no cotangent: no zero-filled tensors for them
    ctx.meta = (len(leaves), len(directs), len(s0s), len(bufs), cu_seqlens, opts, dims, output_final_state,
                chunk_size, scales)


def _token_backward(ctx, grads):
    n_l, n_d, n_s, n_b, cu_seqlens, opts, dims, output_final_state, chunk_size, scales = ctx.meta
    x0, *saved = ctx.saved_tensors
    leaves, directs, s0s = saved[:n_l], saved[n_l: n_l + n_d], saved[n_l + n_d: n_l + n_d + n_s]
    bufs, os = saved[n_l + n_d + n_s: n_l + n_d + n_s + n_b], saved[n_l + n_d + n_s + n_b:]
    B, T, H, sz, _ = _token_sizes(x0, dims)
    n_y, n_c = len(_TOKEN_OUTPUTS), len(_CHUNK_CALLS)
    dys = [g.contiguous() if g is not None else x0.new_zeros((B, T, H, *(sz[d] for d in d_)))
           for g, (_, _, d_) in zip(grads[:n_y], _TOKEN_OUTPUTS, strict=True)]
    dos = list(grads[n_y: n_y + n_c])
    dhts = list(grads[n_y + n_c: n_y + 2 * n_c]) if output_final_state else []
    res = _token_bwd_op(x0, list(leaves), list(directs), list(s0s), cu_seqlens, list(bufs), list(os), dys, dos, dhts,
                        opts, dims, chunk_size, scales)
    it = iter(res[: len(_TOKEN_GRADS)])
    got = {key: next(it) for key in _TOKEN_GRADS}
    dleaves = [got.get(key) for key in _TOKEN_LEAVES]
    ddirect, dh0s = res[len(_TOKEN_GRADS): len(_TOKEN_GRADS) + n_d], res[len(_TOKEN_GRADS) + n_d:]
    # one entry per input, in the inputs' structure (an empty list stays a list; see `ops`)
    return (None, dleaves, list(ddirect), list(dh0s), None, None if opts else [], None if dims else [], None, None,
            None if scales else [])


def _chunk_token_call(values, opts, h0, output_final_state, cu_seqlens, chunk_size, running, sz, x0):
    """Chunk mode through the token op: the outputs (in x0's dtype) and the final states, as _chunk_forward."""
    B, T, H = x0.shape[:3]
    rows = {"input": values, "param": values, "running": {m: r[1] for m, r in running.items()},
            "running_prev": {m: r[0] for m, r in running.items()}}
    leaves = [rows[kind][name.split(":")[-1]] for kind, name in _TOKEN_LEAVES]
    leaves = [x if x.is_contiguous() else x.contiguous() for x in leaves]
    directs = [values[n] for n in _TOKEN_DIRECT_INPUTS]
    scales = _chunk_scales(values, opts, sz, B, T, H)
    s0s = [] if h0 is None else [_chunk_s0(h0[_STATE_INDEX[state]], transposed, vector)
                                 for state, _, _, transposed, vector, *_ in _CHUNK_CALLS]
    res = _token_fwd_op(values[INPUTS[0][0]], leaves, directs, s0s, cu_seqlens,
                        [float(opts[n]) for n in _TOKEN_OPTIONS], [int(sz[d]) for d in _TOKEN_DIMS],
                        output_final_state, chunk_size, [float(scales.get(state, 1.0)) for state, *_ in _CHUNK_CALLS])
    n_y, n_c = len(_TOKEN_OUTPUTS), len(_CHUNK_CALLS)
    ys, os = iter(res[:n_y]), dict(zip((c[0] for c in _CHUNK_CALLS), res[n_y: n_y + n_c], strict=True))
    vector = {state: v for state, _, _, _, v, *_ in _CHUNK_CALLS}
    index = {i for i, _, _ in _TOKEN_OUTPUTS}
    outs = [next(ys) if i in index else (os[_TOKEN_FOLDED[i]].squeeze(-1) if vector[_TOKEN_FOLDED[i]] else
                                         os[_TOKEN_FOLDED[i]]) for i in range(len(OUTPUTS))]
    finals = {m: r[2] for m, r in running.items()}
    if output_final_state:
        for (state, _, _, transposed, v, *_), ht in zip(_CHUNK_CALLS, res[n_y + n_c: n_y + 2 * n_c], strict=True):
            finals[state] = _chunk_final(ht, transposed, v)
    finals = [finals[name] for name, _, _ in STATES] if output_final_state else []
    return tuple(y.to(x0.dtype) for y in outs) + tuple(finals)
