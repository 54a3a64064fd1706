"""The public test helpers (`tests/helpers.py`) do what kernel tests will rely on them for."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from recurgen import ir
from recurgen.frontend import from_text, load_spec
from recurgen.resources import bundled_spec_names
from tests.helpers import (
    DEFAULT_DIM,
    assert_close,
    random_cotangents,
    random_inputs,
    random_state,
    resolve_sizes,
    rms_error,
    run_fwd_bwd,
    sample_domain,
)


@functools.cache
def spec_of(name: str) -> ir.Spec:
    return load_spec(name)[0]


# --- random inputs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(bundled_spec_names()))
def test_random_inputs_respect_declared_domains(name: str) -> None:
    spec = spec_of(name)
    sizes = {"K": 5, "V": 3}
    dims = resolve_sizes(spec, sizes)
    xs = random_inputs(spec, 2, 9, 3, sizes, torch.float64, seed=11)
    assert tuple(xs) == spec.arg_order
    for name_, x in xs.items():
        t = spec.tensor(name_)
        lead = (2, 9, 3) if t in spec.inputs else (3,)
        assert x.shape == (*lead, *(dims[d] for d in t.ty.dims)), name_
        assert x.dtype == (torch.complex128 if t.ty.complex else torch.float64)
        real = x.real if x.is_complex() else x
        assert t.domain.contains(real.min().item()), (name_, str(t.domain))
        assert t.domain.contains(real.max().item()), (name_, str(t.domain))
        if t.domain.logspace:
            assert real.max().item() <= 0
        if t.domain.normalized:
            assert_close(f"|{name_}|", x.norm(dim=-1), torch.ones(x.shape[:-1], dtype=torch.float64),
                         atol=1e-12, rtol=0)


def test_random_inputs_are_reproducible_across_dtypes_and_seeds() -> None:
    spec = spec_of("gated_delta_rule")
    a = random_inputs(spec, 1, 4, 2, None, torch.float64, seed=5)
    b = random_inputs(spec, 1, 4, 2, None, torch.float64, seed=5)
    c = random_inputs(spec, 1, 4, 2, None, torch.float32, seed=5)
    d = random_inputs(spec, 1, 4, 2, None, torch.float64, seed=6)
    for n in a:
        assert torch.equal(a[n], b[n])
        assert c[n].dtype == torch.float32
        assert_close(n, c[n], a[n], atol=1e-6, rtol=1e-6)
        assert not torch.equal(a[n], d[n])
    assert a["q"].shape[-1] == DEFAULT_DIM
    assert not torch.equal(a["q"], a["k"])  # one stream per name


def test_random_inputs_requires_grad_and_bfloat16() -> None:
    xs = random_inputs(spec_of("gla"), 1, 2, 1, {"K": 8, "V": 8}, torch.bfloat16, seed=0, requires_grad=True)
    assert all(x.requires_grad and x.is_leaf and x.dtype == torch.bfloat16 for x in xs.values())
    assert xs["g"].max().item() <= 0


def test_resolve_sizes() -> None:
    spec = spec_of("delta_product")
    assert resolve_sizes(spec, {"K": 8, "N": 99}) == {"J": 2, "K": 8, "V": DEFAULT_DIM}
    assert resolve_sizes(spec, {"J": 2})["J"] == 2
    with pytest.raises(ValueError, match="dim J is fixed to 2 by the spec, got 3"):
        resolve_sizes(spec, {"J": 3})
    with pytest.raises(ValueError, match="dim K must be at least 1"):
        resolve_sizes(spec, {"K": 0})


@pytest.mark.parametrize("domain", [
    ir.Domain(hi=0.0, hi_open=False, logspace=True),                 # logdecay
    ir.Domain(lo=0.0, hi=1.0),                                       # unit
    ir.Domain(lo=0.0),                                               # positive
    ir.Domain(hi=0.0),                                               # negative
    ir.Domain(lo=0.0, lo_open=False),                                # nonnegative
    ir.Domain(lo=-math.exp(-0.5), hi=0.0, logspace=True),            # RWKV7's w
    ir.Domain(lo=-2.0, hi=3.0, lo_open=False, hi_open=False),
    ir.Domain(normalized=True),
    ir.Domain(lo=0.0, normalized=True),
])
def test_sample_domain_stays_inside(domain: ir.Domain) -> None:
    x = sample_domain(domain, (64, 7), torch.Generator().manual_seed(0))
    assert all(domain.contains(v) for v in x.flatten().tolist())
    if domain.normalized:
        assert_close("norm", x.norm(dim=-1), torch.ones(64, dtype=torch.float64), atol=1e-12, rtol=0)


def test_sample_domain_refuses_an_impossible_domain() -> None:
    with pytest.raises(ValueError, match="cannot draw values in domain"):
        sample_domain(ir.Domain(lo=2.0, hi=3.0, normalized=True), (4, 3), torch.Generator().manual_seed(0))


def test_domains_from_spec_text() -> None:
    spec = from_text("recurrence d \"d\"\ninput x: [D] in (-3, -1), g: [D] logdecay, p: [D] nonnegative\n"
                     "state h: [D]\nupdate h = exp(g) * h + x * p\noutput o: [D] = h\n")
    xs = random_inputs(spec, 2, 50, 1, None, torch.float64, seed=1)
    assert xs["x"].min().item() > -3
    assert xs["x"].max().item() < -1
    assert xs["g"].max().item() <= 0
    assert xs["p"].min().item() >= 0


def test_random_state() -> None:
    spec = spec_of("mlstm")
    C, n, m = random_state(spec, 2, 3, {"K": 4, "V": 5}, torch.float32, seed=1, requires_grad=True)
    assert C.shape == (2, 3, 4, 5)
    assert n.shape == (2, 3, 4)
    assert m.shape == (2, 3)  # the running max: one scalar per (batch, head)
    assert C.dtype == torch.float32
    assert C.requires_grad
    (h,) = random_state(spec_of("lru"), 1, 2, {"N": 3}, torch.float32)
    assert h.shape == (1, 2, 3)
    assert h.dtype == torch.complex64
    assert random_state(spec_of("lru"), 1, 2, {"N": 3}, torch.float64)[0].dtype == torch.complex128


def test_random_cotangents() -> None:
    outs = {"o": torch.zeros(2, 3, dtype=torch.float32), "h": torch.zeros(4, dtype=torch.complex128)}
    g = random_cotangents(outs, seed=0)
    assert g["o"].dtype == torch.float32
    assert g["h"].dtype == torch.complex128
    assert g["h"].imag.abs().sum() > 0


# --- assert_close -----------------------------------------------------------------------------------------

def test_assert_close_passes_and_reports_the_worst_element() -> None:
    expected = torch.zeros(2, 3, 4, dtype=torch.float64)
    assert_close("o", expected.clone(), expected, atol=0, rtol=0)
    actual = expected.clone()
    actual[1, 2, 3] = 0.5
    actual[0, 0, 0] = 1e-7
    with pytest.raises(AssertionError) as err:
        assert_close("o", actual, expected, atol=1e-6, rtol=1e-6)
    msg = str(err.value)
    assert msg.startswith("o: 1/24 elements differ")
    assert "worst at (1, 2, 3)" in msg
    assert "actual=0.5 expected=0" in msg
    assert "|diff|=5.000e-01" in msg


def test_assert_close_handles_non_finite_values_and_shapes() -> None:
    e = torch.tensor([1.0, math.inf, 3.0])
    assert_close("x", e.clone(), e, atol=0, rtol=0)
    with pytest.raises(AssertionError, match=r"x: 1/3 non-finite mismatch\(es\); first at \(2,\): actual=nan"):
        assert_close("x", torch.tensor([1.0, math.inf, math.nan]), e, atol=1.0, rtol=1.0)
    with pytest.raises(AssertionError, match=r"shape \[2\] != expected \[3\]"):
        assert_close("x", e[:2], e, atol=1.0, rtol=1.0)
    assert_close("empty", torch.zeros(0), torch.zeros(0), atol=0, rtol=0)


def test_assert_close_compares_to_the_low_precision_reference() -> None:
    golden = torch.linspace(-1, 1, 100, dtype=torch.float64)
    ref = golden + 1e-3 * torch.sin(torch.arange(100.0, dtype=torch.float64))
    assert_close("o", golden + 1.5e-3, golden, atol=1e-2, rtol=0, ref=ref, fudge=3.0)
    with pytest.raises(AssertionError, match=r"rms error 5.000e-03 > 2 \* rms error of the reference"):
        assert_close("o", golden + 5e-3, golden, atol=1e-2, rtol=0, ref=ref)
    assert rms_error(golden + 5e-3, golden) == pytest.approx(5e-3)


def test_assert_close_compares_complex_and_mixed_dtypes() -> None:
    e = torch.tensor([1 + 1j, 2 - 1j], dtype=torch.complex128)
    assert_close("c", e.to(torch.complex64), e, atol=1e-6, rtol=1e-6)
    with pytest.raises(AssertionError, match="worst at \\(1,\\)"):
        assert_close("c", e + torch.tensor([0, 1j]), e, atol=1e-6, rtol=1e-6)


# --- run_fwd_bwd ------------------------------------------------------------------------------------------

def test_run_fwd_bwd_collects_outputs_and_gradients() -> None:
    x = torch.randn(3, dtype=torch.float64)
    y = torch.randn(3, dtype=torch.float64)
    unused = torch.randn(2, dtype=torch.float64)
    idx = torch.tensor([2, 0])

    def fn(x: torch.Tensor, y: torch.Tensor, unused: torch.Tensor, idx: torch.Tensor, scale: float,
           pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, None]:
        return scale * x * y, (x[idx] + pair[0] * pair[1]).sum(), None

    pair = (torch.ones(()), torch.full((), 2.0))
    do, ds = torch.randn(3, dtype=torch.float64), torch.tensor(1.5, dtype=torch.float64)
    got = run_fwd_bwd(fn, {"x": x, "y": y, "unused": unused, "idx": idx, "scale": 2.0, "pair": pair},
                      {"out0": do, "out1": ds})
    assert set(got) == {"out0", "out1", "dx", "dy", "dunused", "dpair0", "dpair1"}
    assert_close("out0", got["out0"], 2.0 * x * y, atol=0, rtol=0)
    dx = 2.0 * y * do
    dx[2] += ds
    dx[0] += ds
    assert_close("dx", got["dx"], dx, atol=1e-15, rtol=0)
    assert_close("dy", got["dy"], 2.0 * x * do, atol=1e-15, rtol=0)
    assert torch.equal(got["dunused"], torch.zeros(2, dtype=torch.float64))
    assert got["dpair0"].item() == pytest.approx(2 * 2.0 * 1.5)  # broadcast over idx's 2 elements
    assert x.grad is None
    assert not x.requires_grad  # the caller's tensors are left alone


def test_run_fwd_bwd_with_mappings_and_partial_cotangents() -> None:
    x = torch.randn(2, 2, dtype=torch.float64)

    def fn(x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return {"o": x * 3}, {"S": x.square()}

    got = run_fwd_bwd(fn, {"x": x}, {"o": torch.ones(2, 2, dtype=torch.float64), "S": None})
    assert_close("dx", got["dx"], torch.full((2, 2), 3.0, dtype=torch.float64), atol=0, rtol=0)
    assert_close("S", got["S"], x.square(), atol=0, rtol=0)
    with pytest.raises(KeyError, match="grad_outputs names do, but the outputs are o, S"):
        run_fwd_bwd(fn, {"x": x}, {"do": torch.ones(2, 2)})
    with pytest.raises(ValueError, match="ambiguous output name"):
        run_fwd_bwd(lambda x: ({"o": x}, {"o": x}), {"x": x}, {})
