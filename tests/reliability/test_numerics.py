"""Pin the error bounds docs/numerics.md supports (benchmarks/numerics.py), at small T in the default run.

Every bundled spec × decay regime × backend × dtype must stay within `tolerance(...)` (relative to max |ref|)
of the float64 oracle on its outputs, and its fp32 final state within the fp32 bound. The table shows the
same bounds hold at T = 1024 (Triton, interpreter) and T = 4096 (torch); `-m slow` re-checks every row at
T = 256. Chunk mode (`mode="chunk"`, every spec with a chunk form) is pinned to `CHUNK_TOLERANCES` at
T = CHUNK_TEST_T (fp32, each spec's own domain; partial chunks included) and, under `-m slow`, every decay
and dtype at T = CHUNK_SLOW_T; the table shows the bounds at T = 4096 and, for a few specs, T = 65536.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import recurgen
from benchmarks.numerics import (
    CHUNK_SLOW_T,
    CHUNK_TEST_T,
    CHUNK_TOLERANCES,
    DTYPES,
    TOLERANCES,
    cases,
    measure,
    state_tolerance,
    tolerance,
)
from recurgen.resources import bundled_spec_names

SPECS = list(bundled_spec_names())
CHUNKED = [n for n in SPECS if recurgen.load(n).chunk_reason is None]  # the specs with chunk kernels
RECURRENT = ("triton", "torch")


def _in_default_run(decay: str, backend: str, dtype: str) -> bool:
    """Every torch row (cheap); Triton rows in fp32, plus bf16 (the interpreter's bit-level pitfall) for the
    spec's own domain. The interpreter costs ~0.1 s per launch here: the full grid runs under `-m slow`."""
    return backend == "torch" or dtype == "fp32" or (dtype == "bf16" and decay == "random")


def _in_default_chunk_run(decay: str, backend: str, dtype: str) -> bool:
    """Chunk mode in the default run: fp32 on the spec's own domain (~1 s per spec); the rest under `-m slow`."""
    return dtype == "fp32" and decay == "random"


def _check(name: str, T: int, everything: bool, backends: tuple[str, ...] = RECURRENT,
           default: Callable[[str, str, str], bool] = _in_default_run) -> None:
    failures = []
    for _, decay, backend, dtype in cases([name], backends, list(DTYPES)):
        if not (everything or default(decay, backend, dtype)):
            continue
        row = measure(name, backend, dtype, T, decay)
        bound = tolerance(name, decay, dtype, backend)
        state_bound = state_tolerance(name, decay, dtype, backend)  # final states are fp32 whatever the inputs
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


@pytest.mark.interpret
@pytest.mark.parametrize("name", CHUNKED)
def test_chunk_mode_error_within_the_documented_bounds(name: str) -> None:
    _check(name, T=CHUNK_TEST_T, everything=False, backends=("chunk",), default=_in_default_chunk_run)


@pytest.mark.slow
@pytest.mark.interpret
@pytest.mark.parametrize("name", CHUNKED)
def test_chunk_mode_error_within_the_documented_bounds_longer(name: str) -> None:
    _check(name, T=CHUNK_SLOW_T, everything=True, backends=("chunk",))


def test_bounds_are_ordered() -> None:
    """A sanity check on the table's constants: more mantissa bits, a tighter bound."""
    for bounds in (TOLERANCES, CHUNK_TOLERANCES):
        assert bounds["fp32"] < bounds["fp16"] < bounds["bf16"]
