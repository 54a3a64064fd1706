"""softmax, logsumexp and max over a dim in a readout: the recurrent kernels (forward and backward) against
per-token float64 loops, at logits large enough that `exp(x) / sum(exp(x))` overflows in fp32 (GSA with q and k
scaled x10), and for `logsumexp` and `max` on their own."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import recurgen
from tests.helpers import assert_close
from tests.reference import loops

pytestmark = pytest.mark.interpret


def _grads(outs: list[torch.Tensor], leaves: list[torch.Tensor], seed: int = 5) -> tuple[torch.Tensor | None, ...]:
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o.double() * torch.randn(o.shape, generator=gen, dtype=torch.float64)).sum() for o in outs)
    return torch.autograd.grad(loss, leaves, allow_unused=True)


@pytest.mark.parametrize("mode", ["recurrent", "chunk"])
def test_gsa_large_logits_stay_finite_and_match_the_paper_loop(mode: str) -> None:
    """Chunk mode runs in passes: hk's scan kernels, the softmax per token, then hv's matmul kernels with it as q
    (chunks of 16 tokens)."""
    B, T, H, K, V, M = 1, 16, 2, 16, 4, 6
    gen = torch.Generator().manual_seed(3)
    g = torch.nn.functional.logsigmoid(2 + torch.randn(B, T, H, M, generator=gen, dtype=torch.float64))
    args = {"q": 10 * torch.randn(B, T, H, K, generator=gen, dtype=torch.float64),
            "k": 10 * torch.randn(B, T, H, K, generator=gen, dtype=torch.float64),
            "v": torch.randn(B, T, H, V, generator=gen, dtype=torch.float64), "s": 1 - torch.exp(g), "g": g}
    init = (torch.randn(B, H, K, M, generator=gen, dtype=torch.float64),
            torch.randn(B, H, M, V, generator=gen, dtype=torch.float64))
    # the logits reach past fp32's exp overflow (x > 88.7): the paper's exp over sum, run in fp32, is inf / inf
    naive, _ = loops.gsa(**{n: x.float() for n, x in args.items()}, init=tuple(h.float() for h in init))
    assert not torch.isfinite(naive["o"]).all()

    xs = {n: x.float().requires_grad_() for n, x in args.items()}
    hs = [h.float().requires_grad_() for h in init]
    o, (hk_T, hv_T) = recurgen.load("gsa")(**xs, initial_state=hs, output_final_state=True, mode=mode, chunk_size=16)
    assert torch.isfinite(o).all()

    rx = {n: x.detach().requires_grad_() for n, x in args.items()}
    rh = [h.detach().requires_grad_() for h in init]
    want, finals = loops.gsa(**rx, init=tuple(rh))
    assert_close("gsa: o", o, want["o"], atol=1e-4, rtol=1e-4)
    assert_close("gsa: final hk", hk_T, finals["hk"], atol=1e-4, rtol=1e-5)
    assert_close("gsa: final hv", hv_T, finals["hv"], atol=1e-4, rtol=1e-5)
    got = _grads([o, hk_T, hv_T], [*xs.values(), *hs])
    ref = _grads([want["o"], finals["hk"], finals["hv"]], [*rx.values(), *rh])
    for n, a, b in zip([*xs, "hk0", "hv0"], got, ref, strict=True):
        assert a is not None, n
        assert b is not None, n
        assert torch.isfinite(a).all(), n
        assert_close(f"gsa: d{n}", a, b, atol=1e-3 * max(b.abs().max().item(), 1.0), rtol=1e-3)


REDUCTIONS = """recurrence reductions "logsumexp and max of a linear read"
input  q: [K], k: [K], v: [V]
state  S: [K, V]
update S = S + outer(k, v)
output a: [] = logsumexp(q @ S)
output b: [K] = max(S, V)
output c: [V] = softmax(S, K).T @ q
"""


def _reductions_loop(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, h0: torch.Tensor
                     ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per token and head, by definition: log Σ exp, the row maxima, each column's softmax over its rows."""
    B, T, H, K = q.shape
    a, b, c = q.new_zeros(B, T, H), q.new_zeros(B, T, H, K), q.new_zeros(B, T, H, v.shape[-1])
    S_T = torch.zeros_like(h0)
    for i in range(B):
        for h in range(H):
            S = h0[i, h].clone()
            for t in range(T):
                S = S + torch.outer(k[i, t, h], v[i, t, h])
                r = q[i, t, h] @ S
                a[i, t, h] = torch.log(torch.exp(r).sum())
                b[i, t, h] = torch.stack([row.max() for row in S])
                p = torch.exp(S) / torch.exp(S).sum(0, keepdim=True)
                c[i, t, h] = p.T @ q[i, t, h]
            S_T[i, h] = S
    return [a, b, c], S_T


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_logsumexp_max_and_softmax_along_a_dim(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "reductions.rec"
    path.write_text(REDUCTIONS)
    B, T, H, K, V = 2, 7, 2, 5, 3  # padded tiles (K = 5 in 8 lanes): padding must not win a max
    gen = torch.Generator().manual_seed(11)
    args = {n: torch.randn(B, T, H, d, generator=gen, dtype=torch.float64) for n, d in (("q", K), ("k", K), ("v", V))}
    h0 = -5 + torch.randn(B, H, K, V, generator=gen, dtype=torch.float64)  # negative: a max over zeros would fail
    xs = {n: x.float().requires_grad_() for n, x in args.items()}
    hs = h0.float().requires_grad_()
    out, fin = recurgen.load(path)(**xs, initial_state=[hs], output_final_state=True, mode="recurrent",
                                   backend=backend)
    fin = fin if isinstance(fin, torch.Tensor) else fin[0]  # one state: the final state is that tensor
    rx = {n: x.detach().requires_grad_() for n, x in args.items()}
    rh = h0.detach().requires_grad_()
    want, want_S = _reductions_loop(**rx, h0=rh)
    for n, got, w in zip("abc", out, want, strict=True):
        assert_close(f"reductions: {n}", got, w, atol=1e-5, rtol=1e-5)
    assert_close("reductions: final S", fin, want_S, atol=1e-5, rtol=1e-5)
    got_g = _grads([*out, fin], [*xs.values(), hs])
    want_g = _grads([*want, want_S], [*rx.values(), rh])
    for n, a, b in zip([*xs, "h0"], got_g, want_g, strict=True):
        assert a is not None, n
        assert b is not None, n
        assert_close(f"reductions: d{n}", a, b, atol=1e-4 * max(b.abs().max().item(), 1.0), rtol=1e-4)
