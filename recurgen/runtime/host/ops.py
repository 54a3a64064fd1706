"""ops: the fused recurrent kernels as opaque, differentiable torch custom ops (section `ops`).

Copied into every generated module (see the package's docstring), which registers them under its own name and
binds `_fwd_launcher` / `_bwd_launcher` to its launchers.
"""

from __future__ import annotations

import hashlib

import torch

from .bound import (
    ARG_ORDER,
    INPUTS,
    OPTIONS,
    OUTPUTS,
    PARAMS,
    SPEC_NAME,
    STATES,
    TWO_SWEEP,
    _bwd_launcher,
    _bwd_op,
    _fwd_launcher,
)
from .common import _ckpt_rows, _numel, _seqlens_values, _sizes, _state_shape


#: section ops
# ---------------------------------------------------------------------------------------------
# custom ops: the kernels as opaque, differentiable torch ops (torch.compile traces them without a
# graph break; their fake implementations give the output shapes)
# ---------------------------------------------------------------------------------------------
def _own_hash():
    # ops are named after this file's content: two different modules (say, a hand-edited copy) never
    # share a registered op, and importing the same module twice reuses its own
    with open(__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


_OP = f"{SPEC_NAME}_{_own_hash()}"


def _fwd_impl(xs_list: list[torch.Tensor], h0: list[torch.Tensor], opts: list[float], output_final_state: bool,
              save_ckpt: bool, ckpt_every: int, cu_seqlens: torch.Tensor | None, block_t: int) -> list[torch.Tensor]:
    """block_t > 0: chunk mode, the blocked-scan forward (block_t tokens at once); 0: the token loop."""
    values = dict(zip(ARG_ORDER, xs_list, strict=True))
    B, T, H, sz = _sizes(values)
    N = cu_seqlens.numel() - 1 if cu_seqlens is not None else B
    cu_seqlens = _seqlens_values(cu_seqlens, T) if cu_seqlens is not None else None  # see _seqlens_values
    xs = {n: values[n].contiguous() for n, _, _ in INPUTS}
    ps = {n: values[n].contiguous() for n, _, _ in PARAMS}
    ys, ht, ck = _fwd_launcher(xs, ps, dict(zip((n for n, _ in OPTIONS), opts, strict=True)), h0 or None,
                               output_final_state, save_ckpt, ckpt_every, sz, B, T, H, xs[INPUTS[0][0]].dtype,
                               (cu_seqlens, N), block_t)
    finals = [ht[n] for n, _, _ in STATES] if ht is not None else []
    return [ys[n] for n, _, _ in OUTPUTS] + finals + ([ck[n] for n, _, _ in STATES] if save_ckpt else [])


def _fwd_fake(xs_list, h0, opts, output_final_state, save_ckpt, ckpt_every, cu_seqlens, block_t):
    values = dict(zip(ARG_ORDER, xs_list, strict=True))
    B, T, H, sz = _sizes(values)
    N = cu_seqlens.numel() - 1 if cu_seqlens is not None else B
    x0 = values[INPUTS[0][0]]
    out = [x0.new_empty((B, T, H, *(sz[d] for d in dims))) for _, dims, _ in OUTPUTS]
    if output_final_state:
        out += [x0.new_empty(_state_shape(N, H, sz, dims), dtype=torch.complex64 if c else torch.float32)
                for _, dims, c in STATES]
    if save_ckpt:
        out += [x0.new_empty((_ckpt_rows(B, T, N, ckpt_every) * H * _numel(sz, dims) * (2 if c else 1),),
                             dtype=torch.float32) for _, dims, c in STATES]
    return out


def _bwd_impl(xs_list: list[torch.Tensor], has_h0: bool, ck_list: list[torch.Tensor], dys: list[torch.Tensor],
              dht: list[torch.Tensor], opts: list[float], ckpt_every: int,
              cu_seqlens: torch.Tensor | None) -> list[torch.Tensor]:
    values = dict(zip(ARG_ORDER, xs_list, strict=True))
    B, T, H, sz = _sizes(values)
    N = cu_seqlens.numel() - 1 if cu_seqlens is not None else B
    cu_seqlens = _seqlens_values(cu_seqlens, T) if cu_seqlens is not None else None  # see _seqlens_values
    xs = {n: values[n] for n, _, _ in INPUTS}
    ps = {n: values[n] for n, _, _ in PARAMS}
    ck = dict(zip((n for n, _, _ in STATES), ck_list, strict=False))  # empty without checkpoints
    gx, gp, gh0 = _bwd_launcher(xs, ps, dict(zip((n for n, _ in OPTIONS), opts, strict=True)), has_h0, ck,
                                dict(zip((n for n, _, _ in OUTPUTS), dys, strict=True)),
                                dict(zip((n for n, _, _ in STATES), dht, strict=True)) if dht else None,
                                ckpt_every, sz, B, T, H, (cu_seqlens, N))
    grads = {**gx, **gp}
    out = [grads[n].to(values[n].dtype) if n in grads else torch.zeros_like(values[n]) for n in ARG_ORDER]
    return out + [gh0[n] for n, _, _ in STATES]


def _bwd_fake(xs_list, has_h0, ck_list, dys, dht, opts, ckpt_every, cu_seqlens):
    values = dict(zip(ARG_ORDER, xs_list, strict=True))
    B, _, H, sz = _sizes(values)
    N = cu_seqlens.numel() - 1 if cu_seqlens is not None else B
    x0 = values[INPUTS[0][0]]
    return [torch.empty_like(values[n]) for n in ARG_ORDER] + [
        x0.new_empty(_state_shape(N, H, sz, dims), dtype=torch.complex64 if c else torch.float32)
        for _, dims, c in STATES]


def _setup_context(ctx, inputs, output):
    xs_list, h0, opts, output_final_state, _, ckpt_every, cu_seqlens, _ = inputs  # save_ckpt, block_t
    n_fin = len(STATES) if output_final_state else 0
    ck = list(h0) if TWO_SWEEP else output[len(OUTPUTS) + n_fin:]  # what the backward restarts from
    ctx.save_for_backward(*xs_list, *ck)
    ctx.set_materialize_grads(False)  # the checkpoints get no cotangent: no zero-filled buffers for them
    ctx.meta = (opts, ckpt_every, cu_seqlens, bool(h0), output_final_state, [x.dtype for x in h0])


def _backward(ctx, grads):
    opts, ckpt_every, cu_seqlens, has_h0, output_final_state, h0_dtypes = ctx.meta
    saved = ctx.saved_tensors
    xs_list, ck_list = list(saved[: len(ARG_ORDER)]), list(saved[len(ARG_ORDER):])
    values = dict(zip(ARG_ORDER, xs_list, strict=True))
    B, T, H, sz = _sizes(values)
    N = cu_seqlens.numel() - 1 if cu_seqlens is not None else B
    x0 = values[INPUTS[0][0]]
    dys = [g if g is not None else x0.new_zeros((B, T, H, *(sz[d] for d in dims)))
           for g, (_, dims, _) in zip(grads[: len(OUTPUTS)], OUTPUTS, strict=True)]
    dht = []
    if output_final_state:
        dht = [g if g is not None else x0.new_zeros(_state_shape(N, H, sz, dims),
                                                    dtype=torch.complex64 if c else torch.float32)
               for g, (_, dims, c) in zip(grads[len(OUTPUTS): len(OUTPUTS) + len(STATES)], STATES, strict=True)]
    res = _bwd_op(xs_list, has_h0, ck_list, dys, dht, opts, ckpt_every, cu_seqlens)
    dxs, dh0 = res[: len(ARG_ORDER)], res[len(ARG_ORDER):]
    dh0 = [g.to(dt) for g, dt in zip(dh0, h0_dtypes, strict=True)] if has_h0 else []
    # one entry per input, in the inputs' structure: torch flattens a non-empty float list to one leaf,
    # but keeps an empty one as a list
    return dxs, dh0, (None if opts else []), None, None, None, None, None


def _register(name, impl, fake):
    qual = f"recurgen::{name}"
    try:  # a module imported twice (same spec, same version) reuses its ops: the code is identical
        return torch.library.custom_op(qual, impl, mutates_args=())
    except RuntimeError:
        return getattr(torch.ops.recurgen, name).default
