"""The oracle (`reference.run` on each bundled spec) equals each model written by hand from its paper.

Two independent executions of the same math: the IR interpreted token by token, and the loops in
`loops.py`, which know nothing of recurgen. Inputs are drawn from the spec's declared domains (the public
helper), and for two models through the paper's own parameterisation (RWKV7's κ̂ and a-gate, HGRN's f and i)
so the spec's reparameterisation is checked too.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from recurgen import ir
from recurgen.frontend import load_spec
from recurgen.oracle import run as run_reference
from recurgen.resources import bundled_spec_names
from tests.helpers import assert_close, random_inputs, random_state

from . import loops

# Both sides are float64 with different operation orders: they agree to ~1e-15 relative; 1e-10 leaves room
# for T-fold accumulation and still catches any real (order-1) difference. Do not loosen it to pass a test.
ATOL = RTOL = 1e-10
B, H = 2, 3  # H = 3: per-head constants (RetNet's γ_h) differ across heads
# Distinct sizes wherever a spec has two dims, so a transposed state or readout cannot pass by accident.
SIZES = {"K": 4, "V": 3, "D": 3, "N": 5, "E": 3, "P": 2, "M": 6}

LOOPS: dict[str, Callable[..., loops.Result]] = {
    "linear_attn": loops.linear_attn, "retention": loops.retention, "simple_gla": loops.simple_gla,
    "gla": loops.gla, "hgrn": loops.hgrn, "hgrn2": loops.hgrn2, "rwkv6": loops.rwkv6, "mamba": loops.mamba,
    "mamba2": loops.mamba2, "longhorn": loops.longhorn, "delta_rule": loops.delta_rule,
    "gated_delta_rule": loops.gated_delta_rule, "delta_product": loops.delta_product, "kda": loops.kda,
    "rwkv7": loops.rwkv7, "mlstm": loops.mlstm, "lru": loops.lru, "s5": loops.s5, "s4d": loops.s4d,
    "gateloop": loops.gateloop, "comba": loops.comba, "rwkv5": loops.rwkv5, "hawk": loops.hawk,
    "mingru": loops.mingru, "mamba3": loops.mamba3, "gsa": loops.gsa,
    "based": loops.based, "linoss": loops.linoss,
}

Inputs = dict[str, torch.Tensor]


def _randn(shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float64)


def _rwkv7_paper(inputs: Inputs, seed: int) -> tuple[Inputs, Inputs]:
    """RWKV-7's own parameters: a = −κ̂, b = κ̂ ⊙ a_gate (κ̂ unit, a_gate ∈ (0, 1)), w ∈ (−e^{−1/2}, 0)."""
    gen = torch.Generator().manual_seed(seed)
    shape = inputs["k"].shape
    kappa = F.normalize(_randn(shape, gen), dim=-1)
    a_gate = torch.sigmoid(_randn(shape, gen))
    w = -math.exp(-0.5) * torch.sigmoid(_randn(shape, gen))
    spec_inputs = {**inputs, "a": -kappa, "b": kappa * a_gate, "w": w}
    return spec_inputs, spec_inputs


def _hgrn_paper(inputs: Inputs, seed: int) -> tuple[Inputs, Inputs]:
    """HGRN's own gates: forget gate f ∈ (0, 1) and candidate i; the spec takes g = log f and x = (1 − f) ⊙ i."""
    gen = torch.Generator().manual_seed(seed)
    f = torch.sigmoid(_randn(inputs["x"].shape, gen))
    i = _randn(inputs["x"].shape, gen)
    return {"x": (1 - f) * i, "g": torch.log(f)}, {"f": f, "i": i}


PAPER_INPUTS: dict[str, Callable[[Inputs, int], tuple[Inputs, Inputs]]] = {
    "rwkv7": _rwkv7_paper, "hgrn": _hgrn_paper,
}


@functools.cache
def spec_of(name: str) -> ir.Spec:
    return load_spec(name)[0]


def _cases() -> list[object]:
    cases = []
    for name in sorted(LOOPS):
        has_scale = any(o.name == "scale" for o in spec_of(name).options)
        cases += [pytest.param(name, 7, False, None, id=f"{name}-T7"),
                  pytest.param(name, 7, True, None, id=f"{name}-T7-init"),
                  pytest.param(name, 1, True, None, id=f"{name}-T1-init")]
        if has_scale:
            cases.append(pytest.param(name, 5, True, {"scale": 0.37}, id=f"{name}-T5-init-scale"))
    return cases


def test_every_bundled_spec_has_a_hand_loop() -> None:
    assert set(LOOPS) == set(bundled_spec_names())


@pytest.mark.parametrize(("name", "T", "with_init", "options"), _cases())
def test_reference_matches_hand_loop(name: str, T: int, with_init: bool, options: dict[str, float] | None) -> None:
    spec = spec_of(name)
    seed = 1234 + T
    inputs = random_inputs(spec, B, T, H, SIZES, torch.float64, seed)
    spec_inputs, loop_inputs = PAPER_INPUTS.get(name, lambda x, _: (x, x))(inputs, seed)
    init = random_state(spec, B, H, SIZES, torch.float64, seed) if with_init else None

    ref_out, ref_states = run_reference(spec, spec_inputs, options=options, initial_state=init)
    loop_out, loop_states = LOOPS[name](**loop_inputs, **(options or {}), init=init)

    assert ref_out.keys() == loop_out.keys()
    assert ref_states.keys() == loop_states.keys()
    for n, expected in loop_out.items():
        assert_close(f"{name}: output {n}", ref_out[n], expected, atol=ATOL, rtol=RTOL)
    for n, expected in loop_states.items():
        assert ref_states[n].dtype == (torch.complex128 if expected.is_complex() else torch.float64)
        assert_close(f"{name}: final state {n}", ref_states[n], expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name", ["gla", "retention", "mamba2"])
def test_default_scale_is_inverse_sqrt_of_k(name: str) -> None:
    """The implicit `scale` option defaults to K^-1/2, as fla's ops do (and mamba2 has none: scale 1)."""
    spec = spec_of(name)
    defaults = {o.name for o in spec.options if not ir.is_hidden(o.name)}  # not `given(z)`'s flag
    if name == "mamba2":
        assert defaults == set()
        return
    inputs = random_inputs(spec, 1, 3, 2, SIZES, torch.float64, 0)
    implicit, _ = run_reference(spec, inputs)
    explicit, _ = run_reference(spec, inputs, options={"scale": SIZES["K"] ** -0.5})
    assert_close(f"{name}: default scale", implicit["o"], explicit["o"], atol=0, rtol=0)
