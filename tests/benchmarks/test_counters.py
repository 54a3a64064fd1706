"""The benchmark counters count a hand-written kernel's traffic and FLOPs exactly, and the extrapolation
to GPU shapes accepts only counts that are exactly linear.

Each toy kernel's traffic is worked out by hand from its masks and dtypes; the counters must agree to the
byte. The kernels run in the interpreter on tiny sizes (a few ms).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import triton
import triton.language as tl

from benchmarks.counters import count, interpreting

pytestmark = [
    pytest.mark.interpret,
    pytest.mark.skipif(not interpreting(), reason="the counters need TRITON_INTERPRET=1"),
]


@triton.jit
def _axpy_tail(x_ptr, y_ptr, out_ptr, n, alpha, BLOCK: tl.constexpr):
    # out = alpha * x + y, with a masked tail; x fp16, y fp32, out bf16
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    x = tl.load(x_ptr + offs, mask=m, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + offs, mask=m, other=0.0)
    r = alpha * x + y
    tl.store(out_ptr + offs, r.to(out_ptr.dtype.element_ty), mask=m)


@triton.jit
def _rowsum_dot(a_ptr, b_ptr, c_ptr, s_ptr, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr):
    # c = a @ b (fp32), s[0] = sum(exp(c)) stored by one scalar store; a, b read unmasked
    rm, rn, rk = tl.arange(0, M), tl.arange(0, N), tl.arange(0, K)
    a = tl.load(a_ptr + rm[:, None] * K + rk[None, :])
    b = tl.load(b_ptr + rk[:, None] * N + rn[None, :])
    c = tl.dot(a, b)
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], c)
    tl.store(s_ptr, tl.sum(tl.sum(tl.exp(c), axis=1), axis=0))


def test_masked_tail_and_mixed_dtypes_counted_exactly() -> None:
    n, block = 37, 16  # 3 programs; the last has 5 live lanes out of 16
    x = torch.randn(n, dtype=torch.float16)
    y = torch.randn(n, dtype=torch.float32)
    out = torch.empty(n, dtype=torch.bfloat16)
    with count() as tally:
        _axpy_tail[(triton.cdiv(n, block),)](x, y, out, n, 2.0, BLOCK=block)
    (launch,) = tally.launches
    assert launch.kernel == "_axpy_tail"
    assert launch.grid == (3, 1, 1)
    assert launch.load_bytes == n * 2 + n * 4  # fp16 x, fp32 y: live lanes only
    assert launch.store_bytes == n * 2  # bf16 out
    assert launch.loads == 2 * 3
    assert launch.stores == 3
    # a mul and an add per lane, masked lanes included (the hardware computes them); no transcendentals
    assert launch.flops == 2 * 3 * block
    assert launch.sfu == 0
    # the values are right too (bf16 rounding: the interpreter may round differently from torch)
    torch.testing.assert_close(out.float(), 2.0 * x.float() + y, atol=0.05, rtol=1e-2)


def test_dot_reduction_and_scalar_store_counted_exactly() -> None:
    M, N, K = 4, 8, 16
    a, b = torch.randn(M, K), torch.randn(K, N)
    c, s = torch.empty(M, N), torch.empty(1)
    with count() as tally:
        _rowsum_dot[(1,)](a, b, c, s, M=M, N=N, K=K)
        _rowsum_dot[(2,)](a, b, c, s, M=M, N=N, K=K)
    first, second = tally.launches
    assert first.load_bytes == (M * K + K * N) * 4
    assert first.store_bytes == M * N * 4 + 4
    # dot 2MNK; two sums fold M*N - M and then M - 1 elements
    assert first.flops == 2 * M * N * K + (M * N - M) + (M - 1)
    assert first.dot_flops == 2 * M * N * K
    assert first.sfu == M * N
    # twice the programs, twice every count
    assert second.grid == (2, 1, 1)
    assert (second.load_bytes, second.store_bytes, second.flops) == (2 * first.load_bytes, 2 * first.store_bytes,
                                                                     2 * first.flops)
    assert tally.total()["launches"] == 2
    torch.testing.assert_close(c, a @ b)


def test_nothing_is_counted_outside_the_block() -> None:
    x = torch.randn(8, dtype=torch.float16)
    y = torch.randn(8)
    out = torch.empty(8, dtype=torch.bfloat16)
    with count() as tally:
        pass
    _axpy_tail[(1,)](x, y, out, 8, 1.0, BLOCK=8)
    assert tally.launches == []


def test_extrapolation_accepts_exact_linear_counts_and_flags_others() -> None:
    from benchmarks.counters import Launch
    from benchmarks.traffic import measure

    def runner(bump: int) -> Callable[..., dict[str, list[Launch]]]:
        # per program: 100 bytes + 10 per token loaded; a checkpoint every 16 tokens stored (affine at
        # multiples of 16); `bump` breaks linearity at T=48 only
        def run(name: str, B: int, T: int, H: int, sz: dict[str, int]) -> dict[str, list[Launch]]:
            progs = B * H
            x = Launch("k", (1, progs, 1), load_bytes=progs * (100 + 10 * T + (bump if T == 48 else 0)),
                       store_bytes=progs * 4 * (T // 16))
            return {"fwd": [x]}
        return run

    good = measure(runner(0), "toy", {}, (16, 32, 48))["fwd"]
    assert good.verified
    assert good.at(8, 4096, 16) == {"load_bytes": 128 * (100 + 10 * 4096), "store_bytes": 128 * 4 * 256,
                                    "flops": 0, "dot_flops": 0, "sfu": 0, "launches": 1}
    bad = measure(runner(1), "toy", {}, (16, 32, 48))["fwd"]
    assert not bad.verified
    assert "load_bytes not affine" in bad.evidence
