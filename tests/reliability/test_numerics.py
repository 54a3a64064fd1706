"""Pin the error bounds docs/numerics.md supports (benchmarks/numerics.py), at small T in the default run.

Every bundled spec × decay regime × backend × dtype must stay within `tolerance(...)` (relative to max |ref|)
of the float64 oracle on its outputs, and its fp32 final state within the fp32 bound. The table shows the
same bounds hold at T = 1024 (Triton, interpreter) and T = 4096 (torch); `-m slow` re-checks every row at
T = 256.
"""

from __future__ import annotations

import pytest

from benchmarks.numerics import BACKENDS, DTYPES, TOLERANCES, cases, measure, tolerance
from recurgen.resources import bundled_spec_names

SPECS = list(bundled_spec_names())


def _in_default_run(decay: str, backend: str, dtype: str) -> bool:
    """Every torch row (cheap); Triton rows in fp32, plus bf16 (the interpreter's bit-level pitfall) for the
    spec's own domain. The interpreter costs ~0.1 s per launch here: the full grid runs under `-m slow`."""
    return backend == "torch" or dtype == "fp32" or (dtype == "bf16" and decay == "random")


def _check(name: str, T: int, everything: bool) -> None:
    failures = []
    for _, decay, backend, dtype in cases([name], BACKENDS, list(DTYPES)):
        if not (everything or _in_default_run(decay, backend, dtype)):
            continue
        row = measure(name, backend, dtype, T, decay)
        bound = tolerance(name, decay, dtype)
        state_bound = tolerance(name, decay, "fp32")  # final states are fp32 whatever the input dtype
        if not row.rel_err <= bound:  # `not <=`: a NaN fails too
            failures.append(f"{decay} {backend} {dtype}: output rel err {row.rel_err:.2e} > {bound:g}")
        if not row.state_rel_err <= state_bound:
            failures.append(f"{decay} {backend} {dtype}: state rel err {row.state_rel_err:.2e} > {state_bound:g}")
    assert not failures, f"{name} at T={T}:\n" + "\n".join(failures)


@pytest.mark.parametrize("name", SPECS)
def test_error_within_the_documented_bounds(name: str) -> None:
    _check(name, T=16, everything=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", SPECS)
def test_error_within_the_documented_bounds_longer(name: str) -> None:
    _check(name, T=256, everything=True)


def test_bounds_are_ordered() -> None:
    """A sanity check on the table's constants: more mantissa bits, a tighter bound."""
    assert TOLERANCES["fp32"] < TOLERANCES["fp16"] < TOLERANCES["bf16"]
