"""Which bundled specs train with the two-sweep backward (no stored state), and along which dim it splits them.

A spec falling back to checkpoints still computes the right gradients (tests/kernels checks those), but moves
10-20x the bytes: this pins the choice so that a change to the sweep planner cannot lose a spec silently.
"""

from __future__ import annotations

import pytest

import recurgen
from recurgen.codegen.plan import plan_recurrent

TWO_SWEEPS = {"gla": "K", "simple_gla": "K", "linear_attn": "K", "retention": "K", "hgrn2": "K",
              "rwkv5": "K", "rwkv6": "K", "mamba": "E", "mamba2": "P"}


@pytest.mark.parametrize(("name", "split"), sorted(TWO_SWEEPS.items()))
def test_two_sweeps_and_split(name: str, split: str) -> None:
    sweeps = plan_recurrent(recurgen.load(name).spec).sweeps
    assert sweeps is not None, f"{name}: backward from checkpoints, not two sweeps"
    assert sweeps.split == split


def test_prev_readout_is_read_before_the_recompute() -> None:
    """RWKV6 reads S_{t-1}: its dr is taken before b_S is overwritten, and its bonus has no state-sized term."""
    sweeps = plan_recurrent(recurgen.load("rwkv6").spec).sweeps
    assert sweeps is not None
    body = sweeps.fwd_body.splitlines()
    store_dr = next(i for i, line in enumerate(body) if line.startswith("tl.store(dx_r"))
    assign = next(i for i, line in enumerate(body) if line.startswith("b_S = "))
    assert store_dr < assign
    assert not [line for line in body if line.startswith("b_f") and line.endswith("# [K, V]")]


def test_state_free_readout_term_in_the_backward_sweep() -> None:
    """Mamba's D * u term gives u a readout gradient that reads no state: taken with u's drive gradient."""
    sweeps = plan_recurrent(recurgen.load("mamba").spec).sweeps
    assert sweeps is not None
    assert "dx_u" in sweeps.bwd_body
    assert "dx_u" not in sweeps.fwd_body


@pytest.mark.parametrize("name", ["gla", "hgrn2"])
def test_decay_sum_is_zeroed_not_multiplied(name: str) -> None:
    """Without an initial state z_1 is exactly 0: assigned zeros, never `z * 0.0` (which keeps a NaN or inf)."""
    sweeps = plan_recurrent(recurgen.load(name).spec).sweeps
    assert sweeps is not None
    assert "* 0.0" not in sweeps.bwd_body
    assert "b_z_S = tl.zeros_like(b_z_S)" in sweeps.bwd_body


# fp32 state elements per backward program: two K = 64 tiles of a 128 x 128 state where few split-dim vectors are
# live per token (checked spill-free on sm_80/sm_90 by tests/kernels/test_gpu_compile.py), four K = 32 tiles else
WIDE = {"gla", "simple_gla", "linear_attn", "retention", "hgrn2", "rwkv6"}


@pytest.mark.parametrize("name", sorted(TWO_SWEEPS))
def test_tile_budget(name: str) -> None:
    sweeps = plan_recurrent(recurgen.load(name).spec).sweeps
    assert sweeps is not None
    assert sweeps.tile_budget == (8192 if name in WIDE else 4096)


def test_loads_sink_to_their_first_use() -> None:
    """A sweep loads each input just before the first statement that reads it (its tile lives from there), and
    before a block (`if`) that reads it in an indented line."""
    from recurgen.codegen.kernel_text import sink_loads

    loads = ["b_a = tl.load(pa)", "b_b = tl.load(pb)", "b_c = tl.load(pc)"]
    code = ["b_x = b_b * 2.0", "if FLAG:", "    b_x += b_a", "b_y = b_x + b_b"]
    assert sink_loads(loads, code) == ["b_b = tl.load(pb)", "b_x = b_b * 2.0", "b_a = tl.load(pa)", "if FLAG:",
                                       "    b_x += b_a", "b_y = b_x + b_b"]
    body = plan_recurrent(recurgen.load("gla").spec).sweeps.bwd_body.splitlines()
    load_g = next(i for i, line in enumerate(body) if line.startswith("b_g = tl.load("))
    assert "tl.exp(b_g)" in body[load_g + 1]


def test_factored_decay_keeps_a_reduced() -> None:
    """Mamba's decay log Δ_t ⊙ A: a_t is kept per token at Δ's dims ([E], not [E, N]), and per 64-token segment
    at the log's dims (the restart that bounds the split sums' cancellation)."""
    sweeps = plan_recurrent(recurgen.load("mamba").spec).sweeps
    assert sweeps is not None
    assert sweeps.scratch == (("h", ("E",)),)
    assert sweeps.segments == (("h", ("E", "N")),)
    gla = plan_recurrent(recurgen.load("gla").spec).sweeps
    assert gla is not None
    assert gla.segments == ()
