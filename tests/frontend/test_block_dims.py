"""Repeated dims (docs/language.md, "Small dense blocks per channel"): a value with a dim once meets the last
occurrence of a value that has it twice, and a reduction over the dim reduces that occurrence, so
`sum(M * h, X)` is the per-channel matrix-vector product M_p h_p, in the checker, the oracle and the kernels."""

from __future__ import annotations

import pytest
import torch

import recurgen
from recurgen import ir
from recurgen.errors import SpecError
from recurgen.frontend import from_text
from recurgen.oracle import run as run_reference
from tests.helpers import random_inputs

BLOCK = """recurrence block "a token-dependent 2x2 block per channel"
dim    X = 2
input  u: [P], M: [X, X, P]
state  h: [X, P]
update h = sum(M * h, X) + outer(I(X)[0], u)
output o: [P] = I(X)[1] @ h
"""


def test_the_single_dim_meets_the_last_occurrence() -> None:
    spec = from_text(BLOCK, "block.rec")
    value = spec.update_of("h").value
    assert value.ty.dims == ("X", "P")
    product = next(n for n in ir.walk(value) if isinstance(n, ir.Apply) and n.op is ir.Op.MUL and len(n.ty.dims) == 3)
    assert product.ty.dims == ("X", ir.alias_dim("X"), "P")  # h's X is M's second one
    assert ir.aliases(spec) == (ir.alias_dim("X"),)


def test_the_oracle_is_a_matrix_vector_product_per_channel() -> None:
    spec = from_text(BLOCK, "block.rec")
    inputs = random_inputs(spec, 2, 5, 2, {"P": 3}, torch.float64, 0)
    out, final = run_reference(spec, inputs)
    u, M = inputs["u"], inputs["M"]
    h = torch.zeros(2, 2, 2, 3, dtype=torch.float64)
    for t in range(5):
        h = torch.einsum("bhijp,bhjp->bhip", M[:, t], h)
        h[:, :, 0] += u[:, t]
        torch.testing.assert_close(out["o"][:, t], h[:, :, 1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(final["h"], h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("text", [
    BLOCK.replace("sum(M * h, X)", "sum(M, X) * h"),  # which X? no operand met either
    BLOCK.replace("M: [X, X, P]", "M: [X, X, X]").replace("sum(M * h, X)", "sum(M * u, X)"),
])
def test_ambiguous_uses_get_a_diagnostic(text: str) -> None:
    with pytest.raises(SpecError) as info:
        from_text(text, "block.rec")
    rendered = info.value.render()
    assert rendered.startswith("block.rec:5:")
    assert "^" in rendered
    assert "hint:" in rendered


def test_recurrent_kernels_match_the_oracle() -> None:
    """Forward and gradients of the fused recurrent kernels (Triton's interpreter, tests/conftest.py)."""
    rec = recurgen.compile(BLOCK, "block")
    inputs = random_inputs(rec.spec, 1, 6, 1, {"P": 3}, torch.float32, 1)
    args = {n: x.clone().requires_grad_() for n, x in inputs.items()}
    o, _ = rec(*args.values(), mode="recurrent")
    ref, _ = run_reference(rec.spec, {n: x.double() for n, x in inputs.items()})
    torch.testing.assert_close(o.double(), ref["o"], rtol=1e-5, atol=1e-5)
    w = torch.randn_like(o)
    grads = torch.autograd.grad((o * w).sum(), list(args.values()))
    args64 = {n: x.double().requires_grad_() for n, x in inputs.items()}
    ref64, _ = run_reference(rec.spec, args64)
    want = torch.autograd.grad((ref64["o"] * w.double()).sum(), list(args64.values()))
    for g, gw in zip(grads, want, strict=True):
        torch.testing.assert_close(g.double(), gw, rtol=1e-4, atol=1e-5)
