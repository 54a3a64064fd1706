"""torch_path: the pure-torch path and the loader of the torch chunk families.

Sections `torch_ops` (helpers of the printed torch step), `torch_forward` (the step walked over tokens),
`chunk_torch_load` (recurgen.runtime.chunk_torch, in a module recurgen loads; runtime.standalone swaps in
`carried`'s) and `chunk_torch`. Copied into every generated module (see the package's docstring).
"""

from __future__ import annotations

import itertools

import torch

from .bound import _INPUT_NAMES, CHUNK_KERNELS, CHUNK_REASON, INPUTS, OUTPUTS, PARAMS, STATES, _torch_step
from .common import _seqlens_values, _sizes, _state_shape, _ungroup


#: section torch_ops
# ---------------------------------------------------------------------------------------------
# the pure-torch path: the same step, vectorised over batch and head (CPU without the interpreter)
# ---------------------------------------------------------------------------------------------
def _maximum(a, b):
    return torch.maximum(torch.as_tensor(a), torch.as_tensor(b))


def _minimum(a, b):
    return torch.minimum(torch.as_tensor(a), torch.as_tensor(b))


def _complex(a, b):
    ref = a if isinstance(a, torch.Tensor) else b
    a, b = (torch.as_tensor(x, dtype=ref.dtype, device=ref.device) for x in (a, b))
    return torch.complex(*torch.broadcast_tensors(a, b))


def _einsum(eq, a, b):
    if a.is_complex() != b.is_complex():  # to the wider complex type of the two (complex128 if either is 64-bit)
        wide = {torch.float64, torch.complex128} & {a.dtype, b.dtype}
        a, b = (x.to(torch.complex128 if wide else torch.complex64) for x in (a, b))
    return torch.einsum(eq, a, b)


#: section torch_forward
def _torch_forward(values, opts, h0, output_final_state, cu_seqlens=None):
    if cu_seqlens is not None:
        # packed sequences: each slice from its own initial state, never across a boundary (checked here too:
        # under torch.compile the host check could not read the values)
        bounds = _seqlens_values(cu_seqlens, values[INPUTS[0][0]].shape[1]).tolist()
        parts = []
        for i, (bos, eos) in enumerate(itertools.pairwise(bounds)):
            sub = {n: (x[:, bos:eos] if n in _INPUT_NAMES else x) for n, x in values.items()}
            parts.append(_torch_forward(sub, opts, [x[i:i + 1] for x in h0] if h0 is not None else None, True))
        ys = tuple(torch.cat([p[j] for p in parts], dim=1) for j in range(len(OUTPUTS)))
        finals = tuple(torch.cat([p[len(OUTPUTS) + j] for p in parts], dim=0) for j in range(len(STATES)))
        return ys + (finals if output_final_state else ())
    B, T, H, sz = _sizes(values)
    values = _ungroup(values, H)
    dt = torch.float32 if values[INPUTS[0][0]].dtype != torch.float64 else torch.float64
    device = values[INPUTS[0][0]].device
    xs = {n: values[n].to(dt) for n, _, _ in INPUTS}
    ps = {n: values[n].to(dt).unsqueeze(0) for n, _, _ in PARAMS}
    cdt = torch.complex64 if dt == torch.float32 else torch.complex128
    states = [torch.zeros(_state_shape(B, H, sz, dims), dtype=cdt if c else dt, device=device)
              for _, dims, c in STATES]
    if h0 is not None:
        states = [s + x.to(s.dtype) for s, x in zip(states, h0, strict=True)]
    outs = {n: [] for n, _, _ in OUTPUTS}
    for t in range(T):
        states, ys = _torch_step(states, {n: x[:, t] for n, x in xs.items()}, ps, opts, sz, H, dt, device)
        for (n, dims, _), y in zip(OUTPUTS, ys, strict=True):
            outs[n].append(y.expand(B, H, *(sz[d] for d in dims)))
    out_dtype = values[INPUTS[0][0]].dtype
    ys = tuple((torch.stack(outs[n], dim=1) if outs[n] else
                torch.zeros(B, 0, H, *(sz[d] for d in dims), dtype=dt, device=device)).to(out_dtype)
               for n, dims, _ in OUTPUTS)
    finals = tuple(s.to(torch.complex64) if s.is_complex() else s.to(torch.float32) for s in states) \
        if output_final_state else ()
    return ys + finals


#: section chunk_torch_load
# The chunk families in plain torch (backend="torch"): recurgen.runtime.chunk_torch here, the copy of it that a
# module written by `recurgen compile` carries (runtime/standalone.py), so that it never walks tokens for want of
# recurgen.
def _load_chunk_torch():
    try:
        from recurgen.runtime import chunk_torch
    except ImportError:
        return None
    return chunk_torch


#: section chunk_torch
_chunk_torch_module = _load_chunk_torch()
_chunk_torch_family = None if _chunk_torch_module is None else _chunk_torch_module.family


def _torch_auto_min_t():
    """The length from which "auto" chunks on the torch backend: measured per family (chunk_torch.AUTO_MIN_T)."""
    families = [family for _, family, _, _ in CHUNK_KERNELS]
    if CHUNK_REASON is not None or _chunk_torch_module is None or not families:
        return None
    return max(_chunk_torch_module.AUTO_MIN_T[family] for family in families)


TORCH_CHUNK_AUTO_MIN_T = _torch_auto_min_t()  # "auto" on the torch backend chunks from this length on (None: never)
