"""A hand-written Gated Linear Attention, one token at a time, to property-test against specs/gla.rec.

    recurgen verify gla --against examples/gla_by_hand.py:gla_loop          # exit 0: matches the oracle
    recurgen verify gla --against examples/gla_by_hand.py:gla_loop_slip     # exit 1: a shrunk counterexample

Any kernel with the spec's public call can be checked the same way (docs/testing.md): here the "kernel" is a
plain torch loop, and `gla_loop_slip` has the kind of bug a kernel writer makes: the decay of the previous
token (`g[:, t - 1]`), which Python's negative indexing even makes work for the first token.
"""

from __future__ import annotations

import torch


def _gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, scale: float | None,
         initial_state: torch.Tensor | None, output_final_state: bool, slip: bool
         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    S = q.new_zeros(B, H, K, V, dtype=torch.float32) if initial_state is None else initial_state.float()
    outs = []
    for t in range(T):
        decay = g[:, t - 1] if slip else g[:, t]  # [B, H, K]
        S = decay.float().exp().unsqueeze(-1) * S + k[:, t].float().unsqueeze(-1) * v[:, t].float().unsqueeze(-2)
        outs.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t].float(), S))
    o = torch.stack(outs, dim=1) if outs else v.new_zeros(B, 0, H, V, dtype=torch.float32)
    return o.to(q.dtype), (S if output_final_state else None)


def gla_loop(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, scale: float | None = None,
             initial_state: torch.Tensor | None = None, output_final_state: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """S_t = diag(exp(g_t)) S_{t-1} + k_t v_tᵀ, o_t = scale q_tᵀ S_t; q, k, g: [B, T, H, K], v: [B, T, H, V]."""
    return _gla(q, k, v, g, scale, initial_state, output_final_state, slip=False)


def gla_loop_slip(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, scale: float | None = None,
                  initial_state: torch.Tensor | None = None, output_final_state: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`gla_loop` with a one-token indexing slip: token t decays the state by g_(t-1)."""
    return _gla(q, k, v, g, scale, initial_state, output_final_state, slip=True)
