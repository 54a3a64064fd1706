"""Chunk mode of every bundled spec that has one, against the float64 oracle and the recurrent kernels.

The chunk kernels of each family are tested on their own canonical recurrence in test_chunk_{matmul,wy,scan}.py;
here the whole generated path is: the spec's formulas for the canonical arguments, the kernels, the readout,
autograd through all of it (every input, param and initial state), varlen, grouped heads, sub-steps.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import recurgen
from recurgen.resources import bundled_spec_names
from tests.helpers import close, random_inputs, random_state
from tests.kernels.test_fused_recurrent import TOL, _stable, _tuple, check_against_oracle, check_varlen

CHUNKED = [n for n in bundled_spec_names() if recurgen.load(n).chunk_reason is None]
SIZES = {"K": 5, "V": 3, "N": 4, "D": 3, "E": 3, "P": 3, "M": 4}
DENSE = """recurrence dense_rnn "a dense per-head transition: no chunk form"
input  k: [K], v: [V], q: [K]
param  A: [K, K]
state  S: [K, V]
update S = A @ S + outer(k, v)
output o: [V] = q @ S
"""


# bundled specs that run recurrent only, each for a reason explain states (a new one must be added here on purpose)
# based: its normaliser state is read whole; linoss: its 2x2 block per channel is dense
RECURRENT_ONLY = {"based": "read whole", "linoss": "dense transition"}


def test_every_bundled_spec_has_a_chunk_form() -> None:
    assert [n for n in bundled_spec_names() if n not in RECURRENT_ONLY] == CHUNKED
    for name, why in RECURRENT_ONLY.items():
        assert why in (recurgen.load(name).chunk_reason or ""), name
    # a dense transition has none, and says why
    assert "dense transition" in (recurgen.compile(DENSE).chunk_reason or "")


@pytest.mark.interpret
@pytest.mark.parametrize("name", CHUNKED)
def test_chunk_matches_oracle(name: str) -> None:
    # a full chunk, then a partial one (T not a multiple of the chunk size); with initial states
    check_against_oracle(name, B=2, T=21, H=2, sizes=SIZES, dtype=torch.float32, with_h0=True, ckpt=16,
                         budget=None, backend="triton", seed=7, mode="chunk", chunk_size=16)


@pytest.mark.interpret
@pytest.mark.parametrize("name", CHUNKED)
def test_chunk_varlen_matches_oracle(name: str) -> None:
    # an empty sequence, a single token, and a sequence spanning a chunk boundary
    check_varlen(name, cu=[0, 3, 3, 4, 22], backend="triton", seed=5, mode="chunk", chunk_size=16)


shapes = st.fixed_dictionaries({
    "B": st.integers(1, 2), "T": st.sampled_from([1, 15, 17, 33]), "H": st.integers(1, 2),
    "sizes": st.fixed_dictionaries({d: st.sampled_from([1, 3, 8, 16]) for d in "KVNDEP"}),
    "dtype": st.sampled_from([torch.float32, torch.bfloat16, torch.float16]), "with_h0": st.booleans(),
})


@pytest.mark.slow
@pytest.mark.interpret
@pytest.mark.parametrize("name", CHUNKED)
@settings(max_examples=6, deadline=None)
@given(case=shapes, seed=st.integers(0, 2**16))
def test_chunk_matches_oracle_property(name: str, case: dict, seed: int) -> None:
    check_against_oracle(name, backend="triton", seed=seed, ckpt=16, budget=None, mode="chunk", chunk_size=16,
                         **case)


@pytest.mark.interpret
@pytest.mark.parametrize("name", ["gla", "gated_delta_rule", "mamba", "lru", "mlstm", "delta_product", "rwkv7"])
def test_chunk_equals_recurrent(name: str) -> None:
    """The two kernel families agree with each other (not only with the oracle), outputs and gradients."""
    rec = recurgen.load(name)
    xs = _stable(name, random_inputs(rec.spec, 1, 40, 2, SIZES, torch.float32, 11))
    h0 = random_state(rec.spec, 1, 2, SIZES, torch.float32, 11)
    results = []
    for mode in ("recurrent", "chunk"):
        a = {n: x.clone().requires_grad_() for n, x in xs.items()}
        out, fin = rec(*a.values(), initial_state=h0, output_final_state=True, mode=mode, chunk_size=16)
        loss = sum((o.float() * torch.cos(torch.arange(o.numel()).view_as(o) * 0.1)).sum() for o in _tuple(out))
        results.append((_tuple(out), _tuple(fin), torch.autograd.grad(loss, list(a.values()), allow_unused=True)))
    (o1, f1, g1), (o2, f2, g2) = results
    for x, y in zip(o1 + f1, o2 + f2, strict=True):
        close(f"{name}: chunk vs recurrent", y, x, TOL[torch.float32])
    for label, x, y in zip(xs, g1, g2, strict=True):
        if x is not None:
            close(f"{name}: chunk vs recurrent d{label}", y, x, TOL[torch.float32])


@pytest.mark.interpret
def test_chunk_grouped_heads() -> None:
    """Grouped values (Gated DeltaNet with more value heads than key heads): gradients summed per group."""
    rec = recurgen.load("gated_delta_rule")
    gen = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, 20, 1, 8, generator=gen) for _ in range(2))
    k = k / k.norm(dim=-1, keepdim=True)
    v = torch.randn(1, 20, 2, 4, generator=gen)
    g, beta = -torch.rand(1, 20, 2, generator=gen), torch.rand(1, 20, 2, generator=gen)
    args = [x.requires_grad_() for x in (q, k, v, g, beta)]
    out_c, _ = rec(*args, mode="chunk", chunk_size=16)
    grads_c = torch.autograd.grad(out_c.sum(), args)
    out_r, _ = rec(*args, mode="recurrent")
    grads_r = torch.autograd.grad(out_r.sum(), args)
    close("grouped output", out_c, out_r, TOL[torch.float32])
    for x, y in zip(grads_c, grads_r, strict=True):
        close("grouped grad", x, y, TOL[torch.float32])


def test_chunk_mode_errors() -> None:
    gla = recurgen.load("gla")
    xs = [torch.randn(1, 4, 1, 4), torch.randn(1, 4, 1, 4), torch.randn(1, 4, 1, 3), -torch.rand(1, 4, 1, 4)]
    with pytest.raises(ValueError, match="chunk_size"):
        gla(*xs, mode="chunk", chunk_size=24)
    with pytest.raises(ValueError, match="`mode` must be"):
        gla(*xs, mode="fast")
    dense = recurgen.compile(DENSE)
    ys = random_inputs(dense.spec, 1, 4, 1, SIZES, torch.float32, 0)
    with pytest.raises(ValueError, match="no chunk form"):
        dense(*ys.values(), mode="chunk")


@pytest.mark.interpret
def test_auto_mode_uses_chunks_on_long_sequences(monkeypatch: pytest.MonkeyPatch) -> None:
    gla = recurgen.load("gla")
    module = gla.module
    used = []
    original = module._chunk_forward
    monkeypatch.setattr(module, "_chunk_forward", lambda *a, **k: used.append(True) or original(*a, **k))
    monkeypatch.setattr(module, "CHUNK_AUTO_MIN_T", 20)
    xs = random_inputs(gla.spec, 1, 20, 1, {"K": 4, "V": 4}, torch.float32, 0)
    gla(*xs.values(), mode="auto")
    assert used == [True]
    gla({**xs, "q": xs["q"][:, :19]}["q"], *(x[:, :19] for x in list(xs.values())[1:]), mode="auto")
    assert used == [True]  # 19 tokens: recurrent


# specs whose log-decay is an input, by that input's name
LOG_DECAY_INPUT = {"gla": "g", "simple_gla": "g", "gated_delta_rule": "g", "kda": "g", "hgrn": "g", "hgrn2": "g",
                   "rwkv6": "w"}


@pytest.mark.slow
@pytest.mark.interpret
@pytest.mark.parametrize("name", sorted(LOG_DECAY_INPUT))
@pytest.mark.parametrize("log_decay", [-5.0, -1e-4])
def test_long_sequences_strong_and_near_one_decays(name: str, log_decay: float) -> None:
    """T = 4096 with g ≈ −5 per token (exp(−b) over a chunk would overflow fp32) and g ≈ −1e-4 (a near-1 decay):
    chunk and recurrent kernels both match the float64 oracle, outputs and gradients finite."""
    check_long_decays(name, log_decay, 4096, [{"mode": "chunk"}, {"mode": "recurrent"}])


def check_long_decays(name: str, log_decay: float, T: int, calls: list[dict[str, str]]) -> None:
    """Every log-decay input of `name` pinned near `log_decay`: each of `calls` (keyword arguments of the module's
    call) matches the float64 oracle in its outputs, final state and every gradient, all finite."""
    rec = recurgen.load(name)
    xs = random_inputs(rec.spec, 1, T, 1, {"K": 8, "V": 8, "D": 8}, torch.float32, 3)
    gen = torch.Generator().manual_seed(0)
    g = xs[LOG_DECAY_INPUT[name]]
    xs[LOG_DECAY_INPUT[name]] = log_decay * (1 + 0.1 * torch.rand(g.shape, generator=gen))
    rx = {n: x.double().requires_grad_() for n, x in xs.items()}
    rout, rfin = recurgen.reference(rec.spec, *rx.values(), output_final_state=True)
    cot = torch.randn(rout.shape, generator=gen, dtype=torch.float64)
    rgrads = torch.autograd.grad((rout * cot).sum() + rfin.sum(), list(rx.values()))
    # hgrn2's key 1 − exp(g) cancels in fp32 near g = 0: an error of the spec's own arithmetic (the chunk prepare
    # step of both backends computes it), allowed 1e-3 as in docs/numerics.md
    tol = 1e-3 if (name, log_decay) == ("hgrn2", -1e-4) else TOL[torch.float32]
    for kw in calls:
        how = " ".join(f"{v}" for v in kw.values())
        a = {n: x.clone().requires_grad_() for n, x in xs.items()}
        out, fin = rec(*a.values(), output_final_state=True, **kw)
        grads = torch.autograd.grad((out.double() * cot).sum() + fin.double().sum(), list(a.values()))
        assert torch.isfinite(out).all(), f"{name} {how}: non-finite outputs"
        assert torch.isfinite(fin).all(), f"{name} {how}: non-finite final state"
        close(f"{name} {how} g={log_decay}: output", out, rout, tol)
        close(f"{name} {how} g={log_decay}: final state", fin, rfin, tol)
        for label, x, rx_ in zip(xs, grads, rgrads, strict=True):
            assert torch.isfinite(x).all(), f"{name} {how}: non-finite d{label}"
            close(f"{name} {how} g={log_decay}: d{label}", x, rx_, 10 * tol)


# every state elementwise: chunk mode on Triton runs the spec's blocked-scan forward kernel (a_t, b_t formed in it)
SCAN_BLOCK = ("gateloop", "hawk", "hgrn", "longhorn", "lru", "mamba", "mingru", "s4d", "s5")


@pytest.mark.interpret
def test_scan_family_chunk_mode_runs_the_blocked_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tuple(n for n in CHUNKED if recurgen.load(n).module.SCAN_BLOCK) == SCAN_BLOCK
    rec = recurgen.load("mamba")
    module = rec.module
    launched: list[str] = []
    launch = module._launch
    monkeypatch.setattr(module, "_launch", lambda k, *a, **kw: launched.append(k.fn.__name__) or launch(k, *a, **kw))
    monkeypatch.setattr(module, "_chunk_forward", lambda *a, **k: pytest.fail("a, b built by torch glue"))
    xs = random_inputs(rec.spec, 1, 20, 1, {"E": 3, "N": 4}, torch.float32, 0)
    args = [x.requires_grad_() for x in xs.values()]
    out_c, _ = rec(*args, mode="chunk", chunk_size=16)
    grads_c = torch.autograd.grad(out_c.sum(), args)
    # the blocked-scan forward, then the recurrent backward's two sweeps (forward sweep, backward sweep)
    assert launched == ["mamba_chunk_scan_fwd_kernel", "mamba_fused_recurrent_sweep_kernel",
                        "mamba_fused_recurrent_bwd_kernel"]
    out_r, _ = rec(*args, mode="recurrent")
    grads_r = torch.autograd.grad(out_r.sum(), args)
    close("mamba blocked scan", out_c, out_r, TOL[torch.float32])
    for x, y in zip(grads_c, grads_r, strict=True):
        close("mamba blocked scan grad", x, y, TOL[torch.float32])
