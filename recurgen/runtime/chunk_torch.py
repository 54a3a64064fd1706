"""chunk_torch: the four chunk kernel families (templates/chunk/) in plain torch, for `backend="torch"`.

Each `<family>_fwd` takes exactly what the Triton family's `<prefix>_fwd` takes (the same canonical tensors,
`h0`, `cu_seqlens`, `output_final_state`, `chunk_size` / `block_t`) plus the family's template flags as keyword
arguments, and returns the same `(o, ht)`: fp32 (complex64 for a complex scan), `ht` None unless asked for.
There is no custom backward: every op is differentiable and nothing is written in place, so autograd
differentiates the chunked form itself (inputs, gates and the initial state).

    matmul  S_t = diag(exp(g_t)) S_{t-1} + k_t v_tᵀ,            o_t = q_tᵀ S_t  (prev: q_tᵀ S_{t-1})
    wy      S_t = (I − β_t k_t k_tᵀ) diag(exp(g_t)) S_{t-1} + β_t k_t v_tᵀ,          o_t = q_tᵀ S_t
    dplr    S_t = diag(exp(g_t)) S_{t-1} + u_t (w_tᵀ S_{t-1}) + k_t v_tᵀ,          o_t = q_tᵀ S_t
    scan    S_t = a_t ⊙ S_{t-1} + b_t  (elementwise, real or complex),  o_t = S_t c_t  (or S_t)

How (per sequence and head; chunks of C tokens, G = the chunk-local inclusive cumsum of g, which is <= 0 and
non-increasing, so G_i − G_j <= 0 for j <= i):
  * within a chunk every pair weight Σ_c x_ic y_jc exp(bx_ic − by_jc) (`_scores`) is formed with exponents <= 0
    only: a per-head (scalar) decay as exp(bx_i − by_j) masked to the kept pairs before the exp; a per-channel
    decay in sub-chunks of SUB = 8 rows: exact [8, 8, K] blocks on the diagonal, and below it the factors
    x_i exp(bx_i − r) and y_j exp(r − by_j) around the reference row r that ends the previous sub-chunk (both
    exponents <= 0; their product is exp(bx_i − by_j) exactly). Nothing overflows for g ≈ −5 per token, and
    g ≈ −1e-4 loses nothing to cancellation (the exponents are differences of chunk-local sums).
  * matmul: O = (Q Kᵀ ⊙ decay mask) V + (Q ⊙ exp(G)) S_0 per chunk; S_end = exp(G_C) S_0 + (K ⊙ exp(G_C − G))ᵀ V.
  * wy: the UT transform. With S_i = Γ_i S_0 + Σ_{j<=i} (exp(G_i − G_j) ⊙ k_j) u_jᵀ, the pseudo-values solve
    (I + diag(β) A) U = diag(β) (V − (K ⊙ exp(G)) S_0), A_ij = Σ_c k_ic k_jc exp(G_ic − G_jc) (j < i): one
    unit-lower-triangular solve per chunk (torch.linalg.solve_triangular) gives U = Ũ − W S_0.
  * dplr: the same with two rank-1 terms per token: p_i = S_{i-1}ᵀ w_i solves (I − A_wu) P = (W ⊙ exp(G −
    g)) S_0 + A_wk V, then O = (Q ⊙ exp(G)) S_0 + A_qu P + A_qk V.
  * scan: a log-depth (Hillis–Steele) scan of the associative operator (a2, b2) ∘ (a1, b1) = (a2 a1, a2 b1 + b2)
    inside blocks of `block_t` tokens (no logarithms: a may be negative or complex), then one carry per block.
  * chunks are walked sequentially for the chunk-start states (a Python loop over T / C chunks; all batch rows
    and heads at once). Padding a sequence to whole chunks uses identity tokens (zero keys and gates, a = 1).
  * varlen (`cu_seqlens`, B = 1): the sequences are cut out, padded to the longest and run as a batch.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence

import torch

SUB = 8  # rows of the exact per-channel diagonal blocks: their [SUB, SUB, K] exps against the [C / SUB, C, K]
#           factors below them; 8 is the cheapest on CPU at C = 64 (the Triton kernels use 16 for tl.dot)
FAMILIES = ("matmul", "wy", "dplr", "scan")

Tensor = torch.Tensor
Opt = torch.Tensor | None


# ---------------------------------------------------------------------------------------------------------------
# layout: [B, T, H, ...] <-> chunks [B, H, NT, C, ...]
# ---------------------------------------------------------------------------------------------------------------
def _pad_time(x: Tensor, length: int, value: float) -> Tensor:
    """`x` [B, T, ...] padded along T to `length` with `value` (no copy when nothing is missing)."""
    missing = length - x.shape[1]
    if missing == 0:
        return x
    return torch.cat([x, x.new_full((x.shape[0], missing, *x.shape[2:]), value)], dim=1)


def _chunks(x: Tensor, C: int, value: float = 0.0) -> Tensor:
    """[B, T, H, ...] -> [B, H, NT, C, ...], the tail padded with `value`."""
    B, T = x.shape[:2]
    nt = -(-T // C)
    x = _pad_time(x, nt * C, value)
    return x.movedim(2, 1).reshape(B, x.shape[2], nt, C, *x.shape[3:])


def _unchunk(x: Tensor, T: int) -> Tensor:
    """[B, H, NT, C, ...] -> [B, T, H, ...]."""
    B, H, nt, C = x.shape[:4]
    return x.reshape(B, H, nt * C, *x.shape[4:]).movedim(1, 2)[:, :T]


def _packed(dense: Callable[..., tuple[Tensor, Tensor]], tensors: Sequence[Opt], pads: Sequence[float],
            h0: Opt, cu_seqlens: Opt, T: int) -> tuple[Tensor, Tensor]:
    """Run `dense(*tensors, h0)` (which returns o [B, T, ...] and the final states [B, ...]) per sequence:
    without `cu_seqlens` the batch rows are the sequences; with it (B = 1) each slice is cut out, padded with
    identity tokens to the longest and the slices run as one batch."""
    if cu_seqlens is None:
        return dense(*tensors, h0)
    if tensors[0].shape[0] != 1:
        raise ValueError(f"cu_seqlens needs B == 1 (packed sequences), got B = {tensors[0].shape[0]}")
    bounds = [int(b) for b in cu_seqlens.detach().to("cpu", torch.int64).tolist()]
    spans = list(itertools.pairwise(bounds))
    if bounds[0] != 0 or bounds[-1] != T or any(e < s for s, e in spans):
        raise ValueError(f"cu_seqlens must start at 0, never decrease and end at T={T}, got {bounds[:8]}")
    longest = max(e - s for s, e in spans)
    rows = [None if x is None else torch.cat([_pad_time(x[:, s:e], longest, p) for s, e in spans], dim=0)
            for x, p in zip(tensors, pads, strict=True)]
    o, ht = dense(*rows, h0)
    o = torch.cat([o[n:n + 1, : e - s] for n, (s, e) in enumerate(spans)], dim=1)
    return o, ht


def _states(h0: Opt, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.zeros(shape, dtype=dtype, device=device) if h0 is None else h0.to(dtype)


def _check_chunk(chunk_size: int) -> int:
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return chunk_size


# ---------------------------------------------------------------------------------------------------------------
# decayed pair weights within a chunk
# ---------------------------------------------------------------------------------------------------------------
def _mask(C: int, strict: bool, device: torch.device) -> Tensor:
    i = torch.arange(C, device=device)
    return i[:, None] > i[None, :] if strict else i[:, None] >= i[None, :]


def _scores(x: Tensor, bx: Opt, y: Tensor, by: Opt, strict: bool) -> Tensor:
    """P_ij = Σ_c x_ic y_jc exp(bx_ic − by_jc) for j <= i (j < i when `strict`), 0 above.

    x, y: [..., C, K]; bx, by: None (no decay), [..., C] (one decay per row) or [..., C, K] (per channel).
    Callers guarantee bx_i <= by_j for every kept pair and by non-increasing along C (chunk-local cumulative
    log-decays): every exponent formed is then <= 0, masked pairs never reach an exp.
    """
    C = x.shape[-2]
    mask = _mask(C, strict, x.device)
    if bx is None or by is None:
        return torch.where(mask, x @ y.transpose(-1, -2), 0.0)
    if bx.dim() == x.dim() - 1:  # one decay per row (scalar per head)
        gap = torch.where(mask, bx[..., :, None] - by[..., None, :], -math.inf)
        return (x @ y.transpose(-1, -2)) * gap.exp()
    sub = math.gcd(C, SUB)
    n = C // sub
    xs, ys, bxs, bys = (t.unflatten(-2, (n, sub)) for t in (x, y, bx, by))  # [..., n, sub, K]
    # diagonal blocks, exact: [..., n, sub, sub, K]
    gap = torch.where(_mask(sub, strict, x.device)[:, :, None], bxs[..., :, None, :] - bys[..., None, :, :],
                      -math.inf)
    diag = (xs[..., :, None, :] * ys[..., None, :, :] * gap.exp()).sum(-1)  # [..., n, sub, sub]
    eye = torch.eye(n, dtype=x.dtype, device=x.device)
    out = (diag[..., :, :, None, :] * eye[:, None, :, None]).reshape(*x.shape[:-2], n, sub, C)
    if n > 1:
        # below the diagonal: row block a (a >= 1) against the columns of the blocks before it, around the
        # reference r_a = by at the last row of block a - 1 (bx_i <= r_a <= by_j for i in block a, j < a sub)
        ref = by[..., sub - 1:C - 1:sub, :]  # [..., n - 1, K]
        xr = xs[..., 1:, :, :] * (bxs[..., 1:, :, :] - ref[..., :, None, :]).exp()  # [..., n - 1, sub, K]
        cols = torch.arange(C, device=x.device)[None, :] < sub * torch.arange(1, n, device=x.device)[:, None]
        gap = torch.where(cols[:, :, None], ref[..., :, None, :] - by[..., None, :, :], -math.inf)
        yr = y[..., None, :, :] * gap.exp()  # [..., n - 1, C, K], zero from column a sub on
        below = xr @ yr.transpose(-1, -2)  # [..., n - 1, sub, C]
        out = out + torch.cat([torch.zeros_like(below[..., :1, :, :]), below], dim=-3)
    return out.reshape(*x.shape[:-2], C, C)


def _decay_of(g: Opt, C: int, channel: bool) -> tuple[Opt, Opt]:
    """Chunked log-decays and their chunk-local inclusive cumsum: ([B, H, NT, C(, K)], same) or (None, None)."""
    if g is None:
        return None, None
    gc = _chunks(g.float(), C)
    return gc, gc.cumsum(-2 if channel else -1)


def _scale(x: Tensor, logw: Opt, channel: bool) -> Tensor:
    """x [..., C, K] times exp(logw) (logw [..., C, K] per channel, [..., C] per row, None: 1)."""
    if logw is None:
        return x
    return x * (logw.exp() if channel else logw.exp()[..., None])


def _last(G: Opt, channel: bool) -> Opt:
    """The chunk's total log-decay G_C: [..., 1, K] per channel, [..., 1] per row."""
    if G is None:
        return None
    return G[..., -1:, :] if channel else G[..., -1:]


def _decay_state(S: Tensor, total: Opt, channel: bool) -> Tensor:
    """diag(exp(total)) S for one chunk: total [B, H, 1, K] (per channel) or [B, H, 1] (scalar)."""
    if total is None:
        return S
    return S * (total[..., 0, :, None] if channel else total[..., 0, None, None]).exp()


def _check_g(g: Opt, kind: str, shape: torch.Size, name: str = "g") -> None:
    want = {"none": None, "scalar": tuple(shape[:3]), "channel": tuple(shape)}[kind]
    if want is None:
        if g is not None:
            raise ValueError(f"decay '{kind}' takes no {name}")
    elif g is None or tuple(g.shape) != want:
        raise ValueError(f"{name} has shape {None if g is None else tuple(g.shape)}, expected {list(want)}")


def _empty(B: int, T: int, H: int, K: int, V: int, h0: Opt, N: int, final: bool,
           device: torch.device) -> tuple[Tensor, Opt]:
    o = torch.zeros(B, T, H, V, dtype=torch.float32, device=device)
    if not final:
        return o, None
    return o, (torch.zeros(N, H, K, V, dtype=torch.float32, device=device) if h0 is None else h0.float().clone())


# ---------------------------------------------------------------------------------------------------------------
# matmul
# ---------------------------------------------------------------------------------------------------------------
def matmul_fwd(q: Tensor, k: Tensor, v: Tensor, g: Opt, h0: Opt, cu_seqlens: Opt, output_final_state: bool,
               chunk_size: int = 64, *, decay: str, prev: bool = False) -> tuple[Tensor, Opt]:
    """The "matmul" family: o [B, T, H, V] fp32 and the final states [N, H, K, V] fp32 (or None).

    q, k: [B, T, H, K]; v: [B, T, H, V]; g: None (decay "none"), [B, T, H] ("scalar") or [B, T, H, K]
    ("channel"), log-decays <= 0; `prev` reads the state before the token's update."""
    if decay not in ("none", "scalar", "channel"):
        raise ValueError(f"matmul: decay must be 'none', 'scalar' or 'channel', got {decay!r}")
    B, T, H, K = q.shape
    V = v.shape[-1]
    _check_g(g, decay, q.shape)
    if k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"q, k, v shapes disagree: {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    C = _check_chunk(chunk_size)
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    if T == 0:
        return _empty(B, T, H, K, V, h0, N, output_final_state, q.device)
    channel = decay == "channel"

    def dense(q, k, v, g, h0):
        qc, kc, vc = (_chunks(x.float(), C) for x in (q, k, v))  # [b, H, NT, C, K | V]
        gc, G = _decay_of(g, C, channel)
        bq = G if (G is None or not prev) else G - gc  # the query side: exclusive with `prev`
        intra = _scores(qc, bq, kc, G, strict=prev) @ vc
        total = _last(G, channel)
        qs = _scale(qc, bq, channel)
        ks = _scale(kc, None if G is None else total - G, channel)
        kv = ks.transpose(-1, -2) @ vc  # each chunk's own contribution to its end state: [b, H, NT, K, V]
        S = _states(h0, (qc.shape[0], H, K, V), torch.float32, q.device)
        starts = []
        for c in range(qc.shape[2]):
            starts.append(S)
            S = _decay_state(S, None if total is None else total[:, :, c], channel) + kv[:, :, c]
        o = intra + qs @ torch.stack(starts, dim=2)
        return _unchunk(o, q.shape[1]), S

    o, ht = _packed(dense, (q, k, v, g), (0.0, 0.0, 0.0, 0.0), h0, cu_seqlens, T)
    return o, (ht if output_final_state else None)


# ---------------------------------------------------------------------------------------------------------------
# wy
# ---------------------------------------------------------------------------------------------------------------
def wy_fwd(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Opt, h0: Opt, cu_seqlens: Opt,
           output_final_state: bool, chunk_size: int = 64, *, decay: str) -> tuple[Tensor, Opt]:
    """The "wy" family: o [B, T, H, V] fp32 and the final states [N, H, K, V] fp32 (or None).

    q, k: [B, T, H, K]; v: [B, T, H, V]; beta: [B, T, H]; g: None (decay "none"), [B, T, H] ("scalar") or
    [B, T, H, K] ("channel", applied before the reflection), log-decays <= 0."""
    if decay not in ("none", "scalar", "channel"):
        raise ValueError(f"wy: decay must be 'none', 'scalar' or 'channel', got {decay!r}")
    B, T, H, K = q.shape
    V = v.shape[-1]
    _check_g(g, decay, q.shape)
    C = _check_chunk(chunk_size)
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    if T == 0:
        return _empty(B, T, H, K, V, h0, N, output_final_state, q.device)
    channel = decay == "channel"

    def dense(q, k, v, beta, g, h0):
        qc, kc, vc = (_chunks(x.float(), C) for x in (q, k, v))
        bc = _chunks(beta.float(), C)[..., None]  # [b, H, NT, C, 1]
        _, G = _decay_of(g, C, channel)
        A = _scores(kc, G, kc, G, strict=True)  # [b, H, NT, C, C], zero on and above the diagonal
        M = _scores(qc, G, kc, G, strict=False)
        eye = torch.eye(C, dtype=A.dtype, device=A.device)
        rhs = torch.cat([bc * vc, bc * _scale(kc, G, channel)], dim=-1)
        sol = torch.linalg.solve_triangular(eye + bc * A, rhs, upper=False, unitriangular=True)
        u0, w = sol[..., :V], sol[..., V:]  # the pseudo-values are U = u0 − w S_0
        total = _last(G, channel)
        qs = _scale(qc, G, channel)
        ks = _scale(kc, None if G is None else total - G, channel)
        S = _states(h0, (qc.shape[0], H, K, V), torch.float32, q.device)
        outs = []
        for c in range(qc.shape[2]):
            u = u0[:, :, c] - w[:, :, c] @ S
            outs.append(qs[:, :, c] @ S + M[:, :, c] @ u)
            S = _decay_state(S, None if total is None else total[:, :, c], channel) + ks[:, :, c].transpose(-1, -2) @ u
        return _unchunk(torch.stack(outs, dim=2), q.shape[1]), S

    o, ht = _packed(dense, (q, k, v, beta, g), (0.0, 0.0, 0.0, 0.0, 0.0), h0, cu_seqlens, T)
    return o, (ht if output_final_state else None)


# ---------------------------------------------------------------------------------------------------------------
# dplr
# ---------------------------------------------------------------------------------------------------------------
def dplr_fwd(q: Tensor, k: Tensor, v: Tensor, u: Tensor, w: Tensor, g: Opt, h0: Opt, cu_seqlens: Opt,
             output_final_state: bool, chunk_size: int = 64) -> tuple[Tensor, Opt]:
    """The "dplr" family: o [B, T, H, V] fp32 and the final states [N, H, K, V] fp32 (or None).

    q, k, u, w: [B, T, H, K]; v: [B, T, H, V]; g: [B, T, H, K] log-decays <= 0, or None (no decay)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    if g is not None and tuple(g.shape) != tuple(q.shape):
        raise ValueError(f"g has shape {tuple(g.shape)}, expected {list(q.shape)}")
    C = _check_chunk(chunk_size)
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    if T == 0:
        return _empty(B, T, H, K, V, h0, N, output_final_state, q.device)

    def dense(q, k, v, u, w, g, h0):
        qc, kc, vc, uc, wc = (_chunks(x.float(), C) for x in (q, k, v, u, w))
        gc, G = _decay_of(g, C, True)
        Gx = None if G is None else G - gc  # w reads the state before the token: exclusive
        A_wu = _scores(wc, Gx, uc, G, strict=True)
        A_wk = _scores(wc, Gx, kc, G, strict=True)
        A_qu = _scores(qc, G, uc, G, strict=False)
        qkv = _scores(qc, G, kc, G, strict=False) @ vc
        eye = torch.eye(C, dtype=A_wu.dtype, device=A_wu.device)
        rhs = torch.cat([A_wk @ vc, _scale(wc, Gx, True)], dim=-1)
        sol = torch.linalg.solve_triangular(eye - A_wu, rhs, upper=False, unitriangular=True)
        p0, pw = sol[..., :V], sol[..., V:]  # p_i = S_{i-1}ᵀ w_i = p0 + pw S_0
        total = _last(G, True)
        qs = _scale(qc, G, True)
        back = None if G is None else total - G
        us, ks = _scale(uc, back, True), _scale(kc, back, True)
        kv = ks.transpose(-1, -2) @ vc
        S = _states(h0, (qc.shape[0], H, K, V), torch.float32, q.device)
        outs = []
        for c in range(qc.shape[2]):
            p = p0[:, :, c] + pw[:, :, c] @ S
            outs.append(qs[:, :, c] @ S + A_qu[:, :, c] @ p + qkv[:, :, c])
            S = (_decay_state(S, None if total is None else total[:, :, c], True)
                 + us[:, :, c].transpose(-1, -2) @ p + kv[:, :, c])
        return _unchunk(torch.stack(outs, dim=2), q.shape[1]), S

    o, ht = _packed(dense, (q, k, v, u, w, g), (0.0,) * 6, h0, cu_seqlens, T)
    return o, (ht if output_final_state else None)


# ---------------------------------------------------------------------------------------------------------------
# scan
# ---------------------------------------------------------------------------------------------------------------
def scan_fwd(a: Tensor, b: Tensor, c: Opt, h0: Opt, cu_seqlens: Opt, output_final_state: bool,
             block_t: int = 64, *, complex: bool, readout: str) -> tuple[Tensor, Opt]:  # noqa: A002 (the flag's name)
    """The "scan" family: o [B, T, H, P] ("contract": o_t = S_t c_t) or [B, T, H, P, Q] ("state"), and the final
    states [N, H, P, Q] (or None); fp32, or complex64 for a complex scan.

    a, b: [B, T, H, P, Q]; c: [B, T, H, Q] (None with readout "state")."""
    if readout not in ("contract", "state"):
        raise ValueError(f"scan: readout must be 'contract' or 'state', got {readout!r}")
    if a.dim() != 5 or b.shape != a.shape:
        raise ValueError(f"scan: a and b must both be [B, T, H, P, Q]; got {tuple(a.shape)}, {tuple(b.shape)}")
    if not complex and (a.is_complex() or b.is_complex()):
        raise TypeError("scan: this family is real; got a complex tensor")
    B, T, H, P, Q = a.shape
    if readout == "contract" and (c is None or tuple(c.shape) != (B, T, H, Q)):
        raise ValueError(f"scan: c must be [B, T, H, Q] = {(B, T, H, Q)}")
    L = _check_chunk(block_t)
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    sd = torch.complex64 if complex else torch.float32
    if T == 0:
        o = torch.zeros((B, 0, H, P) if readout == "contract" else (B, 0, H, P, Q), dtype=sd, device=a.device)
        ht = torch.zeros(N, H, P, Q, dtype=sd, device=a.device) if h0 is None else h0.to(sd).clone()
        return o, (ht if output_final_state else None)

    def dense(a, b, c, h0):
        ac, bc = _chunks(a.to(sd), L, 1.0), _chunks(b.to(sd), L)  # [n, H, NT, L, P, Q]
        A, Bc = ac, bc
        step = 1
        while step < L:  # Hillis–Steele: after it, (A_t, B_t) = the composition of tokens 0..t of the block
            A_prev = torch.cat([torch.ones_like(A[..., :step, :, :]), A[..., :-step, :, :]], dim=-3)
            B_prev = torch.cat([torch.zeros_like(Bc[..., :step, :, :]), Bc[..., :-step, :, :]], dim=-3)
            A, Bc = A * A_prev, A * B_prev + Bc
            step *= 2
        S = _states(h0, (ac.shape[0], H, P, Q), sd, a.device)
        starts = []
        for blk in range(ac.shape[2]):
            starts.append(S)
            S = A[:, :, blk, -1] * S + Bc[:, :, blk, -1]
        states = A * torch.stack(starts, dim=2)[..., None, :, :] + Bc
        if readout == "contract":
            states = (states * _chunks(c.to(sd), L)[..., None, :]).sum(-1)
        return _unchunk(states, a.shape[1]), S

    o, ht = _packed(dense, (a, b, c), (1.0, 0.0, 0.0), h0, cu_seqlens, T)
    return o, (ht if output_final_state else None)


# ---------------------------------------------------------------------------------------------------------------
# a family by name, with its flags bound
# ---------------------------------------------------------------------------------------------------------------
# From this many tokens on, a training step (forward + backward) in chunk mode is faster than walking the tokens on
# CPU; "auto" on the torch backend uses the largest over a spec's families. Measured with examples/cpu_crossover.py
# (docs/cpu.md): chunk mode wins from 8-16 tokens for matmul, wy and scan, from 64-128 for dplr.
AUTO_MIN_T = {"matmul": 16, "wy": 16, "scan": 16, "dplr": 64}

_FWD = {"matmul": matmul_fwd, "wy": wy_fwd, "dplr": dplr_fwd, "scan": scan_fwd}
_FLAGS = {"matmul": {"decay", "prev"}, "wy": {"decay"}, "dplr": set(), "scan": {"complex", "readout"}}


def family(name: str, **flags: object) -> Callable[..., tuple[Tensor, Opt]]:
    """`<name>_fwd` with the family's template flags bound: the same call as the Triton `<prefix>_fwd`."""
    if name not in _FWD:
        raise ValueError(f"unknown chunk family {name!r}; expected one of {FAMILIES}")
    if unknown := set(flags) - _FLAGS[name]:
        raise ValueError(f"chunk family {name!r} has no flag(s) {sorted(unknown)}")
    return functools.partial(_FWD[name], **flags)


__all__ = ["AUTO_MIN_T", "FAMILIES", "dplr_fwd", "family", "matmul_fwd", "scan_fwd", "wy_fwd"]
