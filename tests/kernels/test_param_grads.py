"""Per-head parameter gradients (one value per head, summed over every token): their per-program partials are
added by a kernel in a fixed order (host `_sum_parts`), never by float atomics, so the same inputs give the same
bits, in chunk mode (the token kernels' leaves) and in recurrent mode (the fused backward's per-tile partials)."""

from __future__ import annotations

import pytest
import torch

import recurgen
from tests.helpers import random_inputs

SIZES = {"K": 4, "V": 4}


def _param_grads(name: str, mode: str) -> list[torch.Tensor]:
    rec = recurgen.load(name)
    xs = random_inputs(rec.spec, 2, 40, 2, SIZES, torch.float32, seed=5, requires_grad=True)  # 3 chunks per row
    out, _ = rec(*xs.values(), mode=mode, backend="triton", chunk_size=16)
    outs = out if isinstance(out, tuple) else (out,)
    gen = torch.Generator().manual_seed(1)
    torch.autograd.backward(outs, [torch.randn(o.shape, generator=gen) for o in outs])
    params = [t.name for t in rec.spec.params]
    assert params, f"{name} has no params"
    return [xs[p].grad.clone() for p in params]


@pytest.mark.interpret
@pytest.mark.parametrize(("name", "mode"), [("simple_gla", "chunk"), ("rwkv6", "chunk"), ("rwkv5", "recurrent")])
def test_param_gradients_are_deterministic(name: str, mode: str) -> None:
    first, second = _param_grads(name, mode), _param_grads(name, mode)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
        assert torch.isfinite(a).all()


def test_sum_parts_adds_in_a_fixed_order_into_the_dtype() -> None:
    """The generated modules' reduction: [P, ...] fp32 partials -> [...] in the param's dtype, rows in order."""
    mod = recurgen.load("rwkv6").module
    parts = torch.randn(37, 3, 5, generator=torch.Generator().manual_seed(0))
    want = torch.zeros(3, 5)
    for p in parts:  # the kernel's order: row after row, in fp32
        want = want + p
    got = mod._sum_parts(parts, torch.float16)
    assert got.dtype == torch.float16
    assert torch.equal(got, want.to(torch.float16))
