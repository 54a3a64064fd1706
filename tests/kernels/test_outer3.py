"""3-dim tensors from outer products (Based's second-order state `S2: [K, K, V]`, read by contracting q twice): the
recurrent kernels, forward and backward, on both switch settings, against the paper's feature-map loop."""

from __future__ import annotations

import pytest
import torch

import recurgen
from tests.helpers import assert_close
from tests.reference import loops

pytestmark = pytest.mark.interpret


@pytest.mark.parametrize("use_norm", [1, 0])
@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_based_kernels_match_the_feature_map_loop(use_norm: int, backend: str) -> None:
    B, T, H, K, V = 2, 6, 2, 5, 3  # K = 5: padded lanes in every dim of S2's [8, 8, 4] tile
    gen = torch.Generator().manual_seed(4)
    args = {n: torch.randn(B, T, H, d, generator=gen, dtype=torch.float64) for n, d in (("q", K), ("k", K), ("v", V))}
    shapes = [(V,), (K, V), (K, K, V), (), (K,), (K, K)][:6 if use_norm else 3]
    init = [torch.randn(B, H, *s, generator=gen, dtype=torch.float64) for s in shapes]
    if use_norm:  # the normaliser's sums from a past of positive feature products
        init[3], init[4], init[5] = init[3].abs() + 3, init[4], torch.eye(K, dtype=torch.float64) + 0.1 * init[5]
    xs = {n: x.float().requires_grad_() for n, x in args.items()}
    hs = [h.float().requires_grad_() for h in init]
    o, fin = recurgen.load("based")(**xs, use_norm=use_norm, initial_state=hs, output_final_state=True,
                                    mode="recurrent", backend=backend)
    rx = {n: x.detach().requires_grad_() for n, x in args.items()}
    rh = [h.detach().requires_grad_() for h in init]
    want, finals = loops.based(**rx, use_norm=use_norm, init=tuple(rh))
    assert_close("based: o", o, want["o"], atol=1e-5, rtol=1e-4)
    for got, (n, w) in zip(fin, finals.items(), strict=True):
        assert_close(f"based: final {n}", got, w, atol=1e-5, rtol=1e-5)
    cot = torch.Generator().manual_seed(5)
    outs, refs = [o, *fin], [want["o"], *finals.values()]
    cots = [torch.randn(r.shape, generator=cot, dtype=torch.float64) for r in refs]
    got_g = torch.autograd.grad(sum((a.double() * c).sum() for a, c in zip(outs, cots, strict=True)),
                                [*xs.values(), *hs])
    want_g = torch.autograd.grad(sum((a * c).sum() for a, c in zip(refs, cots, strict=True)), [*rx.values(), *rh])
    for n, a, b in zip([*xs, *(f"h0[{i}]" for i in range(len(hs)))], got_g, want_g, strict=True):
        assert_close(f"based: d{n}", a, b, atol=1e-4 * max(b.abs().max().item(), 1.0), rtol=1e-4)
