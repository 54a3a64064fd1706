"""Each model written by hand as a per-token loop, from its paper, sharing nothing with recurgen.

One function per model. It takes the spec's arguments (fla layout: inputs `[B, T, H, ...]`, params
`[H, ...]`), options as keywords, and `init`: the initial states in the spec's layout. It returns
(outputs, final states) in the spec's layout, by the spec's names. Inside, each head runs on its own, in the
paper's own layout and notation (a `V×K` state where the paper has one, the delta rule in its
error-correcting form, RWKV6 as the explicit sum of its eq. (19), LRU and GateLoop through `torch.polar`),
so a layout, ordering or parameterisation slip in a spec shows up as a mismatch rather than being copied.

Plain torch ops only; slow by design (loops over batch, head and token). float64 in, float64 out.
"""

from __future__ import annotations

import itertools
import math

import torch

Tensor = torch.Tensor
Result = tuple[dict[str, Tensor], dict[str, Tensor]]


def _heads(B: int, H: int) -> itertools.product[tuple[int, int]]:
    return itertools.product(range(B), range(H))


def _init(init: tuple[Tensor, ...] | None, i: int, b: int, h: int, shape: tuple[int, ...],
          like: Tensor, complex_: bool = False) -> Tensor:
    """State `i` of head (b, h) at t = 0: the given one, or zeros."""
    if init is not None:
        return init[i][b, h].clone()
    return torch.zeros(shape, dtype=torch.complex128 if complex_ else like.dtype)


def _softplus(x: Tensor) -> Tensor:
    return torch.log1p(torch.exp(x))


def _sigmoid(x: Tensor) -> Tensor:
    return 1.0 / (1.0 + torch.exp(-x))


def _default_scale(K: int, scale: float | None) -> float:
    return K ** -0.5 if scale is None else scale


# --- identity / scalar / diagonal transitions -----------------------------------------------------------

def linear_attn(q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None,
                init: tuple[Tensor, ...] | None = None) -> Result:
    """Katharopoulos et al. 2020, eq. (16)-(19): S_t = S_{t-1} + k_t v_tᵀ, o_t = scale · q_tᵀ S_t."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = _default_scale(K, scale)
    o, S_T = q.new_zeros(B, T, H, V), q.new_zeros(B, H, K, V)
    for b, h in _heads(B, H):
        S = _init(init, 0, b, h, (K, V), q)
        for t in range(T):
            S = S + torch.outer(k[b, t, h], v[b, t, h])
            o[b, t, h] = scale * (q[b, t, h] @ S)
        S_T[b, h] = S
    return {"o": o}, {"S": S_T}


def retention(q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None,
              init: tuple[Tensor, ...] | None = None) -> Result:
    """Sun et al. 2023, eq. (6): S_t = γ_h S_{t-1} + k_tᵀ v_t, γ_h = 1 − 2^(−5−h) for head h = 0..H−1."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = _default_scale(K, scale)
    o, S_T = q.new_zeros(B, T, H, V), q.new_zeros(B, H, K, V)
    for b, h in _heads(B, H):
        gamma = 1.0 - 2.0 ** (-5 - h)
        S = _init(init, 0, b, h, (K, V), q)
        for t in range(T):
            S = gamma * S + torch.outer(k[b, t, h], v[b, t, h])
            o[b, t, h] = scale * (q[b, t, h] @ S)
        S_T[b, h] = S
    return {"o": o}, {"S": S_T}


def simple_gla(q: Tensor, k: Tensor, v: Tensor, g: Tensor, g_gamma: Tensor, *, scale: float | None = None,
               init: tuple[Tensor, ...] | None = None) -> Result:
    """Scalar gate per head: S_t = exp(g_t) γ_h S_{t-1} + k_t v_tᵀ, o_t = scale · q_tᵀ S_t (γ_h = exp(g_gamma_h))."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = _default_scale(K, scale)
    o, S_T = q.new_zeros(B, T, H, V), q.new_zeros(B, H, K, V)
    for b, h in _heads(B, H):
        S = _init(init, 0, b, h, (K, V), q)
        gamma = math.exp(g_gamma[h].item())
        for t in range(T):
            S = math.exp(g[b, t, h].item()) * gamma * S + torch.outer(k[b, t, h], v[b, t, h])
            o[b, t, h] = scale * (q[b, t, h] @ S)
        S_T[b, h] = S
    return {"o": o}, {"S": S_T}


def gla(q: Tensor, k: Tensor, v: Tensor, g: Tensor, *, scale: float | None = None,
        init: tuple[Tensor, ...] | None = None) -> Result:
    """Yang et al. 2024, eq. (3): S_t = Diag(α_t) S_{t-1} + k_t v_tᵀ with α_t = exp(g_t), o_t = scale · q_tᵀ S_t."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = _default_scale(K, scale)
    o, S_T = q.new_zeros(B, T, H, V), q.new_zeros(B, H, K, V)
    for b, h in _heads(B, H):
        S = _init(init, 0, b, h, (K, V), q)
        for t in range(T):
            S = torch.diag(torch.exp(g[b, t, h])) @ S + torch.outer(k[b, t, h], v[b, t, h])
            o[b, t, h] = scale * (q[b, t, h] @ S)
        S_T[b, h] = S
    return {"o": o}, {"S": S_T}


def hgrn2(q: Tensor, g: Tensor, v: Tensor, *, scale: float | None = None,
          init: tuple[Tensor, ...] | None = None) -> Result:
    """Qin et al. 2024, eq. (5): GLA with the input key tied to the forget gate, k_t = 1 − f_t, f_t = exp(g_t)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = _default_scale(K, scale)
    o, S_T = q.new_zeros(B, T, H, V), q.new_zeros(B, H, K, V)
    for b, h in _heads(B, H):
        S = _init(init, 0, b, h, (K, V), q)
        for t in range(T):
            f = torch.exp(g[b, t, h])
            S = torch.diag(f) @ S + torch.outer(1 - f, v[b, t, h])
            o[b, t, h] = scale * (q[b, t, h] @ S)
        S_T[b, h] = S
    return {"o": o}, {"S": S_T}


def hgrn(f: Tensor, i: Tensor, *, init: tuple[Tensor, ...] | None = None) -> Result:
    """Qin et al. 2023, eq. (5) in the paper's own gates: h_t = f_t ⊙ h_{t-1} + (1 − f_t) ⊙ i_t, o_t = h_t."""
    B, T, H, D = f.shape
    o, h_T = f.new_zeros(B, T, H, D), f.new_zeros(B, H, D)
    for b, hd in _heads(B, H):
        state = _init(init, 0, b, hd, (D,), f)
        for t in range(T):
            state = f[b, t, hd] * state + (1 - f[b, t, hd]) * i[b, t, hd]
            o[b, t, hd] = state
        h_T[b, hd] = state
    return {"o": o}, {"h": h_T}


def rwkv6(r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, *, scale: float | None = None,
          init: tuple[Tensor, ...] | None = None) -> Result:
    """Peng et al. 2024 (Finch), eq. (19) as the explicit sum, not the recurrence:

    wkv_t = diag(u) k_tᵀ v_t + Σ_{i<t} diag(⊙_{j=i+1}^{t-1} w_j) k_iᵀ v_i  (+ the decayed initial state),
    o_t = scale · r_t wkv_t, with w_j = exp(log-decay w) as fla passes it.
    """
    B, T, H, K = r.shape
    V = v.shape[-1]
    scale = _default_scale(K, scale)
    o, S_T = r.new_zeros(B, T, H, V), r.new_zeros(B, H, K, V)

    def decay(b: int, h: int, first: int, last: int) -> Tensor:
        """⊙_{j=first}^{last} w_j, per channel (ones for an empty range)."""
        d = torch.ones(K, dtype=r.dtype)
        for j in range(first, last + 1):
            d = d * torch.exp(w[b, j, h])
        return d

    for b, h in _heads(B, H):
        S0 = _init(init, 0, b, h, (K, V), r)
        for t in range(T + 1):  # t = T: the state after the last token
            wkv = torch.diag(decay(b, h, 0, t - 1)) @ S0
            for i in range(t):
                wkv = wkv + torch.diag(decay(b, h, i + 1, t - 1)) @ torch.outer(k[b, i, h], v[b, i, h])
            if t == T:
                S_T[b, h] = wkv
                break
            bonus = torch.diag(u[h]) @ torch.outer(k[b, t, h], v[b, t, h])
            o[b, t, h] = scale * (r[b, t, h] @ (wkv + bonus))
    return {"o": o}, {"S": S_T}


def mamba(u: Tensor, delta: Tensor, B: Tensor, C: Tensor, z: Tensor, A: Tensor, D: Tensor, delta_bias: Tensor, *,
          init: tuple[Tensor, ...] | None = None) -> Result:
    """Gu & Dao 2023, Alg. 2 and mamba_ssm's selective_scan_ref, channel by channel:

    Δ = softplus(δ + bias), x[e, n] ← exp(Δ[e] A[e, n]) x[e, n] + Δ[e] B[n] u[e],
    y[e] = Σ_n x[e, n] C[n] + D[e] u[e], then y ⊙ silu(z).
    """
    Bsz, T, H, E = u.shape
    N = B.shape[-1]
    y, h_T = u.new_zeros(Bsz, T, H, E), u.new_zeros(Bsz, H, E, N)
    for b, h in _heads(Bsz, H):
        x = _init(init, 0, b, h, (E, N), u)
        for t in range(T):
            dt = _softplus(delta[b, t, h] + delta_bias[h])
            x_new = torch.empty_like(x)
            for e in range(E):
                x_new[e] = torch.exp(dt[e] * A[h, e]) * x[e] + dt[e] * B[b, t, h] * u[b, t, h, e]
            x = x_new
            out = torch.stack([(x[e] * C[b, t, h]).sum() for e in range(E)]) + D[h] * u[b, t, h]
            zz = z[b, t, h]
            y[b, t, h] = out * (zz * _sigmoid(zz))
        h_T[b, h] = x
    return {"y": y}, {"h": h_T}


def mamba2(x: Tensor, dt: Tensor, B: Tensor, C: Tensor, z: Tensor, A: Tensor, D: Tensor, dt_bias: Tensor, *,
           init: tuple[Tensor, ...] | None = None) -> Result:
    """Dao & Gu 2024, eq. (1) with scalar A per head (mamba_ssm's ssd with dt_softplus=True and a gate z):

    Δ = softplus(dt + dt_bias), h_t = exp(Δ A) h_{t-1} + Δ x_t B_tᵀ (P×N), y_t = (h_t C_t + D x_t) ⊙ silu(z_t).
    """
    Bsz, T, H, P = x.shape
    N = B.shape[-1]
    y, h_T = x.new_zeros(Bsz, T, H, P), x.new_zeros(Bsz, H, P, N)
    for b, h in _heads(Bsz, H):
        state = _init(init, 0, b, h, (P, N), x)
        for t in range(T):
            delta = _softplus(dt[b, t, h] + dt_bias[h])
            state = torch.exp(delta * A[h]) * state + delta * torch.outer(x[b, t, h], B[b, t, h])
            gate = z[b, t, h] * _sigmoid(z[b, t, h])
            y[b, t, h] = (state @ C[b, t, h] + D[h] * x[b, t, h]) * gate
        h_T[b, h] = state
    return {"y": y}, {"h": h_T}


def longhorn(x: Tensor, k: Tensor, q: Tensor, beta: Tensor, *, init: tuple[Tensor, ...] | None = None) -> Result:
    """Liu et al. 2025, eq. (9), row by row: ε_d = β_d / (1 + β_d kᵀk),
    S[d] ← (1 − ε_d k⊙k) ⊙ S[d] + ε_d x_d k, o_t = S_t q_t."""
    B, T, H, D = x.shape
    N = k.shape[-1]
    o, S_T = x.new_zeros(B, T, H, D), x.new_zeros(B, H, D, N)
    for b, h in _heads(B, H):
        S = _init(init, 0, b, h, (D, N), x)
        for t in range(T):
            kt = k[b, t, h]
            rows = []
            for d in range(D):
                eps = beta[b, t, h, d] / (1 + beta[b, t, h, d] * torch.dot(kt, kt))
                rows.append((1 - eps * kt * kt) * S[d] + eps * x[b, t, h, d] * kt)
            S = torch.stack(rows)
            o[b, t, h] = S @ q[b, t, h]
        S_T[b, h] = S
    return {"o": o}, {"S": S_T}


# --- delta-rule family (V×K states, error-correcting form) ----------------------------------------------

def delta_rule(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, *, scale: float | None = None,
               init: tuple[Tensor, ...] | None = None) -> Result:
    """Yang et al. 2024, eq. (2), V×K state: S_t = S_{t-1} − β_t (S_{t-1} k_t − v_t) k_tᵀ, o_t = scale · S_t q_t."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = _default_scale(K, scale)
    o, S_T = q.new_zeros(B, T, H, V), q.new_zeros(B, H, K, V)
    for b, h in _heads(B, H):
        S = _init(init, 0, b, h, (K, V), q).T  # the paper's V×K layout
        for t in range(T):
            kt, vt = k[b, t, h], v[b, t, h]
            S = S - beta[b, t, h] * torch.outer(S @ kt - vt, kt)
            o[b, t, h] = scale * (S @ q[b, t, h])
        S_T[b, h] = S.T
    return {"o": o}, {"S": S_T}


def gated_delta_rule(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, *, scale: float | None = None,
                     init: tuple[Tensor, ...] | None = None) -> Result:
    """Yang et al. 2025, eq. (10), V×K state: S_t = S_{t-1} (α_t (I − β_t k_t k_tᵀ)) + β_t v_t k_tᵀ, α_t = exp(g_t)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = _default_scale(K, scale)
    eye = torch.eye(K, dtype=q.dtype)
    o, S_T = q.new_zeros(B, T, H, V), q.new_zeros(B, H, K, V)
    for b, h in _heads(B, H):
        S = _init(init, 0, b, h, (K, V), q).T
        for t in range(T):
            kt, vt, bt = k[b, t, h], v[b, t, h], beta[b, t, h]
            alpha = torch.exp(g[b, t, h])
            S = S @ (alpha * (eye - bt * torch.outer(kt, kt))) + bt * torch.outer(vt, kt)
            o[b, t, h] = scale * (S @ q[b, t, h])
        S_T[b, h] = S.T
    return {"o": o}, {"S": S_T}


def delta_product(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, *, scale: float | None = None,
                  init: tuple[Tensor, ...] | None = None) -> Result:
    """Siems et al. 2025, eq. (4): n_h delta-rule steps per token, j = 1..n_h, each
    S ← S − β_{t,j} (S k_{t,j} − v_{t,j}) k_{t,j}ᵀ (V×K); o_t = scale · S_t q_t after the last step."""
    B, T, H, J, K = k.shape
    V = v.shape[-1]
    scale = _default_scale(K, scale)
    o, S_T = q.new_zeros(B, T, H, V), q.new_zeros(B, H, K, V)
    for b, h in _heads(B, H):
        S = _init(init, 0, b, h, (K, V), q).T
        for t in range(T):
            for j in range(J):
                kj, vj = k[b, t, h, j], v[b, t, h, j]
                S = S - beta[b, t, h, j] * torch.outer(S @ kj - vj, kj)
            o[b, t, h] = scale * (S @ q[b, t, h])
        S_T[b, h] = S.T
    return {"o": o}, {"S": S_T}


def kda(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, *, scale: float | None = None,
        init: tuple[Tensor, ...] | None = None) -> Result:
    """Kimi Linear (2025), KDA: S_t = (I − β_t k_t k_tᵀ) Diag(α_t) S_{t-1} + β_t k_t v_tᵀ (K×V), o_t = scale · S_tᵀ q_t,
    computed as decay first, then the delta correction against the decayed state."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = _default_scale(K, scale)
    o, S_T = q.new_zeros(B, T, H, V), q.new_zeros(B, H, K, V)
    for b, h in _heads(B, H):
        S = _init(init, 0, b, h, (K, V), q)
        for t in range(T):
            kt, vt = k[b, t, h], v[b, t, h]
            decayed = torch.exp(g[b, t, h])[:, None] * S
            S = decayed + beta[b, t, h] * torch.outer(kt, vt - decayed.T @ kt)
            o[b, t, h] = scale * (S.T @ q[b, t, h])
        S_T[b, h] = S
    return {"o": o}, {"S": S_T}


def rwkv7(r: Tensor, w: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, *, scale: float | None = None,
          init: tuple[Tensor, ...] | None = None) -> Result:
    """Peng et al. 2025, eq. (17), V×K state: S_t = S_{t-1} (diag(w_t) + a_t b_tᵀ) + v_t k_tᵀ, o_t = scale · S_t r_t,
    with w_t = exp(log-decay w) and default scale 1 (fla's chunk_rwkv7)."""
    Bsz, T, H, K = r.shape
    V = v.shape[-1]
    scale = 1.0 if scale is None else scale
    o, S_T = r.new_zeros(Bsz, T, H, V), r.new_zeros(Bsz, H, K, V)
    for bb, h in _heads(Bsz, H):
        S = _init(init, 0, bb, h, (K, V), r).T
        for t in range(T):
            transition = torch.diag(torch.exp(w[bb, t, h])) + torch.outer(a[bb, t, h], b[bb, t, h])
            S = S @ transition + torch.outer(v[bb, t, h], k[bb, t, h])
            o[bb, t, h] = scale * (S @ r[bb, t, h])
        S_T[bb, h] = S.T
    return {"o": o}, {"S": S_T}


def mlstm(q: Tensor, k: Tensor, v: Tensor, ig: Tensor, fg: Tensor, *, scale: float | None = None,
          eps: float = 1e-6, init: tuple[Tensor, ...] | None = None) -> Result:
    """Beck et al. 2024, eq. (19)-(27) with the stabiliser of their Appendix (as xLSTM's
    `recurrent_step_stabilized_simple`), V×K memory: log f = log σ(f̃), k ← k / √d,
    m_t = max(log f + m_{t-1}, ĩ), f' = exp(log f + m_{t-1} − m_t), i' = exp(ĩ − m_t),
    C_t = f' C_{t-1} + i' v_t k_tᵀ, n_t = f' n_{t-1} + i' k_t, h_t = C_t q_t / (max(|n_tᵀ q_t|, exp(−m_t)) + eps),
    eps = 1e-6 as in xLSTM's reference step (`recurrent_step_fw`)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = _default_scale(K, scale)
    out, C_T, n_T, m_T = q.new_zeros(B, T, H, V), q.new_zeros(B, H, K, V), q.new_zeros(B, H, K), q.new_zeros(B, H)
    for b, h in _heads(B, H):
        C = _init(init, 0, b, h, (K, V), q).T
        n = _init(init, 1, b, h, (K,), q)
        m = _init(init, 2, b, h, (), q)
        for t in range(T):
            log_f = torch.nn.functional.logsigmoid(fg[b, t, h])
            m_new = torch.maximum(log_f + m, ig[b, t, h])
            f, i = torch.exp(log_f + m - m_new), torch.exp(ig[b, t, h] - m_new)
            kt, qt = scale * k[b, t, h], q[b, t, h]
            C = f * C + i * torch.outer(v[b, t, h], kt)
            n = f * n + i * kt
            m = m_new
            out[b, t, h] = (C @ qt) / (torch.maximum(torch.dot(n, qt).abs(), torch.exp(-m)) + eps)
        C_T[b, h], n_T[b, h], m_T[b, h] = C.T, n, m
    return {"h": out}, {"C": C_T, "n": n_T, "m": m_T}


# --- complex diagonal -----------------------------------------------------------------------------------

def lru(x: Tensor, nu_log: Tensor, theta_log: Tensor, B_re: Tensor, B_im: Tensor, C_re: Tensor, C_im: Tensor,
        d_skip: Tensor, *, init: tuple[Tensor, ...] | None = None) -> Result:
    """Orvieto et al. 2023, Appendix A (`forward_LRU`), with γ at its initial value sqrt(1 − |λ|²):
    λ = exp(−exp(ν) + i·exp(θ)), h_t = λ ⊙ h_{t-1} + (γ ⊙ B) x_t, y_t = Re(C h_t) + D ⊙ x_t."""
    Bsz, T, H, D = x.shape
    N = nu_log.shape[-1]
    y, h_T = x.new_zeros(Bsz, T, H, D), torch.zeros(Bsz, H, N, dtype=torch.complex128)
    for b, hd in _heads(Bsz, H):
        lam = torch.polar(torch.exp(-torch.exp(nu_log[hd])), torch.exp(theta_log[hd]))
        gamma = torch.sqrt(1 - lam.abs() ** 2)
        B_norm = torch.complex(B_re[hd], B_im[hd]) * gamma[:, None]
        C = torch.complex(C_re[hd], C_im[hd])
        state = _init(init, 0, b, hd, (N,), x, complex_=True)
        for t in range(T):
            state = lam * state + B_norm @ x[b, t, hd].to(torch.complex128)
            y[b, t, hd] = (C @ state).real + d_skip[hd] * x[b, t, hd]
        h_T[b, hd] = state
    return {"y": y}, {"h": h_T}


def s5(u: Tensor, lam_re: Tensor, lam_im: Tensor, log_step: Tensor, B_re: Tensor, B_im: Tensor, C_re: Tensor,
       C_im: Tensor, d_skip: Tensor, *, init: tuple[Tensor, ...] | None = None) -> Result:
    """Smith et al. 2023, eq. (6), zero-order hold: Λ̄ = exp(ΛΔ), B̄ = Λ⁻¹(Λ̄ − I) B̃,
    x_k = Λ̄ x_{k-1} + B̄ u_k, y_k = Re(C̃ x_k) + D u_k."""
    Bsz, T, H, D = u.shape
    N = lam_re.shape[-1]
    y, x_T = u.new_zeros(Bsz, T, H, D), torch.zeros(Bsz, H, N, dtype=torch.complex128)
    for b, h in _heads(Bsz, H):
        Lam = torch.complex(lam_re[h], lam_im[h])
        Lam_bar = torch.exp(Lam * torch.exp(log_step[h]))
        B_bar = ((Lam_bar - 1) / Lam)[:, None] * torch.complex(B_re[h], B_im[h])
        C = torch.complex(C_re[h], C_im[h])
        x = _init(init, 0, b, h, (N,), u, complex_=True)
        for t in range(T):
            x = Lam_bar * x + B_bar @ u[b, t, h].to(torch.complex128)
            y[b, t, h] = (C @ x).real + d_skip[h] * u[b, t, h]
        x_T[b, h] = x
    return {"y": y}, {"x": x_T}


def s4d(u: Tensor, log_dt: Tensor, log_A_real: Tensor, A_imag: Tensor, C_re: Tensor, C_im: Tensor, d_skip: Tensor,
        *, init: tuple[Tensor, ...] | None = None) -> Result:
    """Gu et al. 2022, ZOH, one N-dim diagonal SSM per channel d (B absorbed into C):
    A = −exp(A_re_log) + i A_im, Ā = exp(Δ_d A), x ← Ā x + (Ā − 1)/A · u_d, y_d = 2 Re(Σ_n C x) + D_d u_d."""
    Bsz, T, H, D = u.shape
    N = log_A_real.shape[-1]
    y, x_T = u.new_zeros(Bsz, T, H, D), torch.zeros(Bsz, H, D, N, dtype=torch.complex128)
    for b, h in _heads(Bsz, H):
        states = _init(init, 0, b, h, (D, N), u, complex_=True)
        for d in range(D):
            A = torch.complex(-torch.exp(log_A_real[h, d]), A_imag[h, d])
            A_bar = torch.exp(torch.exp(log_dt[h, d]) * A)
            C = torch.complex(C_re[h, d], C_im[h, d])
            x = states[d]
            for t in range(T):
                x = A_bar * x + (A_bar - 1) / A * u[b, t, h, d]
                y[b, t, h, d] = 2 * (C * x).sum().real + d_skip[h, d] * u[b, t, h, d]
            x_T[b, h, d] = x
    return {"y": y}, {"x": x_T}


def gateloop(q: Tensor, k: Tensor, v: Tensor, g: Tensor, theta: Tensor, *,
             init: tuple[Tensor, ...] | None = None) -> Result:
    """Katsch 2023, eq. (3): S_t = diag(a_t) S_{t-1} + k_t v_tᵀ with a_t = |a_t| e^{iθ_t}, |a_t| = exp(g_t),
    o_t = Re(q_tᵀ S_t)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    o, S_T = q.new_zeros(B, T, H, V), torch.zeros(B, H, K, V, dtype=torch.complex128)
    for b, h in _heads(B, H):
        S = _init(init, 0, b, h, (K, V), q, complex_=True)
        for t in range(T):
            a = torch.polar(torch.exp(g[b, t, h]), theta[b, t, h])
            S = a[:, None] * S + torch.outer(k[b, t, h], v[b, t, h]).to(torch.complex128)
            o[b, t, h] = (q[b, t, h].to(torch.complex128) @ S).real
        S_T[b, h] = S
    return {"o": o}, {"S": S_T}


# --- issue 16: the newer literature ----------------------------------------------------------------------

def comba(q: Tensor, k: Tensor, v: Tensor, p: Tensor, g: Tensor, beta: Tensor, *, scale: float | None = None,
          init: tuple[Tensor, ...] | None = None) -> Result:
    """Hu et al. 2025 (Comba), V×K state, the closed-loop correction written as a prediction error:
    S' = α_t S_{t-1},  e_t = v_t − S' p_t,  S_t = S' + β_t e_t k_tᵀ,  o_t = scale · S_t q_t,  α_t = exp(g_t)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = _default_scale(K, scale)
    o, S_T = q.new_zeros(B, T, H, V), q.new_zeros(B, H, K, V)
    for b, h in _heads(B, H):
        S = _init(init, 0, b, h, (K, V), q).T
        for t in range(T):
            S = math.exp(float(g[b, t, h])) * S
            error = v[b, t, h] - S @ p[b, t, h]
            S = S + beta[b, t, h] * torch.outer(error, k[b, t, h])
            o[b, t, h] = scale * (S @ q[b, t, h])
        S_T[b, h] = S.T
    return {"o": o}, {"S": S_T}


def rwkv5(r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, *, scale: float | None = None,
          init: tuple[Tensor, ...] | None = None) -> Result:
    """Peng et al. 2024 (Eagle), eq. (11)-(13) per channel pair (i, j), with decay exp(w) per head (w = −exp(ω)):
    wkv_t[i, j] = u_i k_t[i] v_t[j] + s[i, j],  o_t[j] = scale · Σ_i r_t[i] wkv_t[i, j],
    s[i, j] ← w_i s[i, j] + k_t[i] v_t[j]."""
    B, T, H, K = r.shape
    V = v.shape[-1]
    scale = _default_scale(K, scale)
    o, S_T = r.new_zeros(B, T, H, V), r.new_zeros(B, H, K, V)
    for b, h in _heads(B, H):
        s = _init(init, 0, b, h, (K, V), r)
        decay = [math.exp(float(w[h, i])) for i in range(K)]
        for t in range(T):
            new = s.clone()
            for i in range(K):
                for j in range(V):
                    kv = float(k[b, t, h, i] * v[b, t, h, j])
                    o[b, t, h, j] += scale * float(r[b, t, h, i]) * (float(u[h, i]) * kv + float(s[i, j]))
                    new[i, j] = decay[i] * float(s[i, j]) + kv
            s = new
        S_T[b, h] = s
    return {"o": o}, {"S": S_T}


def hawk(x: Tensor, gate_a: Tensor, gate_x: Tensor, a_param: Tensor, *,
         init: tuple[Tensor, ...] | None = None) -> Result:
    """De et al. 2024 (Griffin), eq. (1)-(4), in recurrentgemma's parameterisation a = σ(−a_param):
    r_t = σ(W_a x), i_t = σ(W_x x), a_t = a^(c r_t) with c = 8, h_t = a_t ⊙ h_{t-1} + sqrt(1 − a_t²) ⊙ (i_t ⊙ x_t)."""
    B, T, H, D = x.shape
    o, h_T = x.new_zeros(B, T, H, D), x.new_zeros(B, H, D)
    for b, hd in _heads(B, H):
        state = _init(init, 0, b, hd, (D,), x)
        a = _sigmoid(-a_param[hd])
        for t in range(T):
            a_t = a ** (8.0 * _sigmoid(gate_a[b, t, hd]))
            i_t = _sigmoid(gate_x[b, t, hd])
            state = a_t * state + torch.sqrt(1 - a_t * a_t) * (i_t * x[b, t, hd])
            o[b, t, hd] = state
        h_T[b, hd] = state
    return {"o": o}, {"h": h_T}


def mingru(k: Tensor, h_tilde: Tensor, *, init: tuple[Tensor, ...] | None = None) -> Result:
    """Feng et al. 2024, Section 3.1 (sequential minGRU): z_t = σ(k_t), h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t."""
    B, T, H, D = k.shape
    o, h_T = k.new_zeros(B, T, H, D), k.new_zeros(B, H, D)
    for b, hd in _heads(B, H):
        state = _init(init, 0, b, hd, (D,), k)
        for t in range(T):
            z = _sigmoid(k[b, t, hd])
            state = (1 - z) * state + z * h_tilde[b, t, hd]
            o[b, t, hd] = state
        h_T[b, hd] = state
    return {"o": o}, {"h": h_T}

def mamba3(x: Tensor, dt: Tensor, A: Tensor, B_re: Tensor, B_im: Tensor, C_re: Tensor, C_im: Tensor, theta: Tensor,
           lam: Tensor, D: Tensor, dt_bias: Tensor, *, init: tuple[Tensor, ...] | None = None) -> Result:
    """Lahoti et al. 2026 (Mamba-3, SISO), in the paper's real form: a 2N×P state whose row pairs (2i, 2i+1) are
    rotated by R(Δ_t θ_t[i]) = [[cos, −sin], [sin, cos]], B_t, C_t ∈ R^{2N} with pairs (B_re[i], B_im[i]):

    h_t = α_t R_t h_{t-1} + β_t R_t U_{t-1} + γ_t B_t x_tᵀ,  U_t = B_t x_tᵀ (U_{-1} = 0),  y_t = h_tᵀ C_t + D x_t,
    α_t = exp(Δ_t A_t), β_t = (1 − λ_t) Δ_t α_t, γ_t = λ_t Δ_t, Δ_t = softplus(dt_t + dt_bias), A_t < 0 per token
    and head (data-dependent, as mamba_ssm's Mamba3 layer computes it from its input projection).
    The spec's complex state is this one's pairs as (real, imaginary) parts; its hidden state carries U_{t-1}.
    """
    Bsz, T, H, P = x.shape
    N = B_re.shape[-1]

    def real(z: Tensor) -> Tensor:  # complex N×P -> real 2N×P, pairs interleaved
        return torch.stack([z.real, z.imag], dim=1).reshape(2 * N, P)

    def cplx(r: Tensor) -> Tensor:
        return torch.complex(r[0::2], r[1::2])

    y = x.new_zeros(Bsz, T, H, P)
    h_T, u_T = (torch.zeros(Bsz, H, N, P, dtype=torch.complex128) for _ in range(2))
    for b, hh in _heads(Bsz, H):
        h = real(_init(init, 0, b, hh, (N, P), x, complex_=True))
        u = real(_init(init, 1, b, hh, (N, P), x, complex_=True))
        for t in range(T):
            delta = _softplus(dt[b, t, hh] + dt_bias[hh])
            alpha = torch.exp(delta * A[b, t, hh])
            beta, gamma = (1 - lam[b, t, hh]) * delta * alpha, lam[b, t, hh] * delta
            R = torch.zeros(2 * N, 2 * N, dtype=x.dtype)
            for i in range(N):
                c, s = torch.cos(delta * theta[b, t, hh, i]), torch.sin(delta * theta[b, t, hh, i])
                R[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.stack([torch.stack([c, -s]), torch.stack([s, c])])
            Bt = torch.stack([B_re[b, t, hh], B_im[b, t, hh]], dim=1).reshape(2 * N)
            Ct = torch.stack([C_re[b, t, hh], C_im[b, t, hh]], dim=1).reshape(2 * N)
            h = alpha * (R @ h) + beta * (R @ u) + gamma * torch.outer(Bt, x[b, t, hh])
            u = torch.outer(Bt, x[b, t, hh])
            y[b, t, hh] = h.T @ Ct + D[hh] * x[b, t, hh]
        h_T[b, hh], u_T[b, hh] = cplx(h), cplx(u)
    return {"y": y}, {"h": h_T, "_prev_B_re_B_im_x": u_T}


def gsa(q: Tensor, k: Tensor, v: Tensor, s: Tensor, g: Tensor, *, scale: float | None = None,
        init: tuple[Tensor, ...] | None = None) -> Result:
    """Zhang et al. 2024 (Gated Slot Attention), eq. (8), in the paper's M×K and M×V slot layout:
    K̃_t = diag(α_t) K̃_{t-1} + s_t k_tᵀ,  Ṽ_t = diag(α_t) Ṽ_{t-1} + s_t v_tᵀ,  o_t = Ṽ_tᵀ softmax(scale · K̃_t q_t),
    α_t = exp(g_t), s_t = 1 − α_t in the paper (fla passes it apart). The softmax by its definition, exp over sum."""
    B, T, H, K = q.shape
    V, M = v.shape[-1], s.shape[-1]
    scale = _default_scale(K, scale)
    o, hk_T, hv_T = q.new_zeros(B, T, H, V), q.new_zeros(B, H, K, M), q.new_zeros(B, H, M, V)
    for b, h in _heads(B, H):
        Kt = _init(init, 0, b, h, (K, M), q).T
        Vt = _init(init, 1, b, h, (M, V), q)
        for t in range(T):
            alpha = torch.exp(g[b, t, h])
            Kt = alpha[:, None] * Kt + torch.outer(s[b, t, h], k[b, t, h])
            Vt = alpha[:, None] * Vt + torch.outer(s[b, t, h], v[b, t, h])
            logits = scale * (Kt @ q[b, t, h])
            weights = torch.exp(logits) / torch.exp(logits).sum()
            o[b, t, h] = Vt.T @ weights
        hk_T[b, h], hv_T[b, h] = Kt.T, Vt
    return {"o": o}, {"hk": hk_T, "hv": hv_T}


def based(q: Tensor, k: Tensor, v: Tensor, *, scale: float | None = None, use_norm: float = 1.0,
          init: tuple[Tensor, ...] | None = None) -> Result:
    """Arora et al. 2024 (Based), Section 3: linear attention with the Taylor feature map
    φ(x) = [1, x, vec(x xᵀ)/√2], so φ(q̃)ᵀφ(k) = 1 + q̃·k + (q̃·k)²/2 with q̃ = scale · q. The loop keeps the
    paper's running sums of φ(k_s) v_sᵀ (a (1 + K + K²) × V matrix) and of φ(k_s), and reads them with φ(q̃_t)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = _default_scale(K, scale)

    def phi(x: Tensor) -> Tensor:
        return torch.cat([x.new_ones(1), x, torch.outer(x, x).reshape(-1) / math.sqrt(2)])

    o = q.new_zeros(B, T, H, V)
    finals = {n: q.new_zeros(B, H, *s) for n, s in (("S0", (V,)), ("S1", (K, V)), ("S2", (K, K, V)), ("z0", ()),
                                                    ("z1", (K,)), ("z2", (K, K)))}
    for b, h in _heads(B, H):
        # the spec's initial states are the blocks of the paper's sums (the 1/√2 of φ folded in or out)
        kv, z = q.new_zeros(1 + K + K * K, V), q.new_zeros(1 + K + K * K)
        if init is not None:
            kv = torch.cat([init[0][b, h][None], init[1][b, h], init[2][b, h].reshape(K * K, V) / math.sqrt(2)])
            if use_norm:
                z = torch.cat([init[3][b, h].reshape(1), init[4][b, h], init[5][b, h].reshape(-1) / math.sqrt(2)])
        for t in range(T):
            fk = phi(k[b, t, h])
            kv = kv + torch.outer(fk, v[b, t, h])
            z = z + fk
            fq = phi(scale * q[b, t, h])
            o[b, t, h] = fq @ kv / (fq @ z + 1e-6) if use_norm else fq @ kv
        finals["S0"][b, h], finals["S1"][b, h] = kv[0], kv[1:1 + K]
        finals["S2"][b, h] = kv[1 + K:].reshape(K, K, V) * math.sqrt(2)
        finals["z0"][b, h], finals["z1"][b, h] = z[0], z[1:1 + K]
        finals["z2"][b, h] = z[1 + K:].reshape(K, K) * math.sqrt(2)
    if not use_norm:
        finals = {n: finals[n] for n in ("S0", "S1", "S2")}
    return {"o": o}, finals


def linoss(u: Tensor, A_diag: Tensor, steps: Tensor, B_re: Tensor, B_im: Tensor, C_re: Tensor, C_im: Tensor,
           D_skip: Tensor, *, init: tuple[Tensor, ...] | None = None) -> Result:
    """Rusch & Rus 2025 (LinOSS-IMEX), eq. (6) as the paper writes it: per channel i a 2x2 transition on x = (z, y),
    x_t = M_i x_{t-1} + F_t,  M_i = [[1, −Δt_i A_i], [Δt_i, 1 − Δt_i² A_i]],  F_t = [Δt_i (B u_t)_i, Δt_i² (B u_t)_i],
    A = relu(A_diag), Δt = sigmoid(steps), o_t = Re(C y_t) + D ⊙ u_t. The state is x = (z, y) per channel:
    [2, P], z its row 0."""
    Bsz, T, H, D = u.shape
    P = A_diag.shape[-1]
    o = u.new_zeros(Bsz, T, H, D)
    h_T = torch.zeros(Bsz, H, 2, P, dtype=torch.complex128)
    for b, h in _heads(Bsz, H):
        a, dt = torch.relu(A_diag[h]), _sigmoid(steps[h])
        Bc, Cc = torch.complex(B_re[h], B_im[h]), torch.complex(C_re[h], C_im[h])
        x0 = _init(init, 0, b, h, (2, P), u, True)
        x = [x0[:, i] for i in range(P)]
        for t in range(T):
            bu = Bc @ u[b, t, h].to(torch.complex128)
            for i in range(P):
                M = torch.tensor([[1.0, -dt[i] * a[i]], [dt[i], 1.0 - dt[i] ** 2 * a[i]]], dtype=torch.complex128)
                x[i] = M @ x[i] + torch.stack([dt[i] * bu[i], dt[i] ** 2 * bu[i]])
            y = torch.stack([xi[1] for xi in x])
            o[b, t, h] = (Cc @ y).real + D_skip[h] * u[b, t, h]
        h_T[b, h] = torch.stack(x, dim=1)
    return {"o": o}, {"h": h_T}
