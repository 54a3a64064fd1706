"""Property tests for a custom spec, `my_gated_delta.rec`: the kernels recurgen generated compute exactly what
the spec says — outputs, final states, the gradient of every input, param and initial state, and decode.

Run it with `python -m pytest examples/test_my_gated_delta.py`. Copy it next to your own `.rec` file and change
SPEC; nothing below names this spec's inputs, so it works for any spec.
"""

from __future__ import annotations

import os

# No GPU: run the Triton kernels in the CPU interpreter. This must happen before triton is first imported
# (in your own suite, put it at the top of conftest.py). On a GPU machine, export TRITON_INTERPRET=0.
os.environ.setdefault("TRITON_INTERPRET", "1")

from pathlib import Path

from hypothesis import given, settings

import recurgen
from recurgen.testing import assert_matches_reference, strategies

SPEC = Path(__file__).with_name("my_gated_delta.rec")
rec = recurgen.load(SPEC)  # compiled once, cached on disk


# Triton kernels (forward, final state, backward) and decode, in every dtype, with and without an initial
# state. The interpreter takes seconds per example: keep examples few and shapes small here, and run
# `recurgen verify my_gated_delta.rec --examples 100` (or this file with more examples) before a release.
@settings(max_examples=3, deadline=None)
@given(strategies.inputs(rec, lengths=(1, 2, 5), dim_sizes=(3, 5)))
def test_kernels_match_reference(inputs: strategies.Inputs) -> None:
    assert_matches_reference(rec, inputs, step=True)


# The pure-torch path (what runs on a CPU without the interpreter), checked the same way.
@settings(max_examples=2, deadline=None)
@given(strategies.inputs(rec, dtypes=("fp32",), lengths=(1, 7)))
def test_torch_path_matches_reference(inputs: strategies.Inputs) -> None:
    assert_matches_reference(rec, inputs, backend="torch")


# One fixed, larger case: a split state (several programs per state) and a checkpoint every 4 tokens.
def test_a_longer_sequence() -> None:
    case = strategies.Case(B=2, T=13, H=2, sizes={"K": 8, "V": 6}, dtype="fp32", checkpoint_every=4, tile_budget=16)
    assert_matches_reference(rec, case.inputs(rec.spec))
