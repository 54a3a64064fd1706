"""The interpreter speed-ups (recurgen/testing/interpreter.py) change no computed bit.

conftest.py installs them for the whole test run; the stock interpreter runs in a subprocess with
RECURGEN_STOCK_INTERPRETER=1, on the same seeded inputs, and every output, final state and gradient must be
bitwise equal. The specs cover both speed-ups: a real scan (hgrn), a complex scan with a tuple combine
(gateloop), and chunk kernels calling device helpers and `tl.sum`/`tl.cumsum` (gla; the WY family in `-m slow`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import triton
import triton.language as tl

from recurgen import config
from recurgen.testing.interpreter import speed_up

pytestmark = pytest.mark.skipif(not config.interpreting(), reason="the speed-ups only exist in the interpreter")

CASES = [("hgrn", "recurrent"), ("hgrn", "chunk"), ("gateloop", "chunk"), ("gla", "chunk")]
# The WY kernels under the stock interpreter take minutes: run on purpose (-m slow).
SLOW_CASES = [("gated_delta_rule", "chunk")]
_RUN = """
import sys, torch, recurgen
from recurgen.testing.sampling import random_inputs
results = {}
for case in sys.argv[2:]:
    name, mode = case.split(":")
    rec = recurgen.load(name)
    xs = {n: x.requires_grad_() for n, x in random_inputs(rec.spec, 1, 70, 2, {"K": 8, "V": 8, "D": 8, "N": 8,
          "E": 8, "P": 8}, seed=3).items()}
    o, s = rec(*xs.values(), output_final_state=True, mode=mode)
    flat = [o, *(s if isinstance(s, tuple) else (s,))]
    gs = torch.autograd.grad([t.abs().sum() if t.is_complex() else t.sum() for t in flat], list(xs.values()),
                             allow_unused=True)
    results[case] = [t.detach() for t in flat] + [g for g in gs if g is not None]
torch.save(results, sys.argv[1])
"""


def _run(out: Path, *, stock: bool, cases: list[tuple[str, str]] = CASES) -> dict[str, list[torch.Tensor]]:
    env = {**os.environ, "TRITON_INTERPRET": "1", "RECURGEN_STOCK_INTERPRETER": "1" if stock else "0"}
    code = _RUN if stock else "from recurgen.testing.interpreter import speed_up; speed_up()\n" + _RUN
    subprocess.run([sys.executable, "-c", code, str(out), *(f"{n}:{m}" for n, m in cases)], env=env, check=True,
                   timeout=900)
    return torch.load(out)


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, list[torch.Tensor]], ...]:
    tmp = tmp_path_factory.mktemp("interpreter")
    return _run(tmp / "fast.pt", stock=False), _run(tmp / "stock.pt", stock=True)


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_bitwise_equal_to_the_stock_interpreter(name: str, mode: str, both: tuple[dict, dict]) -> None:
    _assert_bitwise_equal(*(run[f"{name}:{mode}"] for run in both))


@pytest.mark.slow
@pytest.mark.parametrize(("name", "mode"), SLOW_CASES)
def test_bitwise_equal_to_the_stock_interpreter_slow(name: str, mode: str, tmp_path: Path) -> None:
    case = [(name, mode)]
    fast, stock = (_run(tmp_path / f"{kind}.pt", stock=kind == "stock", cases=case)[f"{name}:{mode}"]
                   for kind in ("fast", "stock"))
    _assert_bitwise_equal(fast, stock)


def _assert_bitwise_equal(fast: list[torch.Tensor], stock: list[torch.Tensor]) -> None:
    assert len(fast) == len(stock) >= 3
    for a, b in zip(fast, stock, strict=True):
        assert a.dtype == b.dtype
        assert torch.equal(_bits(a), _bits(b))


def _bits(t: torch.Tensor) -> torch.Tensor:
    return (torch.view_as_real(t) if t.is_complex() else t).contiguous().view(torch.uint8)


@triton.jit
def _affine(a1, b1, a2, b2):
    return a1 * a2, b1 * a2 + b2


@triton.jit
def _scan_kernel(a, b, oa, ob, N: tl.constexpr, M: tl.constexpr, AXIS: tl.constexpr, REVERSE: tl.constexpr):
    p = tl.arange(0, N)[:, None] * M + tl.arange(0, M)[None, :]
    ra, rb = tl.associative_scan((tl.load(a + p), tl.load(b + p)), AXIS, _affine, reverse=REVERSE)
    tl.store(oa + p, ra)
    tl.store(ob + p, rb)


@triton.jit
def _scan_1d_kernel(a, b, ob, N: tl.constexpr):
    o = tl.arange(0, N)
    _, rb = tl.associative_scan((tl.load(a + o), tl.load(b + o)), 0, _affine)
    tl.store(ob + o, rb)


def _fold(a: np.ndarray, b: np.ndarray, axis: int, reverse: bool) -> tuple[np.ndarray, np.ndarray]:
    """The left-to-right fold in float32, one operation at a time, as the stock interpreter computes it."""
    a, b = np.moveaxis(a, axis, 0).copy(), np.moveaxis(b, axis, 0).copy()
    order = range(a.shape[0] - 1, -1, -1) if reverse else range(a.shape[0])
    ra, rb, prev = np.empty_like(a), np.empty_like(b), None
    for i in order:
        if prev is None:
            ra[i], rb[i] = a[i], b[i]
        else:
            ra[i], rb[i] = ra[prev] * a[i], rb[prev] * a[i] + b[i]
        prev = i
    return np.moveaxis(ra, 0, axis), np.moveaxis(rb, 0, axis)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_is_the_sequential_fold(axis: int, reverse: bool) -> None:
    assert "sped up" in speed_up()
    g = torch.Generator().manual_seed(axis + 2 * reverse)
    a, b = torch.rand(16, 4, generator=g) + 0.5, torch.randn(16, 4, generator=g)
    oa, ob = torch.empty_like(a), torch.empty_like(b)
    _scan_kernel[(1,)](a, b, oa, ob, 16, 4, axis, reverse)
    ea, eb = _fold(a.numpy(), b.numpy(), axis, reverse)
    assert np.array_equal(oa.numpy(), ea)
    assert np.array_equal(ob.numpy(), eb)


def test_scan_of_a_vector() -> None:
    a, b = torch.rand(32) + 0.5, torch.randn(32)
    ob = torch.empty_like(b)
    _scan_1d_kernel[(1,)](a, b, ob, 32)
    assert np.array_equal(ob.numpy(), _fold(a.numpy(), b.numpy(), 0, False)[1])


def test_speed_up_is_idempotent_and_leaves_no_launch_open() -> None:
    from triton.runtime import interpreter as itp

    first = speed_up()
    assert speed_up() == first
    a, b = torch.rand(16, 4) + 0.5, torch.randn(16, 4)
    _scan_kernel[(1,)](a, b, torch.empty_like(a), torch.empty_like(b), 16, 4, 0, False)
    # the launch's scope is closed: a fresh launch patches again (a leaked one would skip the patch and fail)
    window = itp._patch_lang.__closure__[0].cell_contents  # type: ignore[attr-defined]
    assert window == []
