"""Running maxes (`update m = max(a + m, b)`): recognition, diagnostics, the max-plus operator, and what they buy:
mLSTM's exponential input gate stays finite for gates that overflow fp32 without the stabiliser."""

from __future__ import annotations

import pytest
import torch

import recurgen
from recurgen.analysis import OperatorForm, TransitionKind, analyze
from recurgen.analysis.operator import apply, compose
from recurgen.analysis.proofs import verify
from recurgen.codegen.chunk_plan import describe, plan_chunk
from recurgen.errors import SpecError
from recurgen.frontend import from_text, load_spec
from tests.helpers import close, random_inputs
from tests.kernels.test_fused_recurrent import TOL

BODY = """recurrence rm
input  q: [K], k: [K], v: [V], ig: [], fg: [] logdecay
state  C: [K, V], m: []
update m = {m}
update C = exp(fg + m - max(fg + m, ig)) * C + exp(ig - max(fg + m, ig)) * outer(k, v)
output o: [V] = q @ C
"""


def _spec(m_update: str) -> recurgen.ir.Spec:
    return from_text(BODY.format(m=m_update), "rm.rec")


@pytest.mark.parametrize("update", ["max(fg + m, ig)", "max(ig, m + fg)", "max(m - 1, ig)", "max(m, ig)"])
def test_recognised_in_any_order(update: str) -> None:
    c, m = analyze(_spec(update)).transitions
    assert m.kind is TransitionKind.RUNNING_MAX
    assert m.running_max is not None
    assert c.kind is TransitionKind.SCALAR
    assert c.driven_by == ("m",)
    assert not c.coupled


@pytest.mark.parametrize(("update", "words", "col"), [
    ("max(2 * m + fg, ig)", "is not a running max", 12),
    ("max(fg + m, ig + sum(C))", "is not a running max", 12),
])
def test_malformed_running_max_is_one_error_with_a_caret(update: str, words: str, col: int) -> None:
    with pytest.raises(SpecError) as info:
        analyze(_spec(update))
    (d,) = info.value.diagnostics  # C, which reads m, is not reported a second time
    assert words in d.message
    assert (d.span.line, d.span.col) == (4, col)
    assert "max(a + m, b)" in d.hint
    assert "^" in info.value.render()


def test_running_max_cannot_loop() -> None:
    spec = from_text("""recurrence rm
dim    J = 2
input  q: [K], k: [K], v: [V], ig: [J], fg: [] logdecay
state  C: [K, V], m: []
update m = max(fg + m, ig[j]) for j in J
update C = exp(fg) * C + outer(k, v)
output o: [V] = q @ C - m
""", "rm.rec")
    with pytest.raises(SpecError) as info:
        analyze(spec)
    (d,) = info.value.diagnostics
    assert "updates once per token" in d.message


def test_max_plus_operator() -> None:
    assert verify(OperatorForm.MAX_PLUS)
    gen = torch.Generator().manual_seed(0)
    els = [(torch.randn(4, generator=gen), torch.randn(4, generator=gen)) for _ in range(3)]
    left = compose(OperatorForm.MAX_PLUS, els[2], compose(OperatorForm.MAX_PLUS, els[1], els[0], torch), torch)
    right = compose(OperatorForm.MAX_PLUS, compose(OperatorForm.MAX_PLUS, els[2], els[1], torch), els[0], torch)
    for x, y in zip(left, right, strict=True):
        torch.testing.assert_close(x, y)
    m0 = torch.randn(4, generator=gen)
    step = m0
    for el in els:  # the composed element applied once equals the steps one by one
        step = apply(OperatorForm.MAX_PLUS, el, step, torch)
    torch.testing.assert_close(apply(OperatorForm.MAX_PLUS, left, m0, torch), step)


def test_explain_and_chunk_plan_name_the_running_max() -> None:
    a = analyze(load_spec("mlstm")[0])
    sa = a.state("m")
    assert sa.operator.formula == "(a2, b2) ∘ (a1, b1) = (a1 + a2, max(a2 + b1, b2))"
    assert sa.chunk.mode.value == "prefix-max"
    plan = plan_chunk(a)
    assert plan.chunkable
    assert [c.state for c in plan.calls] == ["C", "n"]
    assert [r.state for r in plan.running] == ["m"]
    assert any("m: a running max, first" in line for line in describe(plan))


@pytest.mark.interpret
@pytest.mark.parametrize("mode", ["recurrent", "chunk"])
def test_mlstm_stays_finite_where_the_unstabilised_gate_overflows(mode: str) -> None:
    """ig ≈ 100: exp(ig) is inf in fp32, the stabilised gates exp(ig − m_t) are ≤ 1. Outputs, final states and
    gradients match the float64 oracle."""
    rec = recurgen.load("mlstm")
    xs = random_inputs(rec.spec, 1, 40, 2, {"K": 8, "V": 4}, torch.float32, 1)
    xs["ig"] = 100 + 5 * torch.randn(xs["ig"].shape, generator=torch.Generator().manual_seed(2))
    assert torch.isinf(torch.exp(xs["ig"])).all()
    rx = {n: x.double().requires_grad_() for n, x in xs.items()}
    rout, rfin = recurgen.reference(rec.spec, *rx.values(), output_final_state=True)
    cot = torch.randn(rout.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    rgrads = torch.autograd.grad((rout * cot).sum() + sum(f.sum() for f in rfin), list(rx.values()))
    a = {n: x.clone().requires_grad_() for n, x in xs.items()}
    out, fin = rec(*a.values(), output_final_state=True, mode=mode, chunk_size=16)
    grads = torch.autograd.grad((out.double() * cot).sum() + sum(f.double().sum() for f in fin), list(a.values()))
    assert torch.isfinite(out).all()
    close(f"{mode}: output", out, rout, TOL[torch.float32])
    for got, want, name in zip(fin, rfin, ("C", "n", "m"), strict=True):
        assert torch.isfinite(got).all()
        close(f"{mode}: final {name}", got, want, TOL[torch.float32])
    for got, want, name in zip(grads, rgrads, xs, strict=True):
        assert torch.isfinite(got).all()
        close(f"{mode}: d{name}", got, want, 10 * TOL[torch.float32])
