"""recurgen.testing: property-test the kernels recurgen generated for your spec, inside your own test suite.

    from hypothesis import given, settings
    import recurgen
    from recurgen.testing import assert_matches_reference, strategies

    rec = recurgen.load("my.rec")

    @settings(max_examples=5, deadline=None)
    @given(strategies.inputs(rec))
    def test_kernels(inputs):
        assert_matches_reference(rec, inputs)

The same checks run as `recurgen verify my.rec` and as `pytest --recurgen-spec my.rec` (the pytest plugin).
On a machine without a GPU, set TRITON_INTERPRET=1 before triton is imported (e.g. at the top of conftest.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recurgen import ir
from recurgen.testing import strategies
from recurgen.testing.checks import (
    DTYPES,
    MODES,
    TOLERANCES,
    Case,
    Inputs,
    Outcome,
    check_forward_backward,
    check_step,
    load_module_file,
)
from recurgen.testing.compare import assert_close, rms_error, run_fwd_bwd
from recurgen.testing.interpreter import speed_up
from recurgen.testing.sampling import random_cotangents, random_inputs, random_state, resolve_sizes, sample_domain

__all__ = ["DTYPES", "MODES", "TOLERANCES", "Case", "Inputs", "Outcome", "assert_close", "assert_matches_reference",
           "check_forward_backward", "check_step", "load_module_file", "random_cotangents", "random_inputs",
           "random_state", "resolve_sizes", "rms_error", "run_fwd_bwd", "sample_domain", "strategies"]


def _recurrence(module_or_spec: Any) -> Any:
    from recurgen.api import Recurrence, load

    if isinstance(module_or_spec, Recurrence):
        return module_or_spec
    if isinstance(module_or_spec, (str, Path)):
        return load(module_or_spec)
    if isinstance(module_or_spec, ir.Spec):
        raise TypeError("pass a Recurrence (recurgen.load(...)) or a spec name/path, not an ir.Spec: the kernels "
                        "come from the compiled module")
    raise TypeError(f"expected a Recurrence or a spec name/path, got {type(module_or_spec).__name__}")


def assert_matches_reference(module_or_spec: Any, inputs: Mapping[str, Any], *, grads: bool = True,
                             rtol: float | None = None, backend: str | None = None,
                             checkpoint_every: int | None = None, step: bool = False) -> Outcome:
    """Check a compiled spec against the float64 oracle on `inputs`: outputs, final states and (with `grads`)
    the gradient of every input, param and initial state; with `step`, also `step` applied token by token.

    Args:
        module_or_spec: a `Recurrence` (from `recurgen.load`, or `load_module_file` for a generated file), or a
            spec name/path (loaded).
        inputs: call arguments by name: every input and param, and `initial_state` (tuple, tensor or None) —
            what `strategies.inputs` draws. Inputs are in the dtype to test; the oracle gets float64 copies of
            the same rounded values, so only the kernels' own error counts.
        rtol: the error allowed relative to each tensor's largest magnitude; default per dtype (TOLERANCES).
        backend: "triton", "torch" or None (the module's choice: Triton on a GPU or under the interpreter).
    Returns:
        The comparisons (each with its worst relative error), when everything matches.
    Raises:
        AssertionError: naming each output, state or gradient that differs, its worst error, where (index,
            both values) and the case (shapes, dtype, seed) when `inputs` came from `strategies.inputs`.
    """
    speed_up()  # under the interpreter: the same bits, faster (recurgen.testing.interpreter); else nothing
    rec = _recurrence(module_or_spec)
    case = getattr(inputs, "case", None)
    ckpt = checkpoint_every if checkpoint_every is not None else (case.checkpoint_every if case else None)
    from recurgen.testing.checks import tile_budget

    with tile_budget(rec.module, case.tile_budget if case else None):
        outcome = check_forward_backward(rec, inputs, backend=backend, grads=grads, rtol=rtol,
                                         checkpoint_every=ckpt, seed=case.seed if case else 0)
        if step:
            outcome.comparisons += check_step(rec, inputs, backend=backend, rtol=rtol).comparisons
    bad = outcome.failures()
    if bad:
        where = f" on case {case.to_arg()}" if case else ""
        lines = [f"{rec.name}: {len(bad)} of {len(outcome.comparisons)} comparisons against the float64 oracle "
                 f"failed{where}:"]
        lines += [f"- {c.message} (worst relative error {c.rel_error:.3e})" for c in bad]
        raise AssertionError("\n".join(lines))
    return outcome
