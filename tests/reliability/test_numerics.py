"""Pin the error bounds docs/numerics.md supports (benchmarks/numerics.py), at small T in the default run.

Every bundled spec × decay regime × backend × dtype must stay within `tolerance(...)` (relative to max |ref|)
of the float64 oracle on its outputs, and its fp32 final state within the fp32 bound; the fp32 rows on the
spec's own domain also check their gradients against `GRAD_TOLERANCES` (under `-m slow`: every fp32 row's,
and every dtype's on the own domain). The table shows the same bounds hold at T = 1024 and 4096 (Triton,
interpreter) and T = 4096 (torch); `-m slow` re-checks every row at T = 256. Chunk mode (`mode="chunk"`,
every spec with a chunk form) is pinned to `CHUNK_TOLERANCES` at T = CHUNK_TEST_T (fp32, each spec's own
domain; partial chunks included) and, under `-m slow`, every decay and dtype at T = CHUNK_SLOW_T; the table
shows the bounds at T = 4096 and 65536. Chunk-mode gradients (of every input, param and the initial state,
against autograd through the oracle) are pinned to `GRAD_TOLERANCES["chunk"]` (see `grad_tolerance`) at
T = CHUNK_TEST_T in fp32 on each spec's own domain, in the same call as the forward check (the costliest
backward kernels under the interpreter, `SLOW_GRAD`, only under `-m slow`), and under `-m slow` for every
fp32 decay and every dtype on the own domain at T = CHUNK_SLOW_T; the table shows the bounds at T = 4096.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import recurgen
from benchmarks.numerics import (
    CHUNK_SLOW_T,
    CHUNK_TEST_T,
    CHUNK_TOLERANCES,
    DTYPES,
    GRAD_TOLERANCES,
    TOLERANCES,
    cases,
    grad_tolerance,
    measure,
    rows_from_table,
    state_tolerance,
    tolerance,
)
from recurgen.resources import bundled_spec_names

SPECS = list(bundled_spec_names())
CHUNKED = [n for n in SPECS if recurgen.load(n).chunk_reason is None]  # the specs with chunk kernels
RECURRENT = ("triton", "torch")
# Chunk-mode forward + backward over ~20 s at T = CHUNK_TEST_T under the interpreter on the shared test machine
# (delta_product: 33 s; the scans with 2-D or complex states cost 35-110 s at T = 256): their gradient check
# runs under `-m slow` only.
SLOW_GRAD = frozenset({"delta_product", "gateloop", "longhorn", "mamba", "s4d"})


def _in_default_run(decay: str, backend: str, dtype: str) -> bool:
    """Every torch row (cheap); Triton rows in fp32, plus bf16 (the interpreter's bit-level pitfall) for the
    spec's own domain. The interpreter costs ~0.1 s per launch here: the full grid runs under `-m slow`."""
    return backend == "torch" or dtype == "fp32" or (dtype == "bf16" and decay == "random")


def _in_default_chunk_run(decay: str, backend: str, dtype: str) -> bool:
    """Chunk mode in the default run: fp32 on the spec's own domain (~1 s per spec); the rest under `-m slow`."""
    return dtype == "fp32" and decay == "random"


def _never(decay: str, backend: str, dtype: str) -> bool:
    return False


def _fp32(decay: str, backend: str, dtype: str) -> bool:
    return dtype == "fp32"


def _fp32_own_domain(decay: str, backend: str, dtype: str) -> bool:
    return dtype == "fp32" and decay == "random"


def _fp32_or_own_domain(decay: str, backend: str, dtype: str) -> bool:
    """Rows whose gradients are checked under `-m slow`: fp32 with every decay, every dtype on the spec's own
    domain (the table has no half-dtype gradients with pinned decays)."""
    return dtype == "fp32" or decay == "random"


def _check(name: str, T: int, everything: bool, backends: tuple[str, ...] = RECURRENT,
           default: Callable[[str, str, str], bool] = _in_default_run,
           grad: Callable[[str, str, str], bool] = _never) -> None:
    """Every selected row within its bounds; rows `grad` selects also measure (and check) their gradients, in
    the same call: the forward is unchanged by it."""
    failures = []
    for _, decay, backend, dtype in cases([name], backends, list(DTYPES)):
        if not (everything or default(decay, backend, dtype)):
            continue
        with_grad = grad(decay, backend, dtype)
        row = measure(name, backend, dtype, T, decay, grad=with_grad)
        bound = tolerance(name, decay, dtype, backend)
        state_bound = state_tolerance(name, decay, dtype, backend)  # final states are fp32 whatever the inputs
        if not row.rel_err <= bound:  # `not <=`: a NaN fails too
            failures.append(f"{decay} {backend} {dtype}: output rel err {row.rel_err:.2e} > {bound:g}")
        if not row.state_rel_err <= state_bound:
            failures.append(f"{decay} {backend} {dtype}: state rel err {row.state_rel_err:.2e} > {state_bound:g}")
        if with_grad:
            grad_bound = grad_tolerance(name, decay, dtype, backend)
            assert grad_bound is not None, f"no documented gradient bound for {backend} {dtype}"
            if row.grad_rel_err is None or not row.grad_rel_err <= grad_bound:
                failures.append(f"{decay} {backend} {dtype}: gradient `{row.grad_worst}` rel err "
                                f"{row.grad_rel_err} > {grad_bound:g}")
    assert not failures, f"{name} at T={T}:\n" + "\n".join(failures)


@pytest.mark.parametrize("name", SPECS)
def test_error_within_the_documented_bounds(name: str) -> None:
    """Forward rows, and the gradients of the fp32 rows on the spec's own domain (both backends)."""
    _check(name, T=16, everything=False, grad=_fp32_own_domain)


@pytest.mark.slow
@pytest.mark.parametrize("name", SPECS)
def test_error_within_the_documented_bounds_longer(name: str) -> None:
    _check(name, T=256, everything=True, grad=_fp32_or_own_domain)


@pytest.mark.interpret
@pytest.mark.parametrize("name", CHUNKED)
def test_chunk_mode_error_within_the_documented_bounds(name: str) -> None:
    """Forward, and (outside SLOW_GRAD) the gradients of the same fp32 call."""
    _check(name, T=CHUNK_TEST_T, everything=False, backends=("chunk",), default=_in_default_chunk_run,
           grad=_never if name in SLOW_GRAD else _fp32)


@pytest.mark.slow
@pytest.mark.interpret
@pytest.mark.parametrize("name", sorted(SLOW_GRAD))
def test_chunk_mode_gradients_within_the_documented_bounds_costly(name: str) -> None:
    _check(name, T=CHUNK_TEST_T, everything=False, backends=("chunk",), default=_in_default_chunk_run, grad=_fp32)


@pytest.mark.slow
@pytest.mark.interpret
@pytest.mark.parametrize("name", CHUNKED)
def test_chunk_mode_error_within_the_documented_bounds_longer(name: str) -> None:
    """Every decay and dtype; the gradients of the fp32 rows and of every dtype on the spec's own domain."""
    _check(name, T=CHUNK_SLOW_T, everything=True, backends=("chunk",), grad=_fp32_or_own_domain)


def test_bounds_are_ordered() -> None:
    """A sanity check on the table's constants: more mantissa bits, a tighter bound."""
    for bounds in (TOLERANCES, CHUNK_TOLERANCES):
        assert bounds["fp32"] < bounds["fp16"] < bounds["bf16"]
    # a gradient sums many products: it may not be held tighter than the forward of the same dtype
    for backend, grad_bounds in GRAD_TOLERANCES.items():
        for dtype, bound in grad_bounds.items():
            assert bound >= (CHUNK_TOLERANCES if backend == "chunk" else TOLERANCES)[dtype]


def test_every_table_row_is_within_its_bounds() -> None:
    """The bounds the tests pin are the ones the table supports: every measured row (any T) lies within them."""
    rows, _ = rows_from_table((Path(__file__).parents[2] / "docs" / "numerics.md").read_text(encoding="utf-8"))
    assert rows
    outside = []
    for r in rows:
        where = f"{r.spec} {r.decay} {r.backend} {r.dtype} T={r.T}"
        if not r.rel_err <= tolerance(r.spec, r.decay, r.dtype, r.backend):
            outside.append(f"{where}: output {r.rel_err:.1e}")
        if not r.state_rel_err <= state_tolerance(r.spec, r.decay, r.dtype, r.backend):
            outside.append(f"{where}: state {r.state_rel_err:.1e}")
        if r.grad_rel_err is not None:
            bound = grad_tolerance(r.spec, r.decay, r.dtype, r.backend)
            if bound is None or not r.grad_rel_err <= bound:
                outside.append(f"{where}: gradient {r.grad_rel_err:.1e} (bound {bound})")
    assert not outside, "\n".join(outside)


def test_a_gradient_beyond_its_dtype_compares_as_the_rounded_reference() -> None:
    """fp16 stores a gradient beyond 65504 as inf: right where the exact value rounds to that inf, wrong elsewhere."""
    from benchmarks.numerics import _grad_errors

    ref = torch.tensor([6.1e5, -7e4, 3.0], dtype=torch.float64)
    exact = torch.tensor([float("inf"), float("-inf"), 3.0], dtype=torch.float16)
    assert _grad_errors(["dw"], [exact], [ref]) == (0.0, "")
    wrong_sign = torch.tensor([float("-inf"), float("-inf"), 3.0], dtype=torch.float16)
    assert _grad_errors(["dw"], [wrong_sign], [ref])[0] == float("inf")
    finite = torch.tensor([60000.0, float("-inf"), 3.0], dtype=torch.float16)
    assert _grad_errors(["dw"], [finite], [ref])[0] > 0.5
