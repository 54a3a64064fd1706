"""The oracle's gradients are right: kernel gradients will be compared against autograd through it.

`torch.autograd.gradcheck` (finite differences in float64) w.r.t. every input, param, initial state and the
`scale` option, at tiny sizes; and the gradients `run_fwd_bwd` collects through the oracle equal those
through the hand-written loops, an independent autograd graph.
"""

from __future__ import annotations

import functools

import pytest
import torch

from recurgen import ir
from recurgen.frontend import load_spec
from recurgen.oracle import run as run_reference
from recurgen.resources import bundled_spec_names
from tests.helpers import assert_close, random_cotangents, random_inputs, random_state, reference_fn, run_fwd_bwd

from .test_vs_loops import LOOPS, SIZES

TINY = {"K": 3, "V": 2, "D": 2, "N": 3, "E": 2, "P": 2}  # distinct sizes; every element is perturbed
B, T, H = 1, 3, 2


@functools.cache
def spec_of(name: str) -> ir.Spec:
    return load_spec(name)[0]


def _gradcheck(name: str, with_init: bool) -> None:
    spec = spec_of(name)
    inputs = random_inputs(spec, B, T, H, TINY, torch.float64, seed=7)
    init = random_state(spec, B, H, TINY, torch.float64, seed=7) if with_init else ()
    options = [o.name for o in spec.options]
    # An option passed as a tensor keeps its graph, so d/d(scale) is checked too.
    option_values = [torch.tensor(0.6, dtype=torch.float64) for _ in options]
    args = tuple(x.detach().clone().requires_grad_(True) for x in (*inputs.values(), *init, *option_values))
    n_in, n_state = len(inputs), len(init)

    def f(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        tensors = dict(zip(inputs, xs[:n_in], strict=True))
        states = xs[n_in:n_in + n_state] or None
        opts = dict(zip(options, xs[n_in + n_state:], strict=True))
        outs, finals = run_reference(spec, tensors, options=opts, initial_state=states)
        return (*outs.values(), *finals.values())

    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-8, rtol=1e-6)


# mlstm's running max makes its gradcheck the slowest by far; its gradients are also checked against the hand
# loop below in the default run.
_SLOW_GRADCHECK = {"mlstm"}


def _names(names: list[str]) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_GRADCHECK else n for n in names]


@pytest.mark.parametrize("name", _names(sorted(bundled_spec_names())))
def test_gradcheck_with_initial_state(name: str) -> None:
    _gradcheck(name, with_init=True)


@pytest.mark.parametrize("name", _names(["gla", "mlstm", "lru"]))
def test_gradcheck_from_zero_state(name: str) -> None:
    _gradcheck(name, with_init=False)


@pytest.mark.parametrize("name", ["gla", "rwkv6", "delta_product", "mlstm", "lru", "mamba"])
def test_gradients_match_hand_loop(name: str) -> None:
    spec = spec_of(name)
    inputs = random_inputs(spec, 2, 4, 2, SIZES, torch.float64, seed=3)
    init = random_state(spec, 2, 2, SIZES, torch.float64, seed=3)
    outs, states = run_reference(spec, inputs, initial_state=init)
    cotangents = random_cotangents({**outs, **states}, seed=3)

    ref = run_fwd_bwd(reference_fn(spec), {**inputs, "initial_state": init}, cotangents)
    hand = run_fwd_bwd(LOOPS[name], {**inputs, "init": init}, cotangents)

    for n in inputs:
        assert_close(f"{name}: d{n}", ref[f"d{n}"], hand[f"d{n}"], atol=1e-10, rtol=1e-10)
    for i in range(len(init)):
        assert_close(f"{name}: dh0[{i}]", ref[f"dinitial_state{i}"], hand[f"dinit{i}"], atol=1e-10, rtol=1e-10)
