"""The chunked DPLR core (diagonal plus rank-1 transition), templates/chunk/dplr.py.jinja, under the interpreter.

Every case runs forward (o, final state) and backward (all gradients) against a float64 per-token loop of
the canonical recurrence, differentiated by torch.autograd:
    S_t = diag(exp(g_t)) S_{t-1} + u_t (w_t^T S_{t-1}) + k_t v_t^T,   o_t = q_t^T S_t
with general u, w (random, RWKV7-like u = kappa * sigmoid, w = -kappa, and the gated delta rule's
u = -beta alpha . k, w = k). The last test compiles every kernel for sm_80 and sm_90 in a subprocess
(compiling needs Triton without the interpreter).
"""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

from recurgen.codegen.chunk_core import load_core

from .chunk_loops import TOL, check_gpu_compile, close, close_outputs, run_loop

pytestmark = pytest.mark.interpret


@pytest.fixture(scope="module")
def mod() -> ModuleType:
    return load_core("dplr", "dplr_test")


def loop(q, k, v, u, w, g, h0, cu_seqlens):
    """Per-token float64 loop of the canonical recurrence; returns o [B, T, H, V] and final states [N, H, K, V]."""
    k, v, u, w, g = (x.double() for x in (k, v, u, w, g))

    def step(S: torch.Tensor, b: int, t: int) -> torch.Tensor:
        wS = torch.einsum("hk,hkv->hv", w[b, t], S)
        S = S * g[b, t].exp()[:, :, None] + u[b, t][:, :, None] * wS[:, None, :]
        return S + k[b, t][:, :, None] * v[b, t][:, None, :]
    return run_loop(q, v, h0, cu_seqlens, step)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def _inputs(B: int, T: int, H: int, K: int, V: int, *, dtype=torch.float32, seed: int = 0, kind: str = "random",
            g_values: tuple[float, float] | None = None):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen)
    k = _unit(torch.randn(B, T, H, K, generator=gen))
    v = torch.randn(B, T, H, V, generator=gen)
    if g_values is None:
        g = -2 * torch.rand(B, T, H, K, generator=gen)  # decays from 1 to e^-2 per token
    else:  # a mix of the strongest and the weakest decays
        g = torch.where(torch.rand(B, T, H, K, generator=gen) < 0.5, g_values[0], g_values[1])
        g = g * (1 + 0.1 * torch.rand(B, T, H, K, generator=gen))
    if kind == "random":  # general directions, |u| |w| <= 0.9
        u = _unit(torch.randn(B, T, H, K, generator=gen)) * 0.9 * torch.rand(B, T, H, 1, generator=gen)
        w = _unit(torch.randn(B, T, H, K, generator=gen))
    elif kind == "rwkv7":  # a = -kappa, b = kappa * sigmoid(..), kappa unit
        kap = _unit(torch.randn(B, T, H, K, generator=gen))
        u = kap * torch.sigmoid(torch.randn(B, T, H, K, generator=gen))
        w = -kap
    else:  # "gated_delta": diag(alpha)(I - beta k k^T): u = -beta alpha . k, w = k
        beta = torch.rand(B, T, H, 1, generator=gen)
        u = -beta * g.exp() * k
        w = k
    return q.to(dtype), k.to(dtype), v.to(dtype), u.to(dtype), w.to(dtype), g


def check(mod: ModuleType, *, B: int = 2, T: int = 45, H: int = 2, K: int = 12, V: int = 10, chunk_size: int = 16,
          with_h0: bool = True, final: bool = True, cu_seqlens: torch.Tensor | None = None, dtype=torch.float32,
          seed: int = 0, tol: float = TOL, backward: bool = True, scale: float = 1.0, low: bool = False,
          **kw) -> None:
    q, k, v, u, w, g = _inputs(B, T, H, K, V, dtype=dtype, seed=seed, **kw)
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    h0 = torch.randn(N, H, K, V, generator=torch.Generator().manual_seed(seed + 1)) if with_h0 else None
    o, ht = mod.dplr_test_fwd(q, k, v, u, w, g, h0, cu_seqlens, final, chunk_size=chunk_size, scale=scale, low=low)
    leaves = [x.double().requires_grad_() for x in (q, k, v, u, w, g)]
    h0l = None if h0 is None else h0.double().requires_grad_()
    ro, rht = loop(*leaves, h0l, cu_seqlens)
    ro = scale * ro
    close_outputs(o, ht, ro, rht, (B, T, H, V), final, tol, o_dtype=dtype if low else torch.float32)
    if not backward:
        return
    gen = torch.Generator().manual_seed(seed + 2)
    do = torch.randn(ro.shape, generator=gen, dtype=torch.float64).to(dtype)
    dht = torch.randn(rht.shape, generator=gen, dtype=torch.float64) if final else None
    loss = (ro * do.double()).sum() + ((rht * dht).sum() if final else 0.0)
    if T > 0:
        loss.backward()
    grads = mod.dplr_test_bwd(q, k, v, u, w, g, h0, cu_seqlens, do, None if dht is None else dht.float(),
                              chunk_size=chunk_size, scale=scale)
    names = ("dq", "dk", "dv", "du", "dw", "dg", "dh0")
    for name, got, ref, x in zip(names, grads, [*leaves, h0l], (q, k, v, u, w, g, h0), strict=True):
        if ref is None:
            assert got is None, name
            continue
        want = ref.grad if ref.grad is not None else torch.zeros_like(ref)
        if name == "dh0" and T == 0 and dht is not None:
            want = dht.double()
        # gradients in their input's dtype (g is fp32 here; dh0 fp32)
        close(name, got, want.detach(), tol, dtype=torch.float32 if name in ("dg", "dh0") else x.dtype)


def test_epilogue_scale(mod: ModuleType) -> None:
    # the readout's scale in the o kernel's epilogue (o in q's dtype); do scaled as the backward loads it
    check(mod, B=1, T=33, H=1, K=16, V=16, chunk_size=16, seed=5, scale=0.37, low=True)


def test_t_not_multiple_of_chunk_with_h0(mod: ModuleType) -> None:
    check(mod, T=45, chunk_size=16, with_h0=True, final=True)


def test_chunk_64_no_initial_state(mod: ModuleType) -> None:
    check(mod, B=1, T=70, chunk_size=64, with_h0=False, final=False, seed=1)


def test_varlen(mod: ModuleType) -> None:
    cu = torch.tensor([0, 5, 40, 70], dtype=torch.int32)
    check(mod, B=1, T=70, chunk_size=16, with_h0=True, final=True, cu_seqlens=cu, seed=2)


def test_v1(mod: ModuleType) -> None:
    check(mod, B=1, T=37, H=2, K=7, V=1, chunk_size=16, seed=3)


def test_several_k_and_v_tiles(mod: ModuleType) -> None:
    # K = 40: two K tiles in the per-chunk kernels, three in bwd_k; V = 80: two V tiles of 64 in the per-chunk
    # kernels (summed in order inside bwd_a and bwd_w) and in the state passes
    check(mod, B=1, T=50, H=1, K=40, V=80, chunk_size=32, seed=7)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs(mod: ModuleType, dtype: torch.dtype) -> None:
    # the operands that only enter dots (B, Mu, Mk, T Wd, Qg, Ue, Ke, P, dR, the pair gradients) are stored in the
    # input dtype, as on a GPU: half-precision rounding of the intermediates
    check(mod, B=1, T=33, H=1, K=16, V=16, chunk_size=16, dtype=dtype, seed=4, tol=2.0 ** -7)


def test_no_decay(mod: ModuleType) -> None:
    # g = None: no decay, and no dg
    q, k, v, u, w, _ = _inputs(1, 20, 1, 8, 8, seed=8)
    o, ht = mod.dplr_test_fwd(q, k, v, u, w, None, None, None, True, chunk_size=16)
    leaves = [x.double().requires_grad_() for x in (q, k, v, u, w)]
    ro, rht = loop(*leaves, torch.zeros(q.shape, dtype=torch.float64), None, None)
    close("o", o, ro.detach(), TOL)
    close("ht", ht, rht.detach(), TOL)
    (ro.sum() + rht.sum()).backward()
    grads = mod.dplr_test_bwd(q, k, v, u, w, None, None, None, torch.ones_like(o), torch.ones_like(ht), chunk_size=16)
    assert grads[5] is None
    assert grads[6] is None
    for name, got, ref in zip(("dq", "dk", "dv", "du", "dw"), grads[:5], leaves, strict=True):
        close(name, got, ref.grad, TOL)


def test_empty_sequence(mod: ModuleType) -> None:
    check(mod, B=2, T=0, chunk_size=16, with_h0=True, final=True)
    check(mod, B=2, T=0, chunk_size=16, with_h0=False, final=False)


@pytest.mark.parametrize("kind", ["rwkv7", "gated_delta"])
def test_structured_transitions(mod: ModuleType, kind: str) -> None:
    check(mod, B=1, T=40, H=2, K=16, V=12, chunk_size=16, seed=6, kind=kind)


def test_bad_chunk_size(mod: ModuleType) -> None:
    q, k, v, u, w, g = _inputs(1, 4, 1, 4, 4)
    with pytest.raises(ValueError, match="chunk_size"):
        mod.dplr_test_fwd(q, k, v, u, w, g, None, None, False, chunk_size=24)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["random", "rwkv7"])
def test_long_sequence_numerics(mod: ModuleType, kind: str) -> None:
    """T = 4096 with decays of e^-5 and e^-1e-4 per token mixed: finite and within fp32 tolerance."""
    check(mod, B=1, T=4096, H=1, K=16, V=16, chunk_size=64, with_h0=True, final=True, seed=5,
          g_values=(-5.0, -1e-4), kind=kind)


_COMPILE = r"""
import json, os, sys
os.environ["TRITON_INTERPRET"] = "0"
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from recurgen.codegen.chunk_core import load_core
from recurgen.gpu import _usage

mod = load_core("dplr", "dplr_gpu")
rows = []
for arch, dot32 in ((80, False), (90, False), (90, True)):
    for fn, sig, consts, attrs in mod.dplr_gpu_compile_specs(128, 128, 64, "bf16", dot32):
        for warps in mod._CHUNK_WARPS:
            c = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs),
                               target=GPUTarget("cuda", arch, 32),
                               options={"num_warps": warps, "num_stages": 1})
            reg, local, stack, shared = _usage(c.asm["cubin"])
            rows.append([fn.__name__, arch, dot32, warps, reg, local, stack, max(shared, int(c.metadata.shared))])
            if local == 0 and stack == 0:
                break  # the autotuner has a configuration that does not spill
print(json.dumps(rows))
"""


@pytest.mark.slow
def test_compiles_for_gpus_without_spills() -> None:
    """Every kernel at K = V = 128, chunk 64, for sm_80 and sm_90 (both dot operand settings on sm_90): some
    warp configuration the autotuner tries compiles without register spills."""
    check_gpu_compile(_COMPILE, [], 8)
