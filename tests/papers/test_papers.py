"""Models written from their papers (tests/papers/*.rec) against per-token float64 loops written from the same
papers (loops.py), which share nothing with recurgen: the oracle in float64, and the generated kernels in fp32 in
recurrent mode and, where the spec has a chunk form, in chunk mode, outputs, final states and gradients.

What each spec exercises of the language (issue #19):
  rwkv4            `prev(S)` of elementwise states in a nonlinear readout: chunk mode (scan family, shifted)
  rwkv4_stable     a running max read as `prev(pp)` and `new(pp)` in the other updates and the readout
  titans_momentum  `new(S)`: the memory reads the new surprise; coupled states, recurrent only (explain says why)
  rope_retention   indexing of expressions (`k.T[0]`), `sin` / `cos`, a real 2×2 rotation coupling two states
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import recurgen
from recurgen.frontend import load_spec
from recurgen.oracle import run as run_reference
from tests.helpers import assert_close

from . import loops

HERE = Path(__file__).parent
B, T, H = 2, 21, 2  # T: a full chunk of 16 and a partial one
SIZES = {"D": 4, "K": 4, "V": 3, "N": 3}
Inputs = dict[str, torch.Tensor]


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def _rwkv4_inputs(gen: torch.Generator, T: int = T, batch: int = B) -> Inputs:
    D = SIZES["D"]
    # w = exp(w̃) > 0 as RWKV parameterises its decay; keys moderate (the unstabilised form needs exp(k) finite)
    return {"k": _randn(gen, batch, T, H, D), "v": _randn(gen, batch, T, H, D),
            "w": torch.exp(0.5 * _randn(gen, H, D)), "u": 0.5 * _randn(gen, H, D)}


def _titans_inputs(gen: torch.Generator, T: int = T, batch: int = B) -> Inputs:
    K, V = SIZES["K"], SIZES["V"]
    return {"q": _randn(gen, batch, T, H, K), "k": F.normalize(_randn(gen, batch, T, H, K), dim=-1),
            "v": _randn(gen, batch, T, H, V), "eta": torch.sigmoid(_randn(gen, batch, T, H)),
            "theta": torch.sigmoid(_randn(gen, batch, T, H)), "alpha": torch.sigmoid(_randn(gen, batch, T, H))}


def _rope_inputs(gen: torch.Generator, T: int = T, batch: int = B) -> Inputs:
    N, V = SIZES["N"], SIZES["V"]
    # RoFormer's frequencies θ_i = 10000^(−2i/d), d = 2N, jittered so every pair's gradient differs
    base = 10000.0 ** (-2.0 * torch.arange(N, dtype=torch.float64) / (2 * N))
    return {"q": _randn(gen, batch, T, H, N, 2), "k": _randn(gen, batch, T, H, N, 2), "v": _randn(gen, batch, T, H, V),
            "theta": base + 0.1 * _randn(gen, H, N)}


def _states(name: str, gen: torch.Generator, batch: int = B) -> tuple[torch.Tensor, ...]:
    spec = spec_of(name)
    out = []
    for s in spec.states:
        x = _randn(gen, batch, H, *(SIZES[d] for d in s.ty.dims))
        out.append(x.abs() + 0.5 if name.startswith("rwkv4") and s.name in ("num", "den", "bb") else x)
    return tuple(out)


MODELS: dict[str, tuple[Callable[..., loops.Result], Callable[..., Inputs]]] = {
    "rwkv4": (loops.rwkv4, _rwkv4_inputs), "rwkv4_stable": (loops.rwkv4_stable, _rwkv4_inputs),
    "titans_momentum": (loops.titans_momentum, _titans_inputs), "rope_retention": (loops.rope_retention, _rope_inputs),
}
CHUNKED = ("rwkv4", "rwkv4_stable")


@functools.cache
def spec_of(name: str) -> recurgen.ir.Spec:
    spec, _ = load_spec(HERE / f"{name}.rec")
    return spec


@functools.cache
def rec_of(name: str) -> recurgen.Recurrence:
    return recurgen.load(HERE / f"{name}.rec")


def test_paper_specs_check_without_warnings() -> None:
    for name in MODELS:
        _, warnings = load_spec(HERE / f"{name}.rec")
        assert not [w.message for w in warnings if name != "rwkv4"]  # rwkv4: its unbounded exp(k), by design


@pytest.mark.parametrize("with_init", [False, True])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_oracle_matches_paper_loop(name: str, with_init: bool) -> None:
    loop, inputs_of = MODELS[name]
    gen = torch.Generator().manual_seed(11)
    inputs = inputs_of(gen, T=9)
    init = _states(name, gen) if with_init else None
    outs, finals = run_reference(spec_of(name), inputs, initial_state=init)
    want_outs, want_finals = loop(**inputs, init=init)
    for n, want in want_outs.items():
        assert_close(f"{name}: {n}", outs[n], want, atol=1e-10, rtol=1e-10)
    if name == "rwkv4_stable" and not with_init:
        # the kernel starts its running max at −1e38, the spec at 0 like every state: the outputs agree (above),
        # and so do the unscaled sums aa·e^pp, bb·e^pp the states stand for
        for n in ("aa", "bb"):
            assert_close(f"{name}: {n}·exp(pp)", finals[n] * torch.exp(finals["pp"]),
                         want_finals[n] * torch.exp(want_finals["pp"]), atol=1e-10, rtol=1e-10)
        return
    for n, want in want_finals.items():
        assert_close(f"{name}: final {n}", finals[n], want, atol=1e-10, rtol=1e-10)


def test_stabilised_wkv_equals_the_plain_one() -> None:
    gen = torch.Generator().manual_seed(3)
    inputs = _rwkv4_inputs(gen)
    plain, _ = run_reference(spec_of("rwkv4"), inputs)
    stable, _ = run_reference(spec_of("rwkv4_stable"), inputs)
    assert_close("wkv", stable["wkv"], plain["wkv"], atol=1e-10, rtol=1e-10)


def _kernel_vs_loop(name: str, mode: str, inputs: Inputs, init: tuple[torch.Tensor, ...],
                    cu_seqlens: list[int] | None = None, backend: str = "triton") -> None:
    """fp32 kernels (outputs, final states, gradients of every input, param and initial state) against the loop."""
    rec, (loop, _) = rec_of(name), MODELS[name]
    spec = spec_of(name)
    xs = {n: x.float().requires_grad_() for n, x in inputs.items()}
    hs = [h.float().requires_grad_() for h in init]
    cu = None if cu_seqlens is None else torch.tensor(cu_seqlens, dtype=torch.int32)
    out, fin = rec(*(xs[n] for n in spec.arg_order), initial_state=hs, output_final_state=True, mode=mode,
                   chunk_size=16 if mode == "chunk" else None, cu_seqlens=cu, backend=backend)
    outs = dict(zip([o.name for o in spec.outputs], out if isinstance(out, tuple) else (out,), strict=True))
    finals = dict(zip([s.name for s in spec.states], fin, strict=True))

    rx = {n: x.detach().double().requires_grad_() for n, x in xs.items()}
    rh = [h.detach().double().requires_grad_() for h in hs]
    if cu_seqlens is None:
        want_outs, want_finals = loop(**rx, init=tuple(rh))
    else:  # each packed sequence on its own, from its own initial state
        per_token = {n for n in rx if n in {i.name for i in spec.inputs}}
        parts = [loop(**{n: (x[:, s:e] if n in per_token else x) for n, x in rx.items()},
                      init=tuple(h[i:i + 1] for h in rh)) for i, (s, e) in enumerate(itertools.pairwise(cu_seqlens))]
        want_outs = {n: torch.cat([p[0][n] for p in parts], 1) for n in parts[0][0]}
        want_finals = {n: torch.cat([p[1][n] for p in parts], 0) for n in parts[0][1]}
    for n, want in want_outs.items():
        assert_close(f"{name} {mode}: {n}", outs[n], want, atol=2e-5, rtol=2e-4)
    for n, want in want_finals.items():
        assert_close(f"{name} {mode}: final {n}", finals[n], want, atol=2e-5, rtol=2e-4)

    gen = torch.Generator().manual_seed(5)
    cots = {n: _randn(gen, *w.shape) for n, w in {**want_outs, **want_finals}.items()}
    got = torch.autograd.grad(sum((t.double() * cots[n]).sum() for n, t in {**outs, **finals}.items()),
                              [*xs.values(), *hs], allow_unused=True)
    want = torch.autograd.grad(sum((t * cots[n]).sum() for n, t in {**want_outs, **want_finals}.items()),
                               [*rx.values(), *rh], allow_unused=True)
    names = [*xs, *(f"h0[{i}]" for i in range(len(hs)))]
    for n, g, w in zip(names, got, want, strict=True):
        scale = w.abs().max().item() if w is not None else 1.0
        assert_close(f"{name} {mode}: d{n}", g if g is not None else torch.zeros_like(w), w,
                     atol=1e-4 * max(scale, 1.0), rtol=1e-3)


def _cases() -> list[object]:
    return [pytest.param(n, m, id=f"{n}-{m}") for n in sorted(MODELS) for m in
            (("recurrent", "chunk") if n in CHUNKED else ("recurrent",))]


def _inputs_and_init(name: str) -> tuple[Inputs, tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(7)
    inputs = MODELS[name][1](gen, T=T if name in CHUNKED else 9)  # two chunks where there is a chunk form
    init = _states(name, gen)
    if name == "rwkv4_stable":  # the running max from where the reference kernel would have it: a past maximum
        init = (*init[:2], init[2].abs())
    return inputs, init


@pytest.mark.interpret
@pytest.mark.parametrize(("name", "mode"), _cases())
def test_kernels_match_paper_loop(name: str, mode: str) -> None:
    _kernel_vs_loop(name, mode, *_inputs_and_init(name))


@pytest.mark.parametrize(("name", "mode"), _cases())
def test_torch_backend_matches_paper_loop(name: str, mode: str) -> None:
    """The torch path (recurrent: the step in torch; chunk: the families in plain torch) on the same cases."""
    _kernel_vs_loop(name, mode, *_inputs_and_init(name), backend="torch")


@pytest.mark.interpret
def test_rwkv4_chunk_varlen_matches_paper_loop() -> None:
    """`prev` in chunk mode starts every packed sequence from its own initial state (one empty sequence)."""
    cu = [0, 3, 3, 4, 22]
    gen = torch.Generator().manual_seed(9)
    inputs = _rwkv4_inputs(gen, T=cu[-1], batch=1)
    _kernel_vs_loop("rwkv4", "chunk", inputs, _states("rwkv4", gen, batch=len(cu) - 1), cu_seqlens=cu)


def test_explain_says_which_specs_run_recurrent_only_and_why() -> None:
    assert rec_of("rwkv4").chunk_reason is None
    assert rec_of("rwkv4_stable").chunk_reason is None
    for name, pair in (("titans_momentum", ("S", "M")), ("rope_retention", ("S0", "S1"))):
        reason = rec_of(name).chunk_reason or ""
        assert f"the update of `{pair[0]}` reads `{pair[1]}`" in reason, reason
        assert "coupled states" in reason, reason


def test_rope_rotation_is_exact_for_a_quarter_turn() -> None:
    """sin/cos in the spec: with θ = π/2 a key written at step 1 is read back rotated by a quarter turn."""
    f64 = torch.float64
    inputs = {"q": torch.zeros(1, 2, 1, 1, 2, dtype=f64), "k": torch.zeros(1, 2, 1, 1, 2, dtype=f64),
              "v": torch.ones(1, 2, 1, 1, dtype=f64), "theta": torch.full((1, 1), math.pi / 2, dtype=f64)}
    inputs["k"][0, 0, 0, 0] = torch.tensor([1.0, 0.0])
    inputs["q"][0, 1, 0, 0] = torch.tensor([0.0, 1.0])  # R_2 q = R(π)(0, 1) = (0, −1); R_1 k = (0, 1)
    outs, _ = run_reference(spec_of("rope_retention"), inputs)
    gamma = 1 - 2 ** -5
    assert outs["o"][0, 1, 0, 0].item() == pytest.approx(-gamma, abs=1e-12)


def test_verify_gives_the_reason_explain_gives(capsys: pytest.CaptureFixture[str]) -> None:
    """`recurgen verify` on a spec without a chunk form names the reason (not "not generated ... yet")."""
    from recurgen.cli import main

    main(["verify", str(HERE / "titans_momentum.rec"), "--modes", "chunk,torch-chunk", "--no-progress"])
    out = capsys.readouterr().out
    reason = rec_of("titans_momentum").chunk_reason
    assert reason is not None
    assert out.count(f"not generated: {reason}") == 2, out
    assert "yet" not in out
