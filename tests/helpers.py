"""Test helpers shared by every test module — re-exported from `recurgen.testing`.

The general helpers (inputs drawn from a spec's domains, a tolerance check that says where it failed, a
forward/backward runner that collects gradients) moved into the product as `recurgen.testing`, so users'
test suites and `recurgen verify` use exactly what the project's own tests use. Product code never imports
from `tests/`; tests keep importing from here.
"""

from __future__ import annotations

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

__all__ = ["DEFAULT_DIM", "assert_close", "random_cotangents", "random_inputs", "random_state", "reference_fn",
           "resolve_sizes", "rms_error", "run_fwd_bwd", "sample_domain", "tensor_shape"]
