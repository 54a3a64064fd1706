"""The chunk families in plain torch (recurgen.runtime.chunk_torch) and chunk mode on the torch backend.

Each family against the per-token float64 loop its Triton tests define (test_chunk_{matmul,wy,dplr,scan}.py):
forward o, final state, and the gradient of every input and the initial state (autograd through the torch
family against autograd through the loop), for every flag, T not a multiple of the chunk, varlen, T = 0, and
strong (g ≈ −5 per token) next to near-1 (g ≈ −1e-4) decays over 300 tokens. Then every bundled spec with a
chunk form, `backend="torch", mode="chunk"`, against the float64 oracle (initial state, a partial chunk, varlen),
"auto" mode, the no-chunk-form error, and torch.compile of the torch chunk path.
"""

from __future__ import annotations

import pytest
import torch

import recurgen
from recurgen.runtime import chunk_torch
from tests.helpers import random_inputs, random_state
from tests.kernels.test_fused_recurrent import TOL, _tuple, check_against_oracle, check_varlen

from . import test_chunk_dplr as dplr_t
from . import test_chunk_matmul as mm_t
from . import test_chunk_scan as scan_t
from . import test_chunk_wy as wy_t
from .chunk_loops import close, close_outputs, strong_and_weak_decays
from .test_chunk_mode import CHUNKED, DENSE, LOG_DECAY_INPUT, SIZES, check_long_decays

DECAYS = ("none", "scalar", "channel")


def _cotangents(*like: torch.Tensor, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(x.shape, generator=gen, dtype=torch.float64) for x in like]


def _compare_grads(names, loss, leaves, ref_loss, ref_leaves, tol) -> None:
    """d loss / d leaves (fp32, through the torch family) against d ref_loss / d ref_leaves (float64 loop)."""
    keep = [i for i, x in enumerate(leaves) if x is not None]
    got = torch.autograd.grad(loss, [leaves[i] for i in keep], allow_unused=True)
    want = torch.autograd.grad(ref_loss, [ref_leaves[i] for i in keep], allow_unused=True)
    for i, g, w in zip(keep, got, want, strict=True):
        w = torch.zeros_like(ref_leaves[i]) if w is None else w
        g = torch.zeros_like(leaves[i]) if g is None else g
        close(names[i], g, w.detach(), tol)


def _check_family(names, o, ht, ro, rht, leaves, refs, final: bool, seed: int, tol: float) -> None:
    """A torch family's (o, ht) and the gradients of every leaf against the float64 loop's."""
    B, T, H = ro.shape[:3]
    close_outputs(o, ht, ro, rht, (B, T, H, ro.shape[-1]), final, tol)
    do, dht = _cotangents(ro, rht, seed=seed + 2)
    loss = (o.double() * do).sum() + ((ht.double() * dht).sum() if final else 0)
    rloss = (ro * do).sum() + ((rht * dht).sum() if final else 0)
    if T > 0:
        _compare_grads(names, loss, leaves, rloss, refs, tol)


# ---------------------------------------------------------------------------------------------------------------
# matmul
# ---------------------------------------------------------------------------------------------------------------
def check_matmul(decay: str, prev: bool, *, B: int, T: int, H: int, K: int, V: int, chunk: int, cu=None,
                 use_h0: bool = True, final: bool = True, seed: int = 0, g=None, tol: float = 2e-5) -> None:
    q, k, v, g0 = mm_t.inputs(B, T, H, K, V, decay, seed=seed)
    g = g0 if g is None else g
    cu_t = None if cu is None else torch.tensor(cu, dtype=torch.int32)
    N = B if cu is None else len(cu) - 1
    h0 = torch.randn(N, H, K, V, generator=torch.Generator().manual_seed(seed + 1)) if use_h0 else None
    leaves = [None if x is None else x.clone().requires_grad_() for x in (q, k, v, g, h0)]
    o, ht = chunk_torch.matmul_fwd(*leaves, cu_t, final, chunk, decay=decay, prev=prev)
    refs = [None if x is None else x.detach().double().requires_grad_() for x in (q, k, v, g, h0)]
    ro, rht = mm_t.reference(*refs, cu_t, decay, prev)
    close("o", o, ro.detach(), tol, dtype=torch.float32)
    assert o.shape == (B, T, H, V)
    close("ht", ht, rht.detach() if final else None, tol, dtype=torch.float32)
    do, dht = _cotangents(ro, rht, seed=seed + 2)
    loss = (o.double() * do).sum() + ((ht.double() * dht).sum() if final else 0)
    rloss = (ro * do).sum() + ((rht * dht).sum() if final else 0)
    if T > 0:
        _compare_grads(("dq", "dk", "dv", "dg", "dh0"), loss, leaves, rloss, refs, tol)


@pytest.mark.parametrize("prev", [False, True])
@pytest.mark.parametrize("decay", DECAYS)
def test_matmul(decay: str, prev: bool) -> None:
    # T = 45 in chunks of 16 (a short last chunk) with h0 and ht; varlen in chunks of 16; T = 70 in one chunk of
    # 64 and a short one, no states; K = 40 (the per-channel sub-blocks) with V = 1
    check_matmul(decay, prev, B=2, T=45, H=2, K=20, V=24, chunk=16)
    check_matmul(decay, prev, B=1, T=70, H=1, K=16, V=1, chunk=16, cu=[0, 5, 40, 40, 70], seed=1)
    check_matmul(decay, prev, B=2, T=70, H=1, K=40, V=8, chunk=64, use_h0=False, final=False, seed=2)


@pytest.mark.parametrize("decay", ["scalar", "channel"])
@pytest.mark.parametrize("prev", [False, True])
def test_matmul_strong_and_near_one_decays(decay: str, prev: bool) -> None:
    # g ≈ −5 per token (a chunk's cumulative decay reaches −320: exp(−b) alone would overflow) next to
    # g ≈ −1e-4 (nearly none over the sequence), per channel or in alternating runs of tokens
    T, K = 300, 16
    g = strong_and_weak_decays(T, K, decay, 50)
    check_matmul(decay, prev, B=1, T=T, H=1, K=K, V=8, chunk=64, g=g, seed=3, tol=1e-5)


def test_matmul_empty_sequence() -> None:
    q, k, v, g = mm_t.inputs(2, 0, 2, 8, 4, "channel")
    h0 = torch.randn(2, 2, 8, 4)
    o, ht = chunk_torch.matmul_fwd(q, k, v, g, h0, None, True, 64, decay="channel")
    assert o.shape == (2, 0, 2, 4)
    assert torch.equal(ht, h0)
    assert chunk_torch.matmul_fwd(q, k, v, g, None, None, False, 64, decay="channel")[1] is None


# ---------------------------------------------------------------------------------------------------------------
# wy
# ---------------------------------------------------------------------------------------------------------------
def check_wy(gate: str, *, B: int = 2, T: int = 45, H: int = 2, K: int = 12, V: int = 10, chunk: int = 16,
             with_h0: bool = True, final: bool = True, cu=None, seed: int = 0, mutate=None, tol: float = 2e-4,
             **kw) -> None:
    q, k, v, beta, g = wy_t._inputs(gate, B, T, H, K, V, seed=seed, **kw)
    if mutate is not None:
        q, k, v, beta, g = mutate(q, k, v, beta, g)
    cu_t = None if cu is None else torch.tensor(cu, dtype=torch.int32)
    N = B if cu is None else len(cu) - 1
    h0 = torch.randn(N, H, K, V, generator=torch.Generator().manual_seed(seed + 1)) if with_h0 else None
    xs = (q, k, v, beta, g, h0)
    leaves = [None if x is None else x.clone().requires_grad_() for x in xs]
    o, ht = chunk_torch.wy_fwd(*leaves, cu_t, final, chunk, decay=gate)
    refs = [None if x is None else x.detach().double().requires_grad_() for x in xs]
    ro, rht = wy_t.loop(*refs, cu_t, gate)
    _check_family(("dq", "dk", "dv", "dbeta", "dg", "dh0"), o, ht, ro, rht, leaves, refs, final, seed, tol)


@pytest.mark.parametrize("gate", DECAYS)
def test_wy(gate: str) -> None:
    check_wy(gate)  # T = 45, chunks of 16, h0 and ht
    check_wy(gate, B=1, T=70, chunk=64, with_h0=False, final=False, seed=1)
    check_wy(gate, B=1, T=70, cu=[0, 5, 40, 40, 70], seed=2)
    # beta = 0 on some tokens, zero rows of q, unnormalised keys, V = 1
    check_wy(gate, B=1, T=37, H=2, K=7, V=1, seed=3, mutate=wy_t._edge_values)


@pytest.mark.parametrize("gate", ["scalar", "channel"])
def test_wy_strong_and_near_one_decays(gate: str) -> None:
    check_wy(gate, B=1, T=300, H=1, K=16, V=8, chunk=64, seed=5, g_values=(-5.0, -1e-4))


def test_wy_empty_sequence() -> None:
    check_wy("scalar", B=2, T=0)
    check_wy("channel", B=2, T=0, with_h0=False, final=False)


# ---------------------------------------------------------------------------------------------------------------
# dplr
# ---------------------------------------------------------------------------------------------------------------
def check_dplr(*, B: int = 2, T: int = 45, H: int = 2, K: int = 12, V: int = 10, chunk: int = 16,
               with_h0: bool = True, final: bool = True, cu=None, seed: int = 0, no_decay: bool = False,
               tol: float = 2e-4, **kw) -> None:
    q, k, v, u, w, g = dplr_t._inputs(B, T, H, K, V, seed=seed, **kw)
    cu_t = None if cu is None else torch.tensor(cu, dtype=torch.int32)
    N = B if cu is None else len(cu) - 1
    h0 = torch.randn(N, H, K, V, generator=torch.Generator().manual_seed(seed + 1)) if with_h0 else None
    xs = (q, k, v, u, w, None if no_decay else g, h0)
    leaves = [None if x is None else x.clone().requires_grad_() for x in xs]
    o, ht = chunk_torch.dplr_fwd(*leaves, cu_t, final, chunk)
    refs = [None if x is None else x.detach().double().requires_grad_() for x in xs]
    ref_g = torch.zeros(q.shape, dtype=torch.float64) if no_decay else refs[5]
    ro, rht = dplr_t.loop(*refs[:5], ref_g, refs[6], cu_t)
    _check_family(("dq", "dk", "dv", "du", "dw", "dg", "dh0"), o, ht, ro, rht, leaves, refs, final, seed, tol)


@pytest.mark.parametrize("kind", ["random", "rwkv7", "gated_delta"])
def test_dplr(kind: str) -> None:
    check_dplr(kind=kind)  # T = 45, chunks of 16, h0 and ht
    if kind == "random":
        check_dplr(B=1, T=70, chunk=64, with_h0=False, final=False, seed=1, kind=kind)
        check_dplr(B=1, T=70, cu=[0, 5, 40, 40, 70], seed=2, kind=kind)


def test_dplr_no_decay_and_empty() -> None:
    check_dplr(B=1, T=20, K=8, V=8, seed=8, no_decay=True)
    check_dplr(B=2, T=0)


@pytest.mark.parametrize("kind", ["random", pytest.param("rwkv7", marks=pytest.mark.slow)])
def test_dplr_strong_and_near_one_decays(kind: str) -> None:
    check_dplr(B=1, T=300, H=1, K=16, V=8, chunk=64, seed=5, g_values=(-5.0, -1e-4), kind=kind)


# ---------------------------------------------------------------------------------------------------------------
# scan
# ---------------------------------------------------------------------------------------------------------------
def check_scan(cx: bool, readout: str, a, b, c, h0, cu_seqlens, final: bool, block_t: int, seed: int = 1) -> None:
    leaves = [None if x is None else x.clone().requires_grad_() for x in (a, b, c, h0)]
    o, ht = chunk_torch.scan_fwd(*leaves, cu_seqlens, final, block_t, complex=cx, readout=readout)
    refs = [scan_t._wide(x) for x in (a, b, c, h0)]
    ro, rht = scan_t.loop(*refs, cu_seqlens, readout)
    assert o.dtype == (torch.complex64 if cx else torch.float32)
    scan_t.assert_near(o, ro, "o")
    if final:
        scan_t.assert_near(ht, rht, "ht")
    else:
        assert ht is None
    if a.shape[1] == 0:
        return
    gen = torch.Generator().manual_seed(seed)

    def cot(like: torch.Tensor) -> torch.Tensor:
        x = torch.randn(like.shape, generator=gen, dtype=torch.float64)
        return torch.complex(x, torch.randn(like.shape, generator=gen, dtype=torch.float64)) if cx else x

    do = cot(ro)
    dht = cot(rht)
    # real losses whose gradients with respect to o (ht) are do (dht), torch's complex convention
    loss = (o.to(do.dtype) * do.conj()).real.sum() + ((ht.to(dht.dtype) * dht.conj()).real.sum() if final else 0)
    rloss = (ro * do.conj()).real.sum() + ((rht * dht.conj()).real.sum() if final else 0)
    keep = [i for i, x in enumerate(leaves) if x is not None]
    got = torch.autograd.grad(loss, [leaves[i] for i in keep], allow_unused=True)
    want = torch.autograd.grad(rloss, [refs[i] for i in keep], allow_unused=True)
    for i, g, w in zip(keep, got, want, strict=True):
        name = ("da", "db", "dc", "dh0")[i]
        assert g is not None, name
        assert g.dtype == leaves[i].dtype, name
        scan_t.assert_near(g, torch.zeros_like(refs[i]) if w is None else w, name)


@pytest.mark.parametrize("case", list(scan_t.CASES))
@pytest.mark.parametrize(("cx", "readout"), scan_t.VARIANTS,
                         ids=[f"{'complex' if c else 'real'}-{r}" for c, r in scan_t.VARIANTS])
def test_scan(cx: bool, readout: str, case: str) -> None:
    # the Triton family's cases: short last blocks, no h0, varlen (with empty sequences), Q = 1, near-1 and tiny
    # decays (with 10% negative real ones)
    B, T, H, P, Q, block_t, h0, final, cu, decays = scan_t.CASES[case]
    cu_seqlens = None if cu is None else torch.tensor(cu, dtype=torch.int32)
    n_seq = B if cu is None else len(cu) - 1
    a, b, c, init = scan_t.make(cx, readout, B, T, H, P, Q, decays, h0, n_seq)
    check_scan(cx, readout, a, b, c, init, cu_seqlens, final, block_t)


@pytest.mark.parametrize(("cx", "readout"), scan_t.VARIANTS,
                         ids=[f"{'complex' if c else 'real'}-{r}" for c, r in scan_t.VARIANTS])
def test_scan_long_near_one_and_tiny(cx: bool, readout: str) -> None:
    a, b, c, h0 = scan_t.make(cx, readout, 1, 300, 2, 2, 2, ("near1", "tiny"), True, 1, seed=3)
    check_scan(cx, readout, a, b, c, h0, None, True, 64)
    a, b, c, h0 = scan_t.make(cx, readout, 2, 0, 2, 2, 2, ("mid",), True, 2)
    check_scan(cx, readout, a, b, c, h0, None, True, 64)


def test_family_flags_checked() -> None:
    fwd = chunk_torch.family("matmul", decay="scalar", prev=True)
    assert fwd.keywords == {"decay": "scalar", "prev": True}
    with pytest.raises(ValueError, match="no flag"):
        chunk_torch.family("wy", prev=True)
    with pytest.raises(ValueError, match="unknown chunk family"):
        chunk_torch.family("dense")
    q = torch.randn(1, 4, 1, 3)
    with pytest.raises(ValueError, match="g has shape"):
        chunk_torch.wy_fwd(q, q, q, q[..., 0], None, None, None, False, 16, decay="scalar")
    with pytest.raises(TypeError, match="real"):
        chunk_torch.scan_fwd(torch.ones(1, 2, 1, 1, 1, dtype=torch.complex64), torch.ones(1, 2, 1, 1, 1,
                             dtype=torch.complex64), None, None, None, False, complex=False, readout="state")


# ---------------------------------------------------------------------------------------------------------------
# spec level: chunk mode on the torch backend
# ---------------------------------------------------------------------------------------------------------------
def _count_torch_chunks(rec: recurgen.Recurrence, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every state the module's torch chunk path runs (so a test knows it did not walk tokens)."""
    module = rec.module
    used: list[str] = []
    original = module._chunk_torch
    monkeypatch.setattr(module, "_chunk_torch", lambda state, *a: used.append(state) or original(state, *a))
    return used


@pytest.mark.parametrize("name", CHUNKED)
def test_torch_chunk_matches_oracle(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # a full chunk then a partial one, with initial states; then varlen with an empty sequence, a single token
    # and a sequence across a chunk boundary: outputs, final states and every gradient against float64
    rec = recurgen.load(name)
    used = _count_torch_chunks(rec, monkeypatch)
    check_against_oracle(name, B=2, T=21, H=2, sizes=SIZES, dtype=torch.float32, with_h0=True, ckpt=16,
                         budget=None, backend="torch", seed=7, mode="chunk", chunk_size=16)
    check_varlen(name, cu=[0, 3, 3, 4, 22], backend="torch", seed=5, mode="chunk", chunk_size=16)
    assert sorted(set(used)) == sorted(s for s, *_ in rec.module._CHUNK_CALLS)


@pytest.mark.parametrize("name", ["gla", "gated_delta_rule", "mamba2"])
def test_torch_chunk_half_inputs(name: str) -> None:
    check_against_oracle(name, B=1, T=19, H=2, sizes=SIZES, dtype=torch.bfloat16, with_h0=True, ckpt=16,
                         budget=None, backend="torch", seed=3, mode="chunk", chunk_size=16)


def test_torch_auto_mode_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    gla = recurgen.load("gla")
    used = _count_torch_chunks(gla, monkeypatch)
    monkeypatch.setattr(gla.module, "TORCH_CHUNK_AUTO_MIN_T", 20)  # the torch backend's own crossover
    xs = random_inputs(gla.spec, 1, 20, 1, {"K": 4, "V": 4}, torch.float32, 0)
    gla(*xs.values(), mode="auto", backend="torch")
    assert used == ["S"]
    gla(*(x[:, :19] for x in xs.values()), mode="auto", backend="torch")  # 19 tokens: walks tokens
    gla(*xs.values(), mode="recurrent", backend="torch")
    assert used == ["S"]
    dense = recurgen.compile(DENSE)
    ys = random_inputs(dense.spec, 1, 4, 1, SIZES, torch.float32, 0)
    with pytest.raises(ValueError, match="no chunk form"):
        dense(*ys.values(), mode="chunk", backend="torch")
    dense(*ys.values(), mode="auto", backend="torch")  # auto never refuses


def test_torch_chunk_equals_torch_recurrent() -> None:
    """The two torch paths agree on a longer sequence (several chunks of the default size)."""
    rec = recurgen.load("kda")
    xs = random_inputs(rec.spec, 1, 150, 2, {"K": 8, "V": 4}, torch.float32, 1)
    h0 = random_state(rec.spec, 1, 2, {"K": 8, "V": 4}, torch.float32, 1)
    res = []
    for mode in ("recurrent", "chunk"):
        a = [x.clone().requires_grad_() for x in xs.values()]
        out, fin = rec(*a, initial_state=h0, output_final_state=True, backend="torch", mode=mode)
        grads = torch.autograd.grad(out.square().sum() + fin.sum(), a)
        res.append((out, fin, grads))
    for x, y in zip(_tuple(res[0][0]) + _tuple(res[0][1]) + res[0][2],
                    _tuple(res[1][0]) + _tuple(res[1][1]) + res[1][2], strict=True):
        close("kda torch chunk vs recurrent", y, x, TOL[torch.float32])


class _Mixer(torch.nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.rec = recurgen.load(name)
        self.scale = torch.nn.Parameter(torch.tensor(1.5))

    def forward(self, *xs: torch.Tensor, h0: list[torch.Tensor]) -> torch.Tensor:
        o, final = self.rec(xs[0] * self.scale, *xs[1:], initial_state=h0, output_final_state=True,
                            backend="torch", mode="chunk", chunk_size=16)
        return sum(x.float().square().mean() for x in _tuple(o)) + sum(f.abs().square().mean() for f in _tuple(final))


# ~10 s each (dynamo tracing on 2 cores): the matmul family in the default run
@pytest.mark.parametrize("name", ["gla", pytest.param("gated_delta_rule", marks=pytest.mark.slow),
                                  pytest.param("lru", marks=pytest.mark.slow)])
def test_torch_chunk_compiles_without_graph_breaks(name: str) -> None:
    torch._dynamo.reset()
    model = _Mixer(name)
    sizes = {"K": 4, "V": 3, "N": 3, "D": 3}
    xs = list(random_inputs(model.rec.spec, 2, 21, 2, sizes, torch.float32, 0).values())
    h0 = list(random_state(model.rec.spec, 2, 2, sizes, torch.float32, 0))

    def run(fn):
        leaves = [x.clone().requires_grad_() for x in xs]
        hs = [h.clone().requires_grad_() for h in h0]
        loss = fn(*leaves, h0=hs)
        return loss.detach(), torch.autograd.grad(loss, [*leaves, *hs, model.scale])

    eager_loss, eager_grads = run(model)
    loss, grads = run(torch.compile(model, fullgraph=True, backend="aot_eager"))
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
    for g, e in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


def _long_decays(name: str, log_decay: float, T: int) -> None:
    check_long_decays(name, log_decay, T, [{"mode": "chunk", "backend": "torch"}])


@pytest.mark.parametrize("name", ["gla", "gated_delta_rule", pytest.param("kda", marks=pytest.mark.slow)])
@pytest.mark.parametrize("log_decay", [-5.0, -1e-4])
def test_spec_strong_and_near_one_decays(name: str, log_decay: float) -> None:
    """T = 300 (five chunks) with g ≈ −5 and g ≈ −1e-4 per token: outputs and gradients against the oracle."""
    _long_decays(name, log_decay, 300)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LOG_DECAY_INPUT))
@pytest.mark.parametrize("log_decay", [-5.0, -1e-4])
def test_spec_long_sequences_strong_and_near_one_decays(name: str, log_decay: float) -> None:
    _long_decays(name, log_decay, 4096)


@pytest.mark.slow  # three subprocesses that import torch and triton: ~30-60 s on 2 shared cores
def test_standalone_module_without_recurgen_chunks(tmp_path) -> None:
    """A module written by `recurgen compile -o` imports without recurgen; it carries the torch chunk families
    (recurgen.runtime.chunk_torch) and gives the same numbers in mode="chunk" with or without recurgen."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parent.parent.parent
    out = tmp_path / "build"
    res = subprocess.run([sys.executable, "-m", "recurgen", "compile", "gla", "-o", str(out)], cwd=root,
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    script = (
        "import sys, torch\n"
        "blocked = sys.argv[1] == '1'\n"
        "if blocked:\n"
        "    sys.modules['recurgen'] = None\n"
        f"sys.path.insert(0, {str(out)!r})\n"
        "import gla as m\n"
        "assert m._chunk_torch_family is not None\n"
        "g = torch.Generator().manual_seed(0)\n"
        "q, k, v = (torch.randn(1, 20, 2, 4, generator=g) for _ in range(3))\n"
        "o, s = m.fused_recurrent_gla(q, k, v, -torch.rand(1, 20, 2, 4, generator=g), output_final_state=True,\n"
        "                             backend='torch', mode='chunk', chunk_size=16)\n"
        "print(repr(o.sum().item()), repr(s.sum().item()))\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    sums = []
    for blocked in ("1", "0"):
        res = subprocess.run([sys.executable, "-c", script, blocked], capture_output=True, text=True, env=env,
                             check=False, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        sums.append([float(x) for x in res.stdout.split()])
    assert sums[0] == pytest.approx(sums[1], rel=1e-5, abs=1e-5)
