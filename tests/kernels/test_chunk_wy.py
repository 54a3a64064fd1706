"""The chunked WY (delta rule / Householder) core, templates/chunk/wy.py.jinja, under the Triton interpreter.

Every case runs forward (o, final state) and backward (all gradients) against a float64 per-token loop of
the canonical recurrence, differentiated by torch.autograd:
    S_t = (I - beta_t k_t k_t^T) diag(exp(g_t)) S_{t-1} + beta_t k_t v_t^T,   o_t = q_t^T S_t
for the three gates (none: DeltaNet; scalar: Gated DeltaNet; channel: KDA). The last test compiles every
kernel for sm_80 and sm_90 in a subprocess (compiling needs Triton without the interpreter).
"""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

from recurgen.codegen.chunk_core import load_core

from .chunk_loops import TOL, check_gpu_compile, close, close_outputs, run_loop

pytestmark = pytest.mark.interpret
GATES = ("none", "scalar", "channel")


@pytest.fixture(scope="module", params=GATES)
def core(request: pytest.FixtureRequest) -> tuple[str, ModuleType]:
    return request.param, load_core("wy", "wy_test", decay=request.param)


def loop(q, k, v, beta, g, h0, cu_seqlens, gate: str):
    """Per-token float64 loop of the canonical recurrence; returns o [B, T, H, V] and final states [N, H, K, V]."""
    k, v, beta = (x.double() for x in (k, v, beta))
    g = None if g is None else g.double()

    def step(S: torch.Tensor, b: int, t: int) -> torch.Tensor:
        if gate == "scalar":
            S = S * g[b, t].exp()[:, None, None]
        elif gate == "channel":
            S = S * g[b, t].exp()[:, :, None]
        kt = k[b, t]
        kS = torch.einsum("hk,hkv->hv", kt, S)
        return S + beta[b, t][:, None, None] * kt[:, :, None] * (v[b, t] - kS)[:, None, :]
    return run_loop(q, v, h0, cu_seqlens, step)


def _inputs(gate: str, B: int, T: int, H: int, K: int, V: int, *, dtype=torch.float32, seed: int = 0,
            normalise: bool = True, g_values: tuple[float, float] | None = None):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen)
    k = torch.randn(B, T, H, K, generator=gen)
    if normalise:
        k = torch.nn.functional.normalize(k, dim=-1)
    v = torch.randn(B, T, H, V, generator=gen)
    beta = 2 * torch.rand(B, T, H, generator=gen)
    shape = {"none": None, "scalar": (B, T, H), "channel": (B, T, H, K)}[gate]
    g = None
    if shape is not None:
        if g_values is None:
            g = -2 * torch.rand(shape, generator=gen)  # decays from 1 to e^-2 per token
        else:  # a mix of the strongest and the weakest decays
            g = torch.where(torch.rand(shape, generator=gen) < 0.5, g_values[0], g_values[1])
            g = g * (1 + 0.1 * torch.rand(shape, generator=gen))
    return q.to(dtype), k.to(dtype), v.to(dtype), beta.to(dtype), g


def check(gate: str, mod: ModuleType, *, B: int = 2, T: int = 45, H: int = 2, K: int = 12, V: int = 10,
          chunk_size: int = 16, with_h0: bool = True, final: bool = True, cu_seqlens: torch.Tensor | None = None,
          dtype=torch.float32, seed: int = 0, tol: float = TOL, mutate=None, scale: float = 1.0, low: bool = False,
          **kw) -> None:
    q, k, v, beta, g = _inputs(gate, B, T, H, K, V, dtype=dtype, seed=seed, **kw)
    if mutate is not None:
        q, k, v, beta, g = mutate(q, k, v, beta, g)
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    h0 = torch.randn(N, H, K, V, generator=torch.Generator().manual_seed(seed + 1)) if with_h0 else None
    o, ht = mod.wy_test_fwd(q, k, v, beta, g, h0, cu_seqlens, final, chunk_size=chunk_size, scale=scale, low=low)
    leaves = [x.double().requires_grad_() for x in (q, k, v, beta)]
    gl = None if g is None else g.double().requires_grad_()
    h0l = None if h0 is None else h0.double().requires_grad_()
    ro, rht = loop(*leaves, gl, h0l, cu_seqlens, gate)
    ro = scale * ro
    close_outputs(o, ht, ro, rht, (B, T, H, V), final, tol, o_dtype=dtype if low else torch.float32)
    gen = torch.Generator().manual_seed(seed + 2)
    do = torch.randn(ro.shape, generator=gen, dtype=torch.float64).to(dtype)
    dht = torch.randn(rht.shape, generator=gen, dtype=torch.float64) if final else None
    loss = (ro * do.double()).sum() + ((rht * dht).sum() if final else 0.0)
    if T > 0:
        loss.backward()
    grads = mod.wy_test_bwd(q, k, v, beta, g, h0, cu_seqlens, do, None if dht is None else dht.float(),
                            chunk_size=chunk_size, scale=scale)
    names = ("dq", "dk", "dv", "dbeta", "dg", "dh0")
    refs = [*leaves, gl, h0l]
    for name, got, ref, x in zip(names, grads, refs, (q, k, v, beta, g, h0), strict=True):
        if ref is None:
            assert got is None, name
            continue
        want = ref.grad if ref.grad is not None else torch.zeros_like(ref)
        if name == "dh0" and T == 0 and dht is not None:
            want = dht.double()
        close(name, got, want.detach(), tol, dtype=torch.float32 if name == "dh0" else x.dtype)


def test_t_not_multiple_of_chunk_with_h0(core: tuple[str, ModuleType]) -> None:
    gate, mod = core
    check(gate, mod, T=45, chunk_size=16, with_h0=True, final=True)


def test_chunk_64_no_initial_state(core: tuple[str, ModuleType]) -> None:
    gate, mod = core
    check(gate, mod, B=1, T=70, chunk_size=64, with_h0=False, final=False, seed=1)


def test_varlen(core: tuple[str, ModuleType]) -> None:
    gate, mod = core
    cu = torch.tensor([0, 5, 40, 70], dtype=torch.int32)
    check(gate, mod, B=1, T=70, chunk_size=16, with_h0=True, final=True, cu_seqlens=cu, seed=2)


def _edge_values(q, k, v, beta, g):
    # beta = 0 on some tokens (the substitution must not divide by beta), rows of q that are zero (the
    # DeltaProduct sub-steps), unnormalised keys
    beta = beta.clone()
    beta[:, ::3] = 0
    q = q.clone()
    q[:, 1::4] = 0
    return q, k * 1.3, v, beta, g


def test_v1_zero_beta_zero_q(core: tuple[str, ModuleType]) -> None:
    gate, mod = core
    check(gate, mod, B=1, T=37, H=2, K=7, V=1, chunk_size=16, seed=3, mutate=_edge_values)


def test_bf16_inputs(core: tuple[str, ModuleType]) -> None:
    gate, mod = core
    check(gate, mod, B=1, T=33, H=1, K=16, V=16, chunk_size=16, dtype=torch.bfloat16, seed=4)


def test_fp16_inputs_run_the_gpu_path(core: tuple[str, ModuleType]) -> None:
    # fp16 dot operands and intermediates (W, U, the new values, gated q and k) stored in fp16, as on a GPU: the
    # error is the half dtype's rounding, not the fp32 bound
    gate, mod = core
    check(gate, mod, B=1, T=33, H=1, K=16, V=16, chunk_size=16, dtype=torch.float16, seed=4, tol=2.0 ** -7)


def test_epilogue_scale_and_dtype(core: tuple[str, ModuleType]) -> None:
    # the readout's scale and the output dtype in the o kernel's epilogue; do scaled as the backward loads it
    gate, mod = core
    check(gate, mod, B=1, T=33, H=1, K=16, V=16, chunk_size=16, dtype=torch.bfloat16, seed=5, scale=0.37, low=True)


def test_empty_sequence(core: tuple[str, ModuleType]) -> None:
    gate, mod = core
    check(gate, mod, B=2, T=0, chunk_size=16, with_h0=True, final=True)
    check(gate, mod, B=2, T=0, chunk_size=16, with_h0=False, final=False)


def test_bad_chunk_size(core: tuple[str, ModuleType]) -> None:
    gate, mod = core
    q, k, v, beta, g = _inputs(gate, 1, 4, 1, 4, 4)
    with pytest.raises(ValueError, match="chunk_size"):
        mod.wy_test_fwd(q, k, v, beta, g, None, None, False, chunk_size=24)


@pytest.mark.slow
@pytest.mark.parametrize("gate", GATES)
def test_long_sequence_numerics(gate: str) -> None:
    """T = 4096 with decays of e^-5 and e^-1e-4 per token mixed: finite and within fp32 tolerance."""
    mod = load_core("wy", "wy_test", decay=gate)
    check(gate, mod, B=1, T=4096, H=1, K=16, V=16, chunk_size=64, with_h0=True, final=True, seed=5,
          g_values=(-5.0, -1e-4))


_COMPILE = r"""
import json, os, sys
os.environ["TRITON_INTERPRET"] = "0"
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from recurgen.codegen.chunk_core import load_core
from recurgen.gpu import _usage

gate = sys.argv[1]
mod = load_core("wy", "wy_gpu", decay=gate)
rows = []
for arch, dot32 in ((80, False), (90, False), (90, True)):
    for fn, sig, consts, attrs in mod.wy_gpu_compile_specs(128, 128, 64, "bf16", dot32):
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


# ~25-60 s per gate when Triton's cache is cold: all under -m slow (the default run compiles kda's chunk kernels,
# the channel gate, with their spill check in tests/kernels/test_gpu_compile.py)
@pytest.mark.slow
@pytest.mark.parametrize("gate", ["none", "scalar", "channel"])
def test_compiles_for_gpus_without_spills(gate: str) -> None:
    """Every kernel at K = V = 128, chunk 64, for sm_80 and sm_90 (both dot operand settings on sm_90): some
    warp configuration the autotuner tries compiles without register spills."""
    check_gpu_compile(_COMPILE, [gate], 8)
