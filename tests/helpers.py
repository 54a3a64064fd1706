"""Test helpers shared by every test module — re-exported from `recurgen.testing`.

The general helpers (inputs drawn from a spec's domains, a tolerance check that says where it failed, a
forward/backward runner that collects gradients) moved into the product as `recurgen.testing`, so users'
test suites and `recurgen verify` use exactly what the project's own tests use. Product code never imports
from `tests/`; tests keep importing from here.
"""

from __future__ import annotations

import torch

from recurgen.testing.compare import assert_close, reference_fn, rms_error, run_fwd_bwd
from recurgen.testing.sampling import (
    DEFAULT_DIM,
    random_cotangents,
    random_inputs,
    random_state,
    resolve_sizes,
    sample_domain,
    tensor_shape,
)

__all__ = ["DEFAULT_DIM", "assert_close", "close", "random_cotangents", "random_inputs", "random_state", "reference_fn",
           "resolve_sizes", "rms_error", "run_fwd_bwd", "sample_domain", "tensor_shape"]


def close(name: str, actual: torch.Tensor | None, expected: torch.Tensor | None, tol: float, *,
          rtol: float | None = None, floor: float = 1e-3, dtype: torch.dtype | None = None) -> None:
    """The project's one tolerance check for tests: |actual - expected| <= tol * max(max|expected|, floor)
    + rtol * |expected| elementwise (rtol defaults to tol), through `assert_close`, which names the worst element.

    Both None passes (an output a variant does not produce); with `dtype`, `actual` must have it.
    """
    assert (actual is None) == (expected is None), f"{name}: one of actual, expected is None"
    if actual is None or expected is None:
        return
    if dtype is not None:
        assert actual.dtype == dtype, f"{name}: dtype {actual.dtype}, expected {dtype}"
        if dtype in (torch.bfloat16, torch.float16):  # stored in a half dtype: at least its rounding (the
            tol = max(tol, 2.0 ** -7)                 # interpreter truncates fp32 -> bf16 on store)
    scale = float(expected.detach().abs().max()) if expected.numel() else 0.0
    assert_close(name, actual.detach(), expected.detach(), atol=tol * max(scale, floor),
                 rtol=tol if rtol is None else rtol)
