"""common: the host code's constants, argument checks, tiling and launch helpers (sections `constants`, `helpers`).

Copied into every generated module (see the package's docstring); the imports below are that module's globals.
"""

from __future__ import annotations

import importlib.util
import math
import os

import torch
import triton
import triton.language as tl

from .bound import FIXED_DIMS, INPUTS, OPTIONS, PARAMS, SPEC_NAME, STATES, TILED_DIM

#: section constants
WARP_CONFIGS = (4, 8, 2, 1, 16)  # what the autotuner tries on a GPU (16: a whole 128 x 128 state per program)
NUM_WARPS = 4  # used where nothing can be timed (the interpreter)
MIN_PROGRAMS = 132  # programs per launch that keep every SM of an H100 busy
MIN_TILE = 16  # the smallest split-dim tile worth a program
CHECKPOINT_EVERY = 16  # the backward pass keeps one state per this many tokens, recomputes the rest
# a segment's recomputed states stay in registers when all of them fit in this many fp32 values per program
# (vector states); larger ones go through a scratch buffer in global memory
SEGMENT_ON_CHIP_BUDGET = 4096
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def _softplus(x):
    # log(1 + e^x) without overflow: exact to fp32 precision beyond x = 20
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))


#: section helpers
# ---------------------------------------------------------------------------------------------
# host side
# ---------------------------------------------------------------------------------------------
def _interpreting() -> bool:
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# read once at import as well: torch.compile cannot trace triton's getenv, so a compiled call picks its backend
# from this flag and the tensors' device (_default_backend)
_INTERPRETING = _interpreting()
if _INTERPRETING and importlib.util.find_spec("numpy") is None:  # triton's interpreter computes with numpy
    raise ImportError(f"{SPEC_NAME}: Triton's CPU interpreter (TRITON_INTERPRET=1) needs numpy: pip install numpy")


def _default_backend(x):
    """Triton on CUDA tensors or under the interpreter, else the pure-torch path (traceable)."""
    interpreting = _INTERPRETING if torch.compiler.is_compiling() else _interpreting()
    return "triton" if x.is_cuda or interpreting else "torch"


def _launch(kernel, grid, warps, *args, **kwargs):
    if _interpreting():
        return kernel.fn[grid](*args, num_warps=warps, **kwargs)
    return kernel[grid](*args, **kwargs)


def _fmt(names):
    return "[" + ", ".join(names) + "]"


def _sizes(tensors):
    """B, T, H and every dim, read from the arguments; ValueError naming the argument otherwise.

    H is the largest head count; a tensor may have fewer heads that divide it (grouped heads, as in
    GQA / grouped-value Gated DeltaNet): its head h serves heads h*G ... h*G + G-1, G = H // its heads.
    """
    first, first_dims = INPUTS[0][0], INPUTS[0][1]
    x0 = tensors[first]
    if not isinstance(x0, torch.Tensor) or x0.dim() != 3 + len(first_dims):
        got = list(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
        raise ValueError(f"{SPEC_NAME}: `{first}` must have shape {_fmt(['B', 'T', 'H', *first_dims])}, got {got}")
    B, T = (int(s) for s in x0.shape[:2])
    sz = dict(FIXED_DIMS)
    origin = dict.fromkeys(FIXED_DIMS, "the spec")
    device = x0.device
    heads = {}
    for table, lead, names in ((INPUTS, (B, T), ("B", "T", "H")), (PARAMS, (), ("H",))):
        for name, dims, _ in table:
            x = tensors[name]
            want = [*names, *dims]
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"{SPEC_NAME}: `{name}` must be a tensor of shape {_fmt(want)}, "
                                 f"got {type(x).__name__}")
            if x.dim() != len(want) or tuple(x.shape[: len(lead)]) != lead:
                known = ", ".join(f"{n}={v}" for n, v in zip(names, lead, strict=False))  # B, T of the lead only
                raise ValueError(f"{SPEC_NAME}: `{name}` must have shape {_fmt(want)}"
                                 + (f" with {known} (from `{first}`)" if known else "") + f", got {list(x.shape)}")
            heads[name] = int(x.shape[len(lead)])
            for d, s in zip(dims, x.shape[len(lead) + 1:], strict=True):
                if s == 0:
                    raise ValueError(f"{SPEC_NAME}: `{name}` has {d}=0: every dim needs at least one element, got "
                                     f"shape {list(x.shape)}")
                if d in sz and sz[d] != s:
                    raise ValueError(f"{SPEC_NAME}: `{name}` has {d}={s} but {d}={sz[d]} from {origin[d]}")
                sz.setdefault(d, int(s))
                origin.setdefault(d, f"`{name}`")
            if x.device != device:
                raise ValueError(f"{SPEC_NAME}: `{name}` is on {x.device} but `{first}` is on {device}")
            if x.dtype not in _FLOAT_DTYPES:
                raise ValueError(f"{SPEC_NAME}: `{name}` has dtype {x.dtype}; expected float32, float16 or bfloat16")
    most = max(heads, key=lambda n: heads[n])
    H = heads[most]
    for name, h in heads.items():
        if h < 1 or H % h:
            raise ValueError(f"{SPEC_NAME}: `{name}` has H={h} heads but `{most}` has H={H}: an argument may have "
                             "fewer heads than the largest only if its count divides it (grouped heads)")
    return B, T, H, sz


def _heads(values):
    """Each argument's own head count (H // it is its group size)."""
    return {n: int(values[n].shape[2]) for n, _, _ in INPUTS} | {n: int(values[n].shape[0]) for n, _, _ in PARAMS}


def _ungroup(values, H):
    """Repeat grouped heads to H (the torch path and the oracle work head by head); a tensor that already has H
    heads is passed as it is (repeat_interleave by 1 would copy it)."""
    out = dict(values)
    for n, _, _ in INPUTS:
        if values[n].shape[2] != H:
            out[n] = values[n].repeat_interleave(H // values[n].shape[2], dim=2)
    for n, _, _ in PARAMS:
        if values[n].shape[0] != H:
            out[n] = values[n].repeat_interleave(H // values[n].shape[0], dim=0)
    return out


def _seqlens(cu_seqlens, B, T, device):
    """Validate flash-linear-attention's packed layout: B = 1, cumulative lengths [N + 1] from 0 to T."""
    if cu_seqlens is None:
        return None, B
    _seqlens_form(cu_seqlens)
    if B != 1:
        raise ValueError(f"{SPEC_NAME}: with `cu_seqlens` the inputs are packed into one row: B must be 1, got {B}")
    if cu_seqlens.device != device:
        raise ValueError(f"{SPEC_NAME}: `cu_seqlens` is on {cu_seqlens.device} but the inputs are on {device}")
    if not torch.compiler.is_compiling():  # reading the values would end a compiled graph
        _seqlens_values(cu_seqlens, T)
    # the dtype is kept: an int64 value past 2^31 must reach the ops' own check, not wrap to a valid int32
    return cu_seqlens.contiguous(), cu_seqlens.numel() - 1


def _seqlens_form(cu_seqlens):
    """A 1-D int32/int64 tensor of at least two entries (described by type, dtype and shape only: a tensor's
    repr would read its values, which torch.compile cannot trace)."""
    if isinstance(cu_seqlens, torch.Tensor):
        if cu_seqlens.dim() == 1 and cu_seqlens.numel() >= 2 and cu_seqlens.dtype in (torch.int32, torch.int64):
            return
        got = f"a {cu_seqlens.dtype} tensor of shape {list(cu_seqlens.shape)}"
    else:
        got = f"{type(cu_seqlens).__name__} {cu_seqlens!r:.60}"
    raise ValueError(f"{SPEC_NAME}: `cu_seqlens` must be a 1-D int32/int64 tensor [N + 1] of cumulative "
                     f"sequence lengths, got {got}")


def _seqlens_values(cu_seqlens, T):
    """Check the values of `cu_seqlens` (0 = c_0 <= c_1 <= ... <= c_N = T); return them as contiguous int32.

    `_seqlens` calls it in eager mode; every custom op calls it again on the tensor it gets, because the ops
    run eagerly even inside a torch.compile graph, where `_seqlens` cannot read values: so no kernel ever
    indexes the packed row outside [0, T), whatever the caller passed.
    """
    _seqlens_form(cu_seqlens)
    cu = cu_seqlens.detach().to("cpu", torch.int64)
    if int(cu[0]) != 0 or int(cu[-1]) != T or bool((cu[1:] < cu[:-1]).any()):
        raise ValueError(f"{SPEC_NAME}: `cu_seqlens` must start at 0, never decrease, and end at T={T}; "
                         f"got {cu.tolist()[:8]}{'...' if cu.numel() > 8 else ''}")
    return cu_seqlens.to(torch.int32).contiguous()


def _state_shape(B, H, sz, dims):
    return (B, H, *(sz[d] for d in dims))


def _check_states(states, B, H, sz, what, device):
    if states is None:
        return None
    given = (states,) if isinstance(states, torch.Tensor) else tuple(states)
    if len(given) != len(STATES):
        raise ValueError(f"{SPEC_NAME}: `{what}` needs {len(STATES)} tensor(s) "
                         f"({', '.join(n for n, _, _ in STATES)}), got {len(given)}")
    out = []
    for x, (name, dims, cplx) in zip(given, STATES, strict=True):
        want = _state_shape(B, H, sz, dims)
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != want:
            got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{SPEC_NAME}: `{what}` for state `{name}` must have shape "
                             f"{_fmt(['B', 'H', *dims])} = {list(want)}, got {got}")
        if cplx and not x.is_complex():
            raise ValueError(f"{SPEC_NAME}: `{what}` for state `{name}` must be complex")
        if not cplx and not x.is_floating_point():
            raise ValueError(f"{SPEC_NAME}: `{what}` for state `{name}` must be a real floating-point tensor, "
                             f"got {x.dtype}")
        if x.device != device:
            raise ValueError(f"{SPEC_NAME}: `{what}` for state `{name}` is on {x.device} but the inputs are on "
                             f"{device}")
        out.append(x)
    return out


def _options(given, sz, H):
    opts = {}
    for name, default in OPTIONS:
        value = given.get(name)
        if value is None:
            try:
                value = default(sz, H)
            except (ArithmeticError, ValueError) as e:  # e.g. a default of 1 / (K - K) or log(0)
                raise ValueError(f"{SPEC_NAME}: the default of option `{name}` cannot be computed for dims {sz}: "
                                 f"{e}; pass `{name}=` explicitly") from None
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{SPEC_NAME}: option `{name}` is {value}; it must be finite")
        opts[name] = value
    return opts


def _blocks(sz, budget, rows=None, tiled=TILED_DIM):
    """Block sizes: every dim whole, except the split dim, tiled to keep the state within budget (None: whole).

    With `rows` (sequences x heads) and every input and state carrying the split dim, more tiles re-read and
    recompute nothing: the split dim is then halved until MIN_PROGRAMS programs fill the GPU.
    """
    blocks = {d: triton.next_power_of_2(max(int(s), 1)) for d, s in sz.items()}
    nv = 1
    if tiled is not None and budget is not None:
        other = max([math.prod(blocks[d] for d in dims if d != tiled) * (2 if c else 1)
                     for _, dims, c in STATES if tiled in dims] or [1])
        cap = max(1, budget // other)
        cap = 1 << (cap.bit_length() - 1)
        blocks[tiled] = min(blocks[tiled], cap)
        free = all(tiled in dims for _, dims, _ in (*INPUTS, *STATES))
        while free and rows and blocks[tiled] > MIN_TILE and \
                rows * triton.cdiv(sz[tiled], blocks[tiled]) < MIN_PROGRAMS:
            blocks[tiled] //= 2
        nv = triton.cdiv(sz[tiled], blocks[tiled])
    return blocks, nv


@triton.jit
def _sum_parts_kernel(parts, out, M, P, BLOCK: tl.constexpr):
    # the per-tile parts of a gradient, summed in tile order (deterministic), stored in the input's dtype
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for p in range(0, P):
        acc += tl.load(parts + p * M + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(out + offs, acc.to(out.dtype.element_ty), mask=mask)


def _sum_parts(parts, dtype):
    """parts [P, ...] (fp32, or the input's dtype) -> their fp32 sum [...] in `dtype`, by a kernel (no fp32 round
    trip through torch)."""
    out = torch.empty(parts.shape[1:], dtype=dtype, device=parts.device)
    M = out.numel()
    if M:
        _sum_parts_kernel[(triton.cdiv(M, 1024),)](parts, out, M, parts.shape[0], BLOCK=1024, num_warps=NUM_WARPS)
    return out


def _numel(sz, dims):
    return math.prod(sz[d] for d in dims)


def _ckpt_rows(B, T, N, ckpt_every):
    """Checkpoint slots for all sequences: sequence n's c-th slot is bos // CKPT + n + c (never shared)."""
    return triton.cdiv(B * T, ckpt_every) + N


def _tile_numel(blocks, dims, cplx):
    return math.prod(blocks[d] for d in dims) * (2 if cplx else 1)


def _real_view(x):
    return torch.view_as_real(x) if x.is_complex() else x
