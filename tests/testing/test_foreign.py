"""Property-testing a kernel recurgen did not generate: `assert_matches_reference(fn, inputs, spec=...)` and
`recurgen verify SPEC --against MODULE:FUNCTION` check any function with the spec's public call against the
spec's float64 oracle, report what such a function could not be checked for, and catch and shrink a one-token
indexing slip."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings

from recurgen import verify
from recurgen.runtime.cache import import_file
from recurgen.testing import assert_matches_reference, foreign, strategies

ROOT = Path(__file__).resolve().parents[2]
BY_HAND = ROOT / "examples" / "gla_by_hand.py"
GLA = ROOT / "specs" / "gla.rec"
gla_by_hand = import_file("gla_by_hand_example", BY_HAND)  # examples/ is not a package


@settings(max_examples=8, deadline=None)
@given(strategies.inputs(GLA, lengths=(1, 2, 5, 17)))
def test_a_hand_written_loop_matches_the_spec(inputs: dict) -> None:
    outcome = assert_matches_reference(gla_by_hand.gla_loop, inputs, spec=GLA)
    assert outcome.comparisons
    assert not outcome.unchecked
    labels = {c.label for c in outcome.comparisons}
    assert {"output o", "final state S", "gradient dq", "gradient dg"} <= labels


def test_a_one_token_slip_fails_with_the_case() -> None:
    inputs = strategies.Case(B=1, T=3, H=1, sizes={"K": 3, "V": 4}, seed=5).inputs(foreign.subject(
        gla_by_hand.gla_loop_slip, "gla").spec)
    with pytest.raises(AssertionError) as err:
        assert_matches_reference(gla_by_hand.gla_loop_slip, inputs, spec="gla")
    text = str(err.value)
    assert text.startswith("gla_loop_slip against gla:")
    assert "output o:" in text
    assert "B=1,T=3,H=1" in text


def test_what_a_function_lacks_is_skipped_and_reported() -> None:
    def forward_only(q, k, v, g, scale=None):  # no initial state, no final state, no backward
        with torch.no_grad():
            return gla_by_hand.gla_loop(q, k, v, g, scale)[0]

    inputs = strategies.Case(B=2, T=5, H=2, sizes={"K": 4, "V": 3}, seed=1).inputs(foreign.subject(
        forward_only, "gla").spec)
    outcome = assert_matches_reference(forward_only, inputs, spec="gla")
    assert [c.label for c in outcome.comparisons] == ["output o"]
    assert any(u.startswith("initial state") for u in outcome.unchecked)
    assert any(u.startswith("final state") for u in outcome.unchecked)
    assert any(u.startswith("backward") for u in outcome.unchecked)
    # a function without cu_seqlens: a packed case is skipped, saying why
    packed = strategies.Case(B=1, T=5, H=1, sizes={"K": 4, "V": 3}, splits=(2, 3)).inputs(foreign.subject(
        forward_only, "gla").spec)
    outcome = assert_matches_reference(forward_only, packed, spec="gla")
    assert not outcome.comparisons
    assert "cu_seqlens" in outcome.skipped


def test_a_function_without_spec_is_a_clear_type_error() -> None:
    inputs = strategies.Case(T=2).inputs(foreign.subject(gla_by_hand.gla_loop, "gla").spec)
    with pytest.raises(TypeError, match=r'spec="gla"'):
        assert_matches_reference(gla_by_hand.gla_loop, inputs)
    with pytest.raises(TypeError, match="for recurgen modules"):
        assert_matches_reference(gla_by_hand.gla_loop, inputs, spec="gla", step=True)


@pytest.mark.parametrize("target", ["nope", "x.py:f", "json:no_such_function", "json:__name__"])
def test_bad_against_targets_say_what_is_wrong(target: str) -> None:
    with pytest.raises(ValueError, match=r"MODULE:FUNCTION|no such file|has no|not a function"):
        foreign.load_function(target)


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recurgen", "verify", *argv], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, check=False)


def test_cli_passes_a_correct_function() -> None:
    proc = _cli("specs/gla.rec", "--against", "examples/gla_by_hand.py:gla_loop", "--examples", "4",
                "--dtypes", "fp32", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(function examples/gla_by_hand.py:gla_loop)" in proc.stdout
    assert "gla: ok" in proc.stdout


def test_cli_catches_and_shrinks_a_one_token_slip() -> None:
    proc = _cli("gla", "--against", "examples/gla_by_hand.py:gla_loop_slip", "--examples", "6", "--dtypes", "fp32",
                "--seed", "3", "--no-progress")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL gla --against function: minimal counterexample" in proc.stdout
    # T = 1 cannot show the slip (g[:, -1] is g[:, 0]): the shrinker lands on two tokens, one row, one head
    assert "shapes: B=1 T=2 H=1" in proc.stdout
    replay = next(line.split("replay: ", 1)[1] for line in proc.stdout.splitlines() if "replay: " in line)
    words = shlex.split(replay)
    assert words[:5] == ["recurgen", "verify", "gla", "--against", "examples/gla_by_hand.py:gla_loop_slip"]
    again = _cli(*words[2:], "--no-progress")
    assert again.returncode == 1
    assert "replaying B=1,T=2,H=1" in again.stdout


def test_cli_against_usage_errors() -> None:
    proc = _cli("gla", "--against", "examples/gla_by_hand.py:no_such", "--no-progress")
    assert proc.returncode == verify.EXIT_USAGE
    assert "--against:" in proc.stderr
    assert "no_such" in proc.stderr


def test_fla_chunk_gla_matches_the_spec() -> None:
    if not torch.cuda.is_available():  # fla's chunk kernels do not run in Triton's interpreter (docs/testing.md)
        pytest.skip("fla's chunk_gla needs a GPU")
    try:
        from fla.ops.gla import chunk_gla  # type: ignore[import-not-found]
    except Exception as err:  # missing, or failing to import: nothing to check
        pytest.skip(f"flash-linear-attention is not importable ({type(err).__name__})")
    for seed, T in ((2, 16), (3, 77)):
        inputs = strategies.Case(B=2, T=T, H=2, sizes={"K": 32, "V": 16}, seed=seed).inputs(
            foreign.subject(chunk_gla, "gla").spec, device="cuda")
        outcome = assert_matches_reference(chunk_gla, inputs, spec="gla")
        assert not outcome.unchecked
