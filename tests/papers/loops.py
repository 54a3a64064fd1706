"""The models of tests/papers/*.rec written from their papers as per-token float64 loops, sharing nothing with
recurgen (neither its oracle nor its specs' reformulations).

Each function takes the spec's arguments in fla's layout (inputs `[B, T, H, ...]`, params `[H, ...]`) and `init`
(the spec's states `[B, H, ...]`, or None), and returns (outputs, final states) by the spec's names. Inside, each
head runs on its own, in the paper's notation: RWKV-4 as the explicit sums of its eq. (14) and as the reference
CUDA kernel's stabilised loop, Titans with a `V×K` memory and the gradient of ½‖M k − v‖², RoPE retention in
its attention form with absolute rotations R_t (the spec carries the rotation in the state instead).
"""

from __future__ import annotations

import itertools

import torch

Tensor = torch.Tensor
Result = tuple[dict[str, Tensor], dict[str, Tensor]]


def _heads(B: int, H: int) -> itertools.product[tuple[int, int]]:
    return itertools.product(range(B), range(H))


def _init(init: tuple[Tensor, ...] | None, i: int, b: int, h: int, shape: tuple[int, ...], like: Tensor) -> Tensor:
    return init[i][b, h].clone() if init is not None else like.new_zeros(shape)


def rwkv4(k: Tensor, v: Tensor, w: Tensor, u: Tensor, *, init: tuple[Tensor, ...] | None = None) -> Result:
    """Peng et al. 2023, eq. (14), literally: for token t (0-based),
    wkv_t = (Σ_{i<t} e^{−(t−1−i) w + k_i} v_i + e^{u + k_t} v_t) / (Σ_{i<t} e^{−(t−1−i) w + k_i} + e^{u + k_t}),
    plus, with initial sums num_0, den_0, their decayed share e^{−t w} num_0 (e^{−t w} den_0)."""
    B, T, H, D = k.shape
    wkv = k.new_zeros(B, T, H, D)
    num_T, den_T = k.new_zeros(B, H, D), k.new_zeros(B, H, D)
    for b, h in _heads(B, H):
        num0, den0 = _init(init, 0, b, h, (D,), k), _init(init, 1, b, h, (D,), k)
        ww, uu = w[h], u[h]

        def sums(t: int, b: int = b, h: int = h, num0: Tensor = num0, den0: Tensor = den0,
                 ww: Tensor = ww) -> tuple[Tensor, Tensor]:
            """Σ_{i<t} e^{−(t−1−i) w + k_i} v_i (and without v), with the initial sums' share."""
            num, den = torch.exp(-t * ww) * num0, torch.exp(-t * ww) * den0
            for i in range(t):
                e = torch.exp(-(t - 1 - i) * ww + k[b, i, h])
                num, den = num + e * v[b, i, h], den + e
            return num, den

        for t in range(T):
            num, den = sums(t)
            bonus = torch.exp(uu + k[b, t, h])
            wkv[b, t, h] = (num + bonus * v[b, t, h]) / (den + bonus)
        # the sums after the last token, with the same (t − 1 − i) decay convention one step on
        num, den = sums(T)
        num_T[b, h], den_T[b, h] = num, den
    return {"wkv": wkv}, {"num": num_T, "den": den_T}


def rwkv4_stable(k: Tensor, v: Tensor, w: Tensor, u: Tensor, *, init: tuple[Tensor, ...] | None = None) -> Result:
    """The reference CUDA kernel's loop (BlinkDL/RWKV-LM, wkv_cuda.cu, kernel_forward), per channel:
        ww = u + k; p = max(pp, ww); e1 = exp(pp − p); e2 = exp(ww − p); y = (e1 aa + e2 v) / (e1 bb + e2)
        ww = pp − w; p = max(ww, k); e1 = exp(ww − p); e2 = exp(k − p); aa = e1 aa + e2 v; bb = e1 bb + e2; pp = p
    The kernel starts from aa = bb = 0, pp = −1e38; with `init` it starts from the given (aa, bb, pp)."""
    B, T, H, D = k.shape
    y = k.new_zeros(B, T, H, D)
    finals = {n: k.new_zeros(B, H, D) for n in ("aa", "bb", "pp")}
    for b, h in _heads(B, H):
        aa, bb = _init(init, 0, b, h, (D,), k), _init(init, 1, b, h, (D,), k)
        pp = init[2][b, h].clone() if init is not None else k.new_full((D,), -1e38)
        for t in range(T):
            kk, vv = k[b, t, h], v[b, t, h]
            ww = u[h] + kk
            p = torch.maximum(pp, ww)
            e1, e2 = torch.exp(pp - p), torch.exp(ww - p)
            y[b, t, h] = (e1 * aa + e2 * vv) / (e1 * bb + e2)
            ww = pp - w[h]
            p = torch.maximum(ww, kk)
            e1, e2 = torch.exp(ww - p), torch.exp(kk - p)
            aa, bb, pp = e1 * aa + e2 * vv, e1 * bb + e2, p
        finals["aa"][b, h], finals["bb"][b, h], finals["pp"][b, h] = aa, bb, pp
    return {"wkv": y}, finals


def titans_momentum(q: Tensor, k: Tensor, v: Tensor, eta: Tensor, theta: Tensor, alpha: Tensor, *,
                    init: tuple[Tensor, ...] | None = None) -> Result:
    """Behrouz et al. 2024 (Titans), eq. (9)-(10) with the linear memory of section 3.1: a V×K matrix M maps
    keys to values, ℓ(M; x_t) = ½ ‖M k_t − v_t‖², so ∇ℓ = (M k_t − v_t) k_tᵀ and
        S_t = η_t S_{t−1} − θ_t ∇ℓ(M_{t−1}; x_t),   M_t = (1 − α_t) M_{t−1} + S_t,   o_t = M_t q_t.
    The spec stores S and M as K×V (transposed) and writes ∇ as k (kᵀ M − vᵀ): the same numbers."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    o = q.new_zeros(B, T, H, V)
    S_T, M_T = q.new_zeros(B, H, K, V), q.new_zeros(B, H, K, V)
    for b, h in _heads(B, H):
        S = _init(init, 0, b, h, (K, V), q).T.clone()  # the paper's V×K layout
        M = _init(init, 1, b, h, (K, V), q).T.clone()
        for t in range(T):
            kk, vv = k[b, t, h], v[b, t, h]
            grad = torch.outer(M @ kk - vv, kk)
            S = eta[b, t, h] * S - theta[b, t, h] * grad
            M = (1 - alpha[b, t, h]) * M + S
            o[b, t, h] = M @ q[b, t, h]
        S_T[b, h], M_T[b, h] = S.T, M.T
    return {"o": o}, {"S": S_T, "M": M_T}


def _rotate(x: Tensor, angle: Tensor) -> Tensor:
    """RoFormer eq. (34): each interleaved pair (x_{2i}, x_{2i+1}) rotated by angle_i; x: [N, 2], angle: [N]."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([x[:, 0] * c - x[:, 1] * s, x[:, 0] * s + x[:, 1] * c], dim=-1)


def rope_retention(q: Tensor, k: Tensor, v: Tensor, theta: Tensor, *,
                   init: tuple[Tensor, ...] | None = None) -> Result:
    """Retention (Sun et al. 2023, eq. (5)-(6), the parallel form) with RoPE (Su et al. 2021) on queries and keys:
        o_t = Σ_{s≤t} γ^{t−s} (R_t q_t)ᵀ (R_s k_s) v_s + γ^t (R_t q_t)ᵀ S_0,   γ_h = 1 − 2^{−5−h},
    R_t rotating pair i by t θ_i (positions t = 1..T); q, k: [B, T, H, N, 2] (interleaved pairs). The initial
    state (even rows S0, odd rows S1 in the spec) is the memory at position 0. The final state is
    Σ_s γ^{T−s} R_Tᵀ R_s k_s v_sᵀ + γ^T R_Tᵀ S_0."""
    B, T, H, N, _ = q.shape
    V = v.shape[-1]
    o = q.new_zeros(B, T, H, V)
    S0_T, S1_T = q.new_zeros(B, H, N, V), q.new_zeros(B, H, N, V)
    for b, h in _heads(B, H):
        gamma = 1.0 - 2.0 ** (-5 - h)
        mem0 = torch.stack([_init(init, 0, b, h, (N, V), q), _init(init, 1, b, h, (N, V), q)], dim=1)  # [N, 2, V]
        rk = [_rotate(k[b, s, h], (s + 1) * theta[h]) for s in range(T)]
        for t in range(T):
            rq = _rotate(q[b, t, h], (t + 1) * theta[h])
            acc = gamma ** (t + 1) * torch.einsum("nc,ncv->v", rq, mem0)
            for s in range(t + 1):
                acc = acc + gamma ** (t - s) * (rq * rk[s]).sum() * v[b, s, h]
            o[b, t, h] = acc
        # R_Tᵀ = R(−T θ): rotate back to position 0's frame
        back = -T * theta[h]
        fin = gamma ** T * torch.stack([_rotate(mem0[:, :, j], back) for j in range(V)], dim=-1)
        for s in range(T):
            fin = fin + gamma ** (T - 1 - s) * torch.einsum("nc,v->ncv", _rotate(rk[s], back), v[b, s, h])
        S0_T[b, h], S1_T[b, h] = fin[:, 0], fin[:, 1]
    return {"o": o}, {"S0": S0_T, "S1": S1_T}
