"""running: chunk mode's running max m_t = max(a_t + m_(t-1), b_t) (mLSTM's stabiliser) as two Triton kernels and
a differentiable custom op (section `chunk_running_max`), for the Triton backend; the torch backend keeps the closed
form (templates/chunk_mode.py.jinja, `_chunk_running_max`).

Each map m -> max(a + m, b) is a max-plus affine map, and two compose to one: (a1, b1) then (a2, b2) is
(a1 + a2, max(a2 + b1, b2)). A program (one sequence and head) walks its tokens BT at a time: an associative scan of
the maps within the block, applied to the carried m. The backward walks the blocks in reverse: the cotangent of m_t
is g_t = dm_t + dprev_(t+1) + s_(t+1) g_(t+1), with s_t = 1 where the max took a_t + m_(t-1): an affine scan.

Copied into the chunk section of a generated module with a running max (templates/chunk_mode.py.jinja).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .bound import _chunk_seqlens, _running_max_bwd_op

_T = torch.Tensor | None


#: section chunk_running_max
RUNNING_BLOCK = 64  # tokens per step of the running max's programs


@triton.jit
def _maxplus(a1, b1, a2, b2):
    # the map m -> max(a1 + m, b1), then m -> max(a2 + m, b2)
    return a1 + a2, tl.maximum(a2 + b1, b2)


@triton.jit
def _affine(s1, u1, s2, u2):
    # reverse order: g -> u1 + s1 g is the later token's, applied after u2 + s2 g
    return s1 * s2, u2 + s2 * u1


@triton.jit
def _running_bounds(cu_seqlens, i_n, T, IS_VARLEN: tl.constexpr):
    # the tokens [bos, eos) of sequence i_n: a batch row, or a cu_seqlens slice
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
    else:
        bos = i_n.to(tl.int64) * T
        eos = bos + T
    return bos, eos


@triton.jit
def _running_max_fwd_kernel(a, b, m0, prev, new, last, cu_seqlens, T, H, BT: tl.constexpr, IS_VARLEN: tl.constexpr,
                            USE_M0: tl.constexpr):
    i_n, i_h = tl.program_id(0), tl.program_id(1)
    bos, eos = _running_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    m = tl.zeros([], dtype=tl.float32)
    if USE_M0:
        m += tl.load(m0 + i_n * H + i_h).to(tl.float32)
    o = tl.arange(0, BT)
    for start in range(bos, eos, BT):
        t = start + o
        mask = t < eos
        x = tl.load(a + t * H + i_h, mask=mask, other=0.0).to(tl.float32)
        y = tl.load(b + t * H + i_h, mask=mask, other=float("-inf")).to(tl.float32)
        # m_(t-1): the maps of the tokens before t in this block (the first token's: the identity)
        before = mask & (o > 0)
        xp = tl.load(a + (t - 1) * H + i_h, mask=before, other=0.0).to(tl.float32)
        yp = tl.load(b + (t - 1) * H + i_h, mask=before, other=float("-inf")).to(tl.float32)
        ap, bp = tl.associative_scan((xp, yp), 0, _maxplus)
        an, bn = tl.associative_scan((x, y), 0, _maxplus)
        tl.store(prev + t * H + i_h, tl.maximum(ap + m, bp), mask=mask)
        tl.store(new + t * H + i_h, tl.maximum(an + m, bn), mask=mask)
        at, bt = tl.reduce((x, y), 0, _maxplus)
        m = tl.maximum(at + m, bt)
    tl.store(last + i_n * H + i_h, m)


@triton.jit
def _running_max_bwd_kernel(a, b, prev, dprev, dnew, dlast, da, db, dm0, cu_seqlens, T, H, BT: tl.constexpr,
                            IS_VARLEN: tl.constexpr, USE_DLAST: tl.constexpr, USE_M0: tl.constexpr):
    i_n, i_h = tl.program_id(0), tl.program_id(1)
    bos, eos = _running_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    g = tl.zeros([], dtype=tl.float32)  # the cotangent of m at the first token after the block
    if USE_DLAST:
        g += tl.load(dlast + i_n * H + i_h).to(tl.float32)
    o = BT - 1 - tl.arange(0, BT)  # latest token first
    n_blocks = tl.cdiv(eos - bos, BT)
    for j in range(0, n_blocks):
        start = bos + (n_blocks - 1 - j) * BT
        t = start + o
        mask = t < eos
        took = tl.load(a + t * H + i_h, mask=mask, other=0.0).to(tl.float32) + \
            tl.load(prev + t * H + i_h, mask=mask, other=0.0) >= tl.load(b + t * H + i_h, mask=mask, other=0.0)
        after = (t + 1) < eos
        took_next = tl.load(a + (t + 1) * H + i_h, mask=after, other=0.0).to(tl.float32) + \
            tl.load(prev + (t + 1) * H + i_h, mask=after, other=0.0) >= \
            tl.load(b + (t + 1) * H + i_h, mask=after, other=0.0)
        # g_t = dnew_t + dprev_(t+1) + s_(t+1) g_(t+1); the last token's g_(t+1) is dlast (s = 1)
        s = tl.where(mask, tl.where(after, took_next.to(tl.float32), 1.0), 1.0)
        u = tl.where(mask, tl.load(dnew + t * H + i_h, mask=mask, other=0.0) +
                     tl.load(dprev + (t + 1) * H + i_h, mask=mask & after, other=0.0), 0.0)
        ss, uu = tl.associative_scan((s, u), 0, _affine)
        gt = uu + ss * g
        tl.store(da + t * H + i_h, tl.where(took, gt, 0.0), mask=mask)
        tl.store(db + t * H + i_h, tl.where(took, 0.0, gt), mask=mask)
        st, ut = tl.reduce((s, u), 0, _affine)
        g = ut + st * g
    if USE_M0:
        # m_0 feeds the first token's m_(t-1) and, where the max took a + m_0, its m
        has = eos > bos
        took0 = tl.load(a + bos * H + i_h, mask=has, other=0.0).to(tl.float32) + \
            tl.load(prev + bos * H + i_h, mask=has, other=0.0) >= tl.load(b + bos * H + i_h, mask=has, other=0.0)
        d0 = tl.load(dprev + bos * H + i_h, mask=has, other=0.0) + tl.where(took0, g, 0.0)
        tl.store(dm0 + i_n * H + i_h, tl.where(has, d0, g))


def _running_rows(a, cu_seqlens):
    B, T, H = a.shape[:3]
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    return B, T, H, N


def _running_max_fwd(a: torch.Tensor, b: torch.Tensor, m0: _T, cu_seqlens: _T) -> list[torch.Tensor]:
    B, T, H, N = _running_rows(a, cu_seqlens)
    cu_seqlens = _chunk_seqlens(cu_seqlens, [a])  # checked here too: under torch.compile the host cannot read it
    a, b = a.contiguous(), b.contiguous()
    prev, new = (torch.empty((B, T, H), dtype=torch.float32, device=a.device) for _ in range(2))
    last = torch.zeros((N, H), dtype=torch.float32, device=a.device) if m0 is None else \
        m0.to(torch.float32).clone()
    if N * H and T:
        _running_max_fwd_kernel[(N, H)](a, b, last if m0 is None else m0.contiguous(), prev, new, last,
                                        cu_seqlens if cu_seqlens is not None else a, T, H, BT=RUNNING_BLOCK,
                                        IS_VARLEN=cu_seqlens is not None, USE_M0=m0 is not None, num_warps=1)
    return [prev, new, last]


def _running_max_fwd_fake(a, b, m0, cu_seqlens):
    B, T, H, N = _running_rows(a, cu_seqlens)
    return [a.new_empty((B, T, H), dtype=torch.float32), a.new_empty((B, T, H), dtype=torch.float32),
            a.new_empty((N, H), dtype=torch.float32)]


def _running_max_bwd(a: torch.Tensor, b: torch.Tensor, prev: torch.Tensor, cu_seqlens: _T, dprev: torch.Tensor,
                     dnew: torch.Tensor, dlast: _T) -> list[torch.Tensor]:
    _, T, H, N = _running_rows(a, cu_seqlens)
    da, db = torch.empty_like(a, dtype=torch.float32), torch.empty_like(b, dtype=torch.float32)
    dm0 = torch.zeros((N, H), dtype=torch.float32, device=a.device)
    if dlast is not None and T == 0:
        dm0 = dm0 + dlast
    if N * H and T:
        _running_max_bwd_kernel[(N, H)](a.contiguous(), b.contiguous(), prev, dprev.contiguous(), dnew.contiguous(),
                                        dlast if dlast is not None else dm0, da, db, dm0,
                                        cu_seqlens if cu_seqlens is not None else a, T, H, BT=RUNNING_BLOCK,
                                        IS_VARLEN=cu_seqlens is not None, USE_DLAST=dlast is not None, USE_M0=True,
                                        num_warps=1)
    return [da.to(a.dtype), db.to(b.dtype), dm0]


def _running_max_bwd_fake(a, b, prev, cu_seqlens, dprev, dnew, dlast):
    _, _, H, N = _running_rows(a, cu_seqlens)
    return [torch.empty_like(a), torch.empty_like(b), a.new_empty((N, H), dtype=torch.float32)]


def _running_max_setup(ctx, inputs, output):
    a, b, m0, cu_seqlens = inputs
    ctx.save_for_backward(a, b, output[0])
    ctx.meta = (m0 is not None, None if m0 is None else m0.dtype, cu_seqlens)
    ctx.set_materialize_grads(False)


def _running_max_backward(ctx, grads):
    a, b, prev = ctx.saved_tensors
    has_m0, m0_dtype, cu_seqlens = ctx.meta
    dprev, dnew, dlast = grads
    dprev = dprev if dprev is not None else torch.zeros_like(prev)
    dnew = dnew if dnew is not None else torch.zeros_like(prev)
    da, db, dm0 = _running_max_bwd_op(a, b, prev, cu_seqlens, dprev, dnew, dlast)
    return da, db, dm0.to(m0_dtype) if has_m0 else None, None
