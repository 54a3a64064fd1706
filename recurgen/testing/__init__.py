"""recurgen.testing: property-test the kernels recurgen generated for your spec, inside your own test suite.

    from hypothesis import given, settings
    import recurgen
    from recurgen.testing import assert_matches_reference, strategies

    rec = recurgen.load("my.rec")

    @settings(max_examples=5, deadline=None)
    @given(strategies.inputs(rec))
    def test_kernels(inputs):
        assert_matches_reference(rec, inputs)

Any function with the spec's public call (a hand-written or third-party kernel) is checked the same way:
`assert_matches_reference(my_gla, inputs, spec="gla")`, or `recurgen verify gla --against my_kernels:my_gla`
(docs/testing.md).

The same checks run as `recurgen verify my.rec` and as `pytest --recurgen-spec my.rec` (the pytest plugin).
On a machine without a GPU, set TRITON_INTERPRET=1 before triton is imported (e.g. at the top of conftest.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recurgen import ir
from recurgen.testing import foreign, strategies
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


def _subject(module_or_spec: Any, spec: Any) -> Any:
    """The thing to check: a `Recurrence`, or (with `spec`) any function with the spec's public call."""
    from recurgen.api import Recurrence, load

    if spec is not None:
        if isinstance(module_or_spec, Recurrence):
            raise TypeError("`spec=` is for a function of your own; a Recurrence carries its spec already")
        return foreign.subject(module_or_spec, spec)
    if isinstance(module_or_spec, Recurrence):
        return module_or_spec
    if isinstance(module_or_spec, (str, Path)):
        return load(module_or_spec)
    if isinstance(module_or_spec, ir.Spec):
        raise TypeError("pass a Recurrence (recurgen.load(...)) or a spec name/path, not an ir.Spec: the kernels "
                        "come from the compiled module")
    if callable(module_or_spec):
        raise TypeError(f"to check a function ({getattr(module_or_spec, '__qualname__', module_or_spec)!s}), say "
                        "which spec it computes: assert_matches_reference(fn, inputs, spec=\"gla\")")
    raise TypeError(f"expected a Recurrence, a spec name/path, or a function with spec=, got "
                    f"{type(module_or_spec).__name__}")


def assert_matches_reference(module_or_spec: Any, inputs: Mapping[str, Any], *, spec: Any = None,
                             grads: bool = True, rtol: float | None = None, backend: str | None = None,
                             checkpoint_every: int | None = None, step: bool = False) -> Outcome:
    """Check a compiled spec, or any function computing one, against the float64 oracle on `inputs`: outputs,
    final states and (with `grads`) the gradient of every input, param and initial state; with `step`, also
    `step` applied token by token.

    Args:
        module_or_spec: a `Recurrence` (from `recurgen.load`, or `load_module_file` for a generated file), a
            spec name/path (loaded), or — with `spec` — any function with the spec's public call (a hand-written
            or third-party kernel): called as `fn(**inputs_and_params_by_public_name, [scale=,] initial_state=,
            output_final_state=True[, cu_seqlens=])`, returning `(outputs, final_state)`. What it cannot do (no
            `initial_state` / `output_final_state` / `cu_seqlens` parameter, a None final state, outputs that
            do not require grad) is skipped and listed in the returned `Outcome.unchecked`.
        inputs: call arguments by name: every input and param, and `initial_state` (tuple, tensor or None) —
            what `strategies.inputs` draws. Inputs are in the dtype to test; the oracle gets float64 copies of
            the same rounded values, so only the kernels' own error counts.
        spec: the spec a function computes (a bundled name, a .rec path, or a Recurrence / ir.Spec).
        rtol: the error allowed relative to each tensor's largest magnitude; default per dtype (TOLERANCES).
        backend: "triton", "torch" or None (the module's choice: Triton on a GPU or under the interpreter);
            not passed to a function.
    Returns:
        The comparisons (each with its worst relative error), when everything matches.
    Raises:
        AssertionError: naming each output, state or gradient that differs, its worst error, where (index,
            both values) and the case (shapes, dtype, seed) when `inputs` came from `strategies.inputs`.
        TypeError: a function without `spec`, or `step=True` for a function (it has no `step`).
    """
    speed_up()  # under the interpreter: the same bits, faster (recurgen.testing.interpreter); else nothing
    rec = _subject(module_or_spec, spec)
    is_fn = isinstance(rec, foreign.Subject)
    if is_fn and (step or backend is not None or checkpoint_every is not None):
        raise TypeError("step=, backend= and checkpoint_every= are for recurgen modules, not for a function")
    case = getattr(inputs, "case", None)
    ckpt = None if is_fn else checkpoint_every if checkpoint_every is not None else (
        case.checkpoint_every if case else None)
    from recurgen.testing.checks import tile_budget

    with tile_budget(rec.module, case.tile_budget if case else None):
        outcome = check_forward_backward(rec, inputs, backend=backend, grads=grads, rtol=rtol,
                                         checkpoint_every=ckpt, seed=case.seed if case else 0)
        if step:
            outcome.comparisons += check_step(rec, inputs, backend=backend, rtol=rtol).comparisons
    bad = outcome.failures()
    if bad:
        where = f" on case {case.to_arg()}" if case else ""
        who = f"{rec.label} against {rec.name}" if is_fn else rec.name
        lines = [f"{who}: {len(bad)} of {len(outcome.comparisons)} comparisons against the float64 oracle "
                 f"failed{where}:"]
        lines += [f"- {c.message} (worst relative error {c.rel_error:.3e})" for c in bad]
        if outcome.unchecked:
            lines.append("not checked: " + "; ".join(outcome.unchecked))
        raise AssertionError("\n".join(lines))
    return outcome
