"""`recurgen.testing` for users' own suites: the input strategy draws valid inputs for any spec, and
`assert_matches_reference` passes on the generated kernels and fails, clearly, on broken ones."""

from __future__ import annotations

import types

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recurgen
import tests.helpers
from recurgen import testing
from recurgen.api import Recurrence
from recurgen.frontend import load_spec
from recurgen.resources import bundled_spec_names
from recurgen.testing import Case, assert_matches_reference, strategies

SPECS = bundled_spec_names()


def test_tests_helpers_re_export_the_product_helpers() -> None:
    for name in ("assert_close", "random_inputs", "random_state", "sample_domain", "resolve_sizes", "run_fwd_bwd",
                 "rms_error", "random_cotangents"):
        assert getattr(tests.helpers, name) is getattr(testing, name)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(SPECS))
def test_inputs_are_valid_for_every_spec(data: st.DataObject, name: str) -> None:
    spec = load_spec(name)[0]
    inputs = data.draw(strategies.inputs(spec))
    case = inputs.case
    assert list(inputs) == [*spec.arg_order, "initial_state"]
    dtype = case.torch_dtype
    for t in (*spec.inputs, *spec.params):
        x = inputs[t.name]
        lead = (case.B, case.T, case.H) if t in spec.inputs else (case.H,)
        assert tuple(x.shape[: len(lead)]) == lead
        assert x.dtype == (torch.complex64 if t.ty.complex else dtype) or x.is_complex() == t.ty.complex
        if not t.ty.complex and x.numel():
            # drawn inside the declared domain (then rounded to the dtype: allow the rounding at the edges)
            lo, hi = float(x.double().min()), float(x.double().max())
            eps = torch.finfo(dtype).eps * 4 * max(1.0, abs(lo), abs(hi))
            assert t.domain.contains(lo) or abs(lo - t.domain.lo) <= eps, (t.name, lo)
            assert t.domain.contains(hi) or abs(hi - t.domain.hi) <= eps, (t.name, hi)
    h0 = inputs["initial_state"]
    assert (h0 is not None) == case.initial_state
    if h0 is not None:
        assert len(h0) == len(spec.states)
        assert all(h.dtype in (torch.float32, torch.complex64) for h in h0)
    # same case, same values: a counterexample replays from its printed form
    again = Case.from_arg(case.to_arg()).inputs(spec)
    assert all(torch.equal(inputs[n], again[n]) for n in spec.arg_order)
    assert repr(inputs) == f"Inputs({case.to_arg()})"


def test_strategy_options_are_honoured() -> None:
    spec = load_spec("gla")[0]

    @settings(max_examples=15, deadline=None, database=None)
    @given(strategies.inputs(spec, dtypes=("bf16",), lengths=(1, 3), initial_state=False, dim_sizes=(5,)))
    def check(inputs: testing.Inputs) -> None:
        assert inputs["q"].dtype == torch.bfloat16
        assert inputs["q"].shape[1] in (1, 3)
        assert inputs["q"].shape[-1] == 5
        assert inputs["initial_state"] is None

    check()
    with pytest.raises(ValueError, match="unknown dtype"):
        strategies.inputs(spec, dtypes=("fp8",))


@pytest.mark.interpret
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_assert_matches_reference_passes_on_generated_kernels(dtype: str) -> None:
    rec = recurgen.load("gated_delta_rule")
    case = Case(B=2, T=5, H=2, sizes={"K": 5, "V": 3}, dtype=dtype, checkpoint_every=2, tile_budget=8, seed=3)
    outcome = assert_matches_reference(rec, case.inputs(rec.spec), step=True)
    labels = {c.label for c in outcome.comparisons}
    assert {"output o", "final state S", "gradient dq", "gradient dbeta", "gradient dinitial_state[S]",
            "step output o"} <= labels
    assert 0 < outcome.worst <= testing.TOLERANCES[case.torch_dtype]
    # a spec name works too, and so does a plain dict of inputs (no Case attached)
    assert_matches_reference("gated_delta_rule", dict(case.inputs(rec.spec)), grads=False)


def _broken(rec: Recurrence, *, backward_sign: bool = False) -> Recurrence:
    """`rec` with the forward rolled by one token, or with every input gradient negated."""
    real = getattr(rec.module, f"fused_recurrent_{rec.name}")

    def call(*args: object, **kwargs: object) -> object:
        o, s = real(*args, **kwargs)
        if backward_sign:
            if o.requires_grad:
                o = o + 0 * o.detach()
                o.register_hook(lambda g: -g)
            return o, s
        return o.roll(1, dims=1), s

    fake = types.SimpleNamespace(**{f"fused_recurrent_{rec.name}": call, "step": rec.module.step})
    return Recurrence(rec.spec, fake, rec.source)  # type: ignore[arg-type]


@pytest.mark.interpret
def test_assert_matches_reference_reports_a_wrong_gradient() -> None:
    rec = _broken(recurgen.load("gla"), backward_sign=True)
    case = Case(B=1, T=3, H=1, sizes={"K": 3, "V": 3}, dtype="fp32", initial_state=True, seed=5)
    with pytest.raises(AssertionError) as info:
        assert_matches_reference(rec, case.inputs(rec.spec))
    msg = str(info.value)
    assert f"on case {case.to_arg()}" in msg
    assert "gradient dq:" in msg
    assert "gradient dinitial_state[S]:" in msg
    assert "worst at (" in msg
    assert "worst relative error" in msg
    assert "output o:" not in msg  # the forward is right, and the message says only what is wrong
    assert_matches_reference(rec, case.inputs(rec.spec), grads=False)


def test_hypothesis_shrinks_a_token_late_forward_to_its_minimal_case() -> None:
    rec = _broken(recurgen.load("simple_gla"))

    # the torch path: shrinking re-runs the check many times, too slow for CI under the interpreter
    @settings(max_examples=10, deadline=None, database=None)
    @given(strategies.inputs(rec, lengths=(1, 2, 5, 8)))
    def test(inputs: testing.Inputs) -> None:
        assert_matches_reference(rec, inputs, grads=False, backend="torch")

    with pytest.raises(AssertionError) as info:
        test()
    msg = str(info.value)
    assert "output o:" in msg
    assert "on case B=1,T=2,H=1," in msg  # T = 1 cannot show it; nothing larger is needed
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "Inputs(B=1,T=2,H=1," in notes  # hypothesis prints the shrunk case, not tensor values


def test_varlen_cases_pack_sequences_into_one_row() -> None:
    spec = load_spec("gla")[0]
    seen: list[Case] = []

    @settings(max_examples=30, deadline=None, database=None)
    @given(strategies.cases(spec, varlen=True, lengths=(1, 2, 5)))
    def check(case: Case) -> None:
        inputs = case.inputs(spec)
        if case.splits:
            seen.append(case)
            assert case.B == 1
            assert inputs["cu_seqlens"].tolist()[-1] == case.T == sum(case.splits)
            if inputs["initial_state"] is not None:
                assert inputs["initial_state"][0].shape[0] == len(case.splits)
        else:
            assert "cu_seqlens" not in inputs
        assert Case.from_arg(case.to_arg()) == case

    check()
    assert seen, "no variable-length case drawn"
    with pytest.raises(ValueError, match="summing to T"):
        Case(B=1, T=4, splits=(1, 2))


@pytest.mark.interpret
def test_assert_matches_reference_on_a_variable_length_batch() -> None:
    rec = recurgen.load("gated_delta_rule")
    case = Case.from_arg("B=1,T=6,H=2,K=5,V=3,dtype=fp16,h0=1,ckpt=2,tile=8,seed=2,varlen=1+2+3")
    outcome = assert_matches_reference(rec, case.inputs(rec.spec), step=True)
    assert "gradient dinitial_state[S]" in {c.label for c in outcome.comparisons}
