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


def test_torch_glue_counted_exactly_views_and_allocations_excluded() -> None:
    from benchmarks.counters import count_torch

    x = torch.randn(4, 8, dtype=torch.bfloat16)  # 64 B
    w = torch.randn(8)  # 32 B, broadcast over x's rows: read once
    with count_torch() as glue:
        xt = x.t()  # a view: nothing moves
        y = x.float() * w  # cast: 64 B read, 128 B written; mul: 128 + 32 B read, 128 B written
        z = torch.empty_like(y)  # allocation only
        z.copy_(xt.t())  # the destination is overwritten, not read: 64 B read, 128 B written
        s = y.sum()  # 128 B read, a 0-dim result (a scalar, no traffic)
        e = w.expand(4, 8).contiguous()  # expand is a view; the copy reads 8 distinct floats, writes 32
    ops = {x.kernel: (x.load_bytes, x.store_bytes) for x in glue.launches if x.bytes}
    assert ops == {"aten._to_copy.default": (64, 128), "aten.mul.Tensor": (160, 128),
                   "aten.copy_.default": (64, 128), "aten.sum.default": (128, 0), "aten.clone.default": (32, 128)}
    assert glue.total()["load_bytes"] == 64 + 160 + 64 + 128 + 32
    assert all(x.bytes == 0 for x in glue.launches if "empty" in x.kernel or x.kernel.startswith("aten.t."))
    assert s.dim() == 0
    assert e.shape == (4, 8)


def test_torch_glue_skips_kernel_launches_but_counts_the_torch_ops_around_them() -> None:
    from benchmarks.counters import count_torch

    n = 32
    x = torch.randn(n, dtype=torch.float16)
    y = torch.randn(n)
    with count() as kernels, count_torch() as glue:
        out = torch.empty(n, dtype=torch.bfloat16)
        _axpy_tail[(2,)](x, y, out, n, 2.0, BLOCK=16)  # the interpreter's host copies are not glue
        r = out.float()  # 64 B read, 128 B written
    assert kernels.total()["load_bytes"] == n * 6
    assert [(g.kernel, g.load_bytes, g.store_bytes) for g in glue.launches if g.bytes] == \
        [("aten._to_copy.default", n * 2, n * 4)]
    assert r.shape == (n,)


def test_torch_glue_counts_the_body_of_a_custom_op_not_its_arguments() -> None:
    from benchmarks.counters import count_torch

    @torch.library.custom_op("recurgen_bench_test::double_sum", mutates_args=())
    def double_sum(a: torch.Tensor) -> torch.Tensor:
        return (a * 2).sum(0)  # mul: 4·n read and written; sum: 4·n read, 4·n/2 written

    a = torch.randn(2, 16)
    with count_torch() as glue:
        double_sum(a)
    assert [(g.kernel, g.load_bytes, g.store_bytes) for g in glue.launches] == \
        [("aten.mul.Tensor", 128, 128), ("aten.sum.dim_IntList", 128, 64)]


def test_fits_have_a_per_head_term() -> None:
    from benchmarks.counters import Launch
    from benchmarks.traffic import measure

    def run(name: str, B: int, T: int, H: int, sz: dict[str, int]) -> dict[str, list[Launch]]:
        # glue: 6 bytes per token and (batch, head), plus a 40-byte param per head read once per call; the kernel
        # writes a param's gradient (8 bytes per head) once per call, summed from per-program parts
        glue = Launch("aten.mul.Tensor", (1, 1, 1), load_bytes=B * H * 6 * T + 40 * H)
        kern = Launch("k", (1, B * H, 1), load_bytes=B * H * 40 * (1 + T), store_bytes=8 * H)
        return {"fwd:glue": [glue], "fwd": [kern]}

    fits = measure(run, "toy", {}, (64, 128, 192))
    glue, kern = fits["fwd:glue"], fits["fwd"]
    assert glue.verified
    assert kern.verified
    assert glue.at(8, 4096, 16)["load_bytes"] == 8 * 16 * 6 * 4096 + 40 * 16
    assert kern.h["load_bytes"] == 0
    assert kern.at(8, 4096, 16)["load_bytes"] == 128 * 40 * 4097
    assert kern.at(8, 4096, 16)["store_bytes"] == 8 * 16
    # a count that grows faster than H (here as H²) is not of that form: flagged
    bad = measure(lambda name, B, T, H, sz: {"fwd": [Launch("k", (1, 1, 1), load_bytes=B * H * H * T)]}, "toy", {},
                  (64, 128, 192))["fwd"]
    assert not bad.verified
    assert "at H=2" in bad.evidence


def test_reduced_dim_fit_scales_exactly_and_flags_a_nonlinear_dim() -> None:
    from benchmarks.counters import Launch
    from benchmarks.traffic import measure_reduced

    def runner(quadratic: bool) -> Callable[..., dict[str, list[Launch]]]:
        # kernel: one program per state row (P rows), 8 bytes per token and row; glue: an input of width 128
        # read per token (independent of P), a param of P elements per head read once per call
        def run(name: str, B: int, T: int, H: int, sz: dict[str, int]) -> dict[str, list[Launch]]:
            P = sz["P"]
            rows = P * P if quadratic else P
            k = Launch("scan", (rows, B * H, 1), load_bytes=B * H * rows * 8 * T)
            g = Launch("aten.mul.Tensor", (1, 1, 1), load_bytes=B * H * 128 * T + 4 * P * H)
            return {"fwd": [k], "fwd:glue": [g]}
        return run

    fits, how = measure_reduced(runner(False), "toy", {"P": 128, "Q": 128}, "P")
    assert "P = 2, 4 (checked at 6)" in how
    assert fits["fwd"].verified
    assert fits["fwd:glue"].verified
    assert fits["fwd"].at(8, 4096, 16)["load_bytes"] == 128 * 128 * 8 * 4096
    assert fits["fwd"].programs == 128
    assert fits["fwd:glue"].at(8, 4096, 16)["load_bytes"] == 128 * 128 * 4096 + 4 * 128 * 16
    bad, _ = measure_reduced(runner(True), "toy", {"P": 128, "Q": 128}, "P")
    assert not bad["fwd"].verified
    assert "at P=6" in bad["fwd"].evidence


def test_torch_glue_leaves_out_index_bookkeeping() -> None:
    from benchmarks.counters import count_torch

    y = torch.randn(4, 2)
    with count_torch() as glue:
        idx = torch.arange(0, 64, 16, dtype=torch.int64)  # a chunk table: integers, not data
        x = y[idx // 16]  # the gathered floats are data: 32 B read, 32 B written
    assert x.shape == (4, 2)
    assert [(g.kernel, g.bytes) for g in glue.launches if g.bytes] == [("aten.index.Tensor", 64)]
