"""The chunked "matmul" core (templates/chunk/matmul.py.jinja) against a float64 per-token loop.

    S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T,   o_t = q_t^T S_t   (prev: q_t^T S_{t-1})

Forward (o, final state) and backward (autograd of the loop) for every decay kind and readout, short last
chunks, initial/final states, variable-length batches, V = 1, bf16 inputs and T = 0; a long run with strong and
weak decays (slow); and an ahead-of-time compile of every kernel for sm_80 / sm_90 without spills.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
import torch

from recurgen.codegen.chunk_core import load_core, render_core
from tests.helpers import close

from .chunk_loops import strong_and_weak_decays

pytestmark = pytest.mark.interpret

ROOT = Path(__file__).parent.parent.parent
DECAYS = ("none", "scalar", "channel")
PREVS = (False, True)


@pytest.fixture(scope="module")
def cores() -> dict[tuple[str, bool], ModuleType]:
    return {(d, p): load_core("matmul", f"mm_{d}_{int(p)}", decay=d, prev=p) for d in DECAYS for p in PREVS}


def reference(q, k, v, g, h0, cu_seqlens, decay: str, prev: bool):
    """Per-token float64 loop of the canonical recurrence; differentiable (autograd gives the reference grads)."""
    q, k, v = q.double(), k.double(), v.double()
    B, T, H, K = q.shape
    V = v.shape[-1]
    segments = [(b, 0, T) for b in range(B)] if cu_seqlens is None else [
        (0, int(cu_seqlens[i]), int(cu_seqlens[i + 1])) for i in range(len(cu_seqlens) - 1)]
    rows: list[list[torch.Tensor | None]] = [[None] * T for _ in range(B)]
    finals = []
    for n, (b, start, end) in enumerate(segments):
        S = torch.zeros(H, K, V, dtype=torch.float64) if h0 is None else h0[n].double()
        for t in range(start, end):
            if decay == "none":
                a = torch.ones(H, K, 1, dtype=torch.float64)
            elif decay == "scalar":
                a = g[b, t].double().exp()[:, None, None].expand(H, K, 1)
            else:
                a = g[b, t].double().exp()[:, :, None]
            S_new = a * S + k[b, t][:, :, None] * v[b, t][:, None, :]
            rows[b][t] = torch.einsum("hk,hkv->hv", q[b, t], S if prev else S_new)
            S = S_new
        finals.append(S)
    o = torch.zeros(B, 0, H, V, dtype=torch.float64) if T == 0 else torch.stack([torch.stack(r) for r in rows])
    return o, torch.stack(finals)


def inputs(B, T, H, K, V, decay, *, seed=0, dtype=torch.float32, strength=1.0):
    gen = torch.Generator().manual_seed(seed)
    q = (torch.randn(B, T, H, K, generator=gen) * K ** -0.5).to(dtype)
    k = torch.randn(B, T, H, K, generator=gen).to(dtype)
    v = torch.randn(B, T, H, V, generator=gen).to(dtype)
    shape = {"none": None, "scalar": (B, T, H), "channel": (B, T, H, K)}[decay]
    g = None if shape is None else -strength * torch.rand(*shape, generator=gen)
    return q, k, v, g


def reference_grads(q, k, v, g, h0, cu_seqlens, do, dht, decay, prev):
    leaves = [None if x is None else x.detach().double().requires_grad_() for x in (q, k, v, g, h0)]
    o, ht = reference(*leaves, cu_seqlens, decay, prev)
    loss = (o * do.double()).sum()
    if dht is not None:
        loss = loss + (ht * dht.double()).sum()
    need = [x for x in leaves if x is not None]
    grads = iter(torch.autograd.grad(loss, need)) if need and loss.requires_grad else iter([])
    return [None if x is None else next(grads, torch.zeros_like(x)) for x in leaves]


def check(core, decay, prev, *, B, T, H, K, V, chunk, cu=None, use_h0=True, use_dht=True, final=True,
          dtype=torch.float32, rtol=2e-5, seed=0, scale=1.0, low=False):
    q, k, v, g = inputs(B, T, H, K, V, decay, seed=seed, dtype=dtype)
    cu_t = None if cu is None else torch.tensor(cu, dtype=torch.int32)
    N = B if cu is None else len(cu) - 1
    gen = torch.Generator().manual_seed(seed + 1)
    h0 = torch.randn(N, H, K, V, generator=gen) if use_h0 else None
    do = torch.randn(B, T, H, V, generator=gen)
    dht = torch.randn(N, H, K, V, generator=gen) if use_dht else None

    o, ht, saved = core.fwd(q, k, v, g, h0, cu_t, final, chunk, scale=scale, low=low, keep=True)
    want_o, want_ht = reference(q, k, v, g, h0, cu_t, decay, prev)
    assert o.dtype == (dtype if low else torch.float32)
    close("o", o, scale * want_o, rtol, dtype=o.dtype)
    close("ht", ht, want_ht if final else None, rtol, dtype=torch.float32)

    grads = core.bwd(q, k, v, g, h0, cu_t, do, dht, chunk, scale=scale, saved=saved)
    want = reference_grads(q, k, v, g, h0, cu_t, scale * do.double(), dht, decay, prev)
    for name, got, ref, x in zip(("dq", "dk", "dv", "dg", "dh0"), grads, want, (q, k, v, g, h0), strict=True):
        close(name, got, ref, rtol, dtype=torch.float32 if x is None or name == "dh0" else x.dtype)


class _Core:
    """`<prefix>_fwd` / `<prefix>_bwd` of a loaded core under short names."""

    def __init__(self, module: ModuleType, prefix: str) -> None:
        self.fwd = getattr(module, f"{prefix}_fwd")
        self.bwd = getattr(module, f"{prefix}_bwd")


def core_of(cores, decay, prev) -> _Core:
    return _Core(cores[(decay, prev)], f"mm_{decay}_{int(prev)}")


@pytest.mark.parametrize("prev", PREVS)
@pytest.mark.parametrize("decay", DECAYS)
def test_short_last_chunk_with_states(cores, decay, prev):
    # T = 45 with chunks of 16: two full chunks and a short one; initial state, final state and its cotangent
    check(core_of(cores, decay, prev), decay, prev, B=2, T=45, H=1, K=20, V=24, chunk=16)


@pytest.mark.parametrize("prev", PREVS)
@pytest.mark.parametrize("decay", DECAYS)
def test_varlen_vector_state(cores, decay, prev):
    # packed sequences of 5, 35 and 30 tokens in chunks of 64 (each sequence restarts its chunks); V = 1
    check(core_of(cores, decay, prev), decay, prev, B=1, T=70, H=1, K=16, V=1, chunk=64, cu=[0, 5, 40, 70],
          use_dht=False)


@pytest.mark.parametrize("decay", DECAYS)
def test_multiple_of_chunk_no_states(cores, decay):
    # T = 70 in chunks of 64 without h0 / final state / dht (dh0 None); K = V = 40: several K and V tiles
    check(core_of(cores, decay, False), decay, False, B=2, T=70, H=1, K=40, V=40, chunk=64, use_h0=False,
          use_dht=False, final=False)


@pytest.mark.parametrize(("decay", "prev"), [("channel", False), ("scalar", True)])
def test_bf16_inputs(cores, decay, prev):
    # bf16 inputs are loaded and computed in fp32 (the chunk states and A too, under the interpreter): exact up to
    # fp32 against the loop on the same rounded values
    check(core_of(cores, decay, prev), decay, prev, B=1, T=40, H=2, K=16, V=16, chunk=16, cu=[0, 17, 40],
          dtype=torch.bfloat16)


@pytest.mark.parametrize("decay", ["scalar", "channel"])
def test_fp16_inputs_keep_states_in_fp16(cores, decay):
    # fp16 inputs under the interpreter: fp32 dots, but the chunk states (and A) stored in fp16 between the
    # kernels, as on a GPU: fp16-level agreement
    check(core_of(cores, decay, True), decay, True, B=1, T=40, H=2, K=16, V=16, chunk=16, cu=[0, 17, 40],
          dtype=torch.float16, rtol=5e-3)


@pytest.mark.parametrize("decay", DECAYS)
def test_epilogue_scale_and_dtype(cores, decay):
    # the readout's scale and the output dtype in the o kernel's epilogue; do scaled as the backward loads it
    check(core_of(cores, decay, False), decay, False, B=1, T=40, H=2, K=16, V=16, chunk=16, scale=0.37, low=True,
          dtype=torch.bfloat16)


@pytest.mark.parametrize("decay", ["scalar", "channel"])
def test_tensor_core_operands(cores, decay, monkeypatch):
    # the GPU path for 16-bit inputs (DOT_FP32 off: tl.dot operands cast to the input dtype). The interpreter
    # computes fp16 (not bf16) dots correctly, so force that path with fp16 inputs: fp16-level agreement
    module = cores[(decay, True)]
    setup = getattr(module, f"_mm_{decay}_1_setup")
    monkeypatch.setattr(module, f"_mm_{decay}_1_setup", lambda *a: (*setup(*a)[:-1], False))
    check(core_of(cores, decay, True), decay, True, B=1, T=45, H=1, K=16, V=16, chunk=16, dtype=torch.float16,
          rtol=1e-2)


@pytest.mark.parametrize("prev", PREVS)
def test_backward_reuses_the_forwards_a_and_gc(cores, prev):
    # per-channel decay: the backward given what the forward kept (A, gc) equals the one that recomputes them
    core = core_of(cores, "channel", prev)
    q, k, v, g = inputs(1, 37, 2, 16, 16, "channel", seed=3)
    do = torch.randn(1, 37, 2, 16, generator=torch.Generator().manual_seed(4))
    _, _, saved = core.fwd(q, k, v, g, None, None, False, 16, keep=True)
    assert len(saved) == 2
    assert saved[0].shape == (1, 37, 2, 16)
    assert saved[1].dtype == torch.float32
    kept = core.bwd(q, k, v, g, None, None, do, None, 16, saved=saved)
    again = core.bwd(q, k, v, g, None, None, do, None, 16)
    for name, a, b in zip(("dq", "dk", "dv", "dg"), kept, again, strict=False):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("decay", DECAYS)
def test_empty_sequence(cores, decay):
    core = core_of(cores, decay, False)
    q, k, v, g = inputs(2, 0, 2, 8, 4, decay)
    h0 = torch.randn(2, 2, 8, 4)
    o, ht = core.fwd(q, k, v, g, h0, None, True, 64)
    assert o.shape == (2, 0, 2, 4)
    assert torch.equal(ht, h0)
    dht = torch.randn(2, 2, 8, 4)
    dq, dk, dv, dg, dh0 = core.bwd(q, k, v, g, h0, None, torch.zeros(2, 0, 2, 4), dht, 64)
    assert (dq.shape, dk.shape, dv.shape) == (q.shape, k.shape, v.shape)
    assert (dg is None) == (decay == "none")
    assert torch.equal(dh0, dht)
    assert core.fwd(q, k, v, g, None, None, False, 64)[1] is None


def test_prefixed_names_only():
    # several cores share a generated module: every module-level name carries the prefix
    import ast

    src = render_core("matmul", "pfx", decay="channel", prev=True)
    names = []
    for node in ast.parse(src).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    assert names
    assert all(n.startswith(("pfx_", "_pfx_")) for n in names), names
    assert "import" not in src.split("\n# ---")[0]  # not standalone: no imports of its own


@pytest.mark.slow
@pytest.mark.parametrize("prev", PREVS)
@pytest.mark.parametrize("decay", ["scalar", "channel"])
def test_long_sequence_strong_and_weak_decay(cores, decay, prev):
    # T = 4096: log-decays of -5 per token (a chunk's cumulative decay reaches -320, far beyond fp32's exp range)
    # next to -1e-4 (nearly no decay over the whole sequence); everything stays finite and fp32-accurate
    T, K, V = 4096, 16, 16
    q, k, v, _ = inputs(1, T, 1, K, V, "none", seed=3)
    g = strong_and_weak_decays(T, K, decay, 256)
    gen = torch.Generator().manual_seed(5)
    h0 = torch.randn(1, 1, K, V, generator=gen)
    do = torch.randn(1, T, 1, V, generator=gen)
    dht = torch.randn(1, 1, K, V, generator=gen)
    core = core_of(cores, decay, prev)
    o, ht = core.fwd(q, k, v, g, h0, None, True, 64)
    want_o, want_ht = reference(q, k, v, g, h0, None, decay, prev)
    close("o", o, want_o, 1e-5, dtype=torch.float32)
    close("ht", ht, want_ht, 1e-5, dtype=torch.float32)
    grads = core.bwd(q, k, v, g, h0, None, do, dht, 64)
    want = reference_grads(q, k, v, g, h0, None, do, dht, decay, prev)
    for name, got, ref in zip(("dq", "dk", "dv", "dg", "dh0"), grads, want, strict=True):
        close(name, got, ref, 1e-5, dtype=torch.float32)


# ---- ahead-of-time compilation for real GPUs (needs Triton without the interpreter: a subprocess) ----

_COMPILE_SCRIPT = textwrap.dedent("""
    import json, sys
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from recurgen.codegen.chunk_core import load_core
    from recurgen.gpu import _usage

    variants, combos = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    rows = []
    for decay, prev in variants:
        m = load_core("matmul", "aot", decay=decay, prev=prev)
        for arch, dot_fp32 in combos:
            for fn, sig, consts, attrs in m.aot_compile_specs(128, 128, 64, "bf16", dot_fp32):
                for warps in m._CHUNK_WARPS:
                    src = ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs)
                    c = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                                       options={"num_warps": warps, "num_stages": 2})
                    reg, local, stack, shared = _usage(c.asm["cubin"])
                    # the h kernel is compiled as the forward (STORE_O) and as the backward's states pass
                    name = fn.__name__ + ("[o]" if consts.get("STORE_O") is True else "")
                    rows.append([decay, prev, name, arch, dot_fp32, warps, reg, local, stack, shared])
                    if local == 0 and stack == 0:
                        break
    print("ROWS" + json.dumps(rows))
""")


def compile_rows(variants, combos) -> list[list]:
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    res = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT, json.dumps(variants), json.dumps(combos)], cwd=ROOT,
                         env=env, capture_output=True, text=True, check=False, timeout=3600)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(x for x in res.stdout.splitlines() if x.startswith("ROWS"))
    return json.loads(line[4:])


def assert_no_spills(rows: list[list], variants) -> None:
    best: dict[tuple, list] = {}
    for r in rows:
        key = (r[0], r[1], r[2], r[3], r[4])
        if key not in best or r[7] + r[8] < best[key][7] + best[key][8]:
            best[key] = r
    for decay, prev in variants:  # per-channel decay: cumsum, h, a, o, dh, da, dv, dqk; else h[o], h, dh, dqk, dv
        kernels = {r[2] for r in rows if r[0] == decay and r[1] == prev}
        assert len(kernels) == (8 if decay == "channel" else 5), (decay, prev, kernels)
        assert len({k for k in best if k[:2] == (decay, prev)}) == len(kernels) * len(COMBOS)
    spilled = [r for r in best.values() if r[7] or r[8]]
    assert not spilled, "kernels that spill in every warp configuration: " + repr(spilled)


COMBOS = [[80, False], [90, False], [90, True]]  # (arch, DOT_FP32): sm_90 with bf16 and with fp32 dot operands


def test_compiles_without_spills_for_sm80_sm90():
    # the heaviest variant (per-channel decay, previous-state readout) in the default run
    variants = [["channel", True]]
    assert_no_spills(compile_rows(variants, COMBOS), variants)


@pytest.mark.slow
def test_every_variant_compiles_without_spills():
    variants = [[d, p] for d in DECAYS for p in PREVS]
    assert_no_spills(compile_rows(variants, COMBOS), variants)
