"""The public call a spec declares: library names (`api`), optional tensors, `given`, `layout`, switches.

Each feature is checked on the generated function itself (run in the interpreter at tiny sizes) and on the
oracle (`recurgen.reference`), which must take the same call.
"""

from __future__ import annotations

import inspect

import pytest
import torch

import recurgen
from recurgen.signature import python_params
from tests.helpers import close

B, T, H, K, V = 2, 4, 2, 4, 3


def _params(rec: recurgen.Recurrence) -> list[str]:
    return list(inspect.signature(getattr(rec.module, f"fused_recurrent_{rec.name}")).parameters)


TOL = {"tol": 1e-5, "floor": 1.0}  # fp32 against fp32 or the oracle


def _qkv(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(B, T, H, K, generator=gen), torch.randn(B, T, H, K, generator=gen),
            torch.randn(B, T, H, V, generator=gen)]


# --- optional tensors ------------------------------------------------------------------------------------
def test_simple_gla_takes_g_or_g_gamma() -> None:
    rec = recurgen.load("simple_gla")
    assert _params(rec)[:7] == ["q", "k", "v", "g", "g_gamma", "scale", "initial_state"]
    q, k, v = _qkv()
    g, g_gamma = -torch.rand(B, T, H), -torch.rand(H)
    # an omitted gate is the gate 0: the same numbers as passing zeros
    close("out", rec(q, k, v, g=g)[0], rec(q, k, v, g, torch.zeros(H))[0], **TOL)
    close("out", rec(q, k, v, g_gamma=g_gamma)[0], rec(q, k, v, torch.zeros(B, T, H), g_gamma)[0], **TOL)
    # a fixed per-head decay is a per-token one that does not change
    close("out", rec(q, k, v, g_gamma=g_gamma)[0], rec(q, k, v, g=g_gamma.expand(B, T, H))[0], **TOL)
    o, s = rec(q, k, v, g_gamma=g_gamma, output_final_state=True)
    o_ref, s_ref = rec.reference(q, k, v, g_gamma=g_gamma, output_final_state=True)
    close("out", o, o_ref, **TOL)
    close("out", s, s_ref, **TOL)


def test_mamba2_follows_mamba_ssm() -> None:
    rec = recurgen.load("mamba2")
    assert python_params(rec.spec)[:10] == ["x", "dt", "A", "B", "C", "D=None", "z=None", "dt_bias=None",
                                            "initial_states=None", "return_final_states=False"]
    assert {"initial_state", "output_final_state", "chunk_size", "cu_seqlens"} <= set(_params(rec))
    gen = torch.Generator().manual_seed(1)
    P, N = 3, 2
    x, z = torch.randn(B, T, H, P, generator=gen), torch.randn(B, T, H, P, generator=gen)
    dt, Bm, C = torch.randn(B, T, H, generator=gen), torch.randn(B, T, H, N, generator=gen), \
        torch.randn(B, T, H, N, generator=gen)
    A, D, dt_bias, h0 = -torch.rand(H), torch.randn(H), torch.randn(H), torch.randn(B, H, P, N)
    # without z there is no gate: the spec as it reads with the gate line deleted
    ungated = recurgen.compile(rec.source.text.replace(
        "(h @ C + D * x) * (given(z) * silu(z) + 1 - given(z))", "h @ C + D * x"), "ungated.rec")
    y, h = rec(x, dt, A, Bm, C, D=D, dt_bias=dt_bias, initial_states=h0, return_final_states=True)
    y_ref, h_ref = ungated(x, dt, A, Bm, C, D, torch.zeros_like(x), dt_bias, initial_state=h0,
                           output_final_state=True)
    close("out", y, y_ref, **TOL)
    close("out", h, h_ref, **TOL)
    # with z the output is gated by silu(z); mamba_ssm's and recurgen's names for the same argument agree
    y_z, _ = rec(x, dt, A, Bm, C, D=D, z=z, dt_bias=dt_bias, initial_state=h0, chunk_size=64)
    close("out", y_z, y * torch.nn.functional.silu(z), **TOL)
    close("out", y_z, rec.reference(x, dt, A, Bm, C, D=D, z=z, dt_bias=dt_bias, initial_states=h0)[0], **TOL)
    with pytest.raises(TypeError, match="same argument"):
        rec(x, dt, A, Bm, C, initial_state=h0, initial_states=h0)


# --- layout [B, T] -----------------------------------------------------------------------------------------
def test_hgrn_without_heads() -> None:
    rec = recurgen.load("hgrn")
    gen = torch.Generator().manual_seed(2)
    D = 5
    x, g, h0 = torch.randn(B, T, D, generator=gen), -torch.rand(B, T, D, generator=gen), torch.randn(B, D)
    o, h = rec(x, g, initial_state=h0, output_final_state=True)
    assert o.shape == (B, T, D)
    assert h.shape == (B, D)
    # the same as one head of the headed layout, which the call still accepts
    o_h, h_h = rec(x.unsqueeze(2), g.unsqueeze(2), initial_state=h0.unsqueeze(1), output_final_state=True)
    close("out", o, o_h.squeeze(2), **TOL)
    close("out", h, h_h.squeeze(1), **TOL)
    o_ref, h_ref = rec.reference(x, g, initial_state=h0, output_final_state=True)
    close("out", o, o_ref, **TOL)
    close("out", h, h_ref, **TOL)
    state = h0.clone()
    steps = [rec.step(x[:, t], g[:, t], state) for t in range(T)]
    close("out", torch.stack(steps, dim=1), o, **TOL)
    close("out", state, h, **TOL)


# --- switches ----------------------------------------------------------------------------------------------
def test_linear_attn_normalize_is_a_variant() -> None:
    rec = recurgen.load("linear_attn")
    assert [s.name for s in rec.spec.states] == ["S"]  # the default variant has no key sum
    assert _params(rec)[:7] == ["q", "k", "v", "scale", "initial_state", "output_final_state", "normalize"]
    q, k, v = (torch.nn.functional.elu(x) + 1 for x in _qkv(3))
    o, (S, z) = rec(q, k, v, output_final_state=True, normalize=True)
    assert z.shape == (B, H, K)
    close("out", z, k.sum(1), **TOL)
    scale = K ** -0.5
    num = scale * torch.einsum("bthk,bthkv->bthv", q, torch.cumsum(torch.einsum("bthk,bthv->bthkv", k, v), 1))
    close("out", o, num / (scale * (q * torch.cumsum(k, 1)).sum(-1, keepdim=True) + 1e-10), **TOL)
    close("out", rec(q, k, v, None, None, False, True)[0], o, **TOL)  # positionally, where fla has it
    close("out", rec.reference(q, k, v, normalize=True)[0], o, **TOL)
    _o0, S0 = rec(q, k, v, output_final_state=True)  # normalize=False: one state, as in fla
    assert isinstance(S0, torch.Tensor)
    close("out", S0, S, **TOL)
    with pytest.raises(ValueError, match="compiled for normalize=False"):
        rec.module.fused_recurrent_linear_attn(q, k, v, normalize=True)


# --- renamed tensors ---------------------------------------------------------------------------------------
def test_a_renamed_tensor_is_called_by_the_library_name() -> None:
    rec = recurgen.compile('recurrence gla_gk "GLA with the gate named as fused_recurrent_gla names it"\n'
                           "input  q: [K], k: [K], v: [V], g: [K] logdecay\nstate  S: [K, V]\n"
                           "update S = exp(g) * S + outer(k, v)\noutput o: [V] = scale * (q @ S)\n"
                           "api    fused_recurrent_gla(q, k, v, gk = g)\n", "gla_gk.rec")
    assert _params(rec)[:4] == ["q", "k", "v", "gk"]
    q, k, v = _qkv(4)
    gk = -torch.rand(B, T, H, K)
    close("out", rec(q, k, v, gk=gk)[0], recurgen.load("gla")(q, k, v, g=gk)[0], **TOL)
    close("out", rec.reference(q=q, k=k, v=v, gk=gk)[0], rec(q, k, v, gk)[0], **TOL)
