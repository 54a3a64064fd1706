"""The backward `explain` prints: the kernels' adjoint (`codegen.step.build_adjoint`), named and pretty-printed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from recurgen import ir
from recurgen.codegen.step import build_adjoint, build_step
from recurgen.explain import adjoint_equations, backward_lines
from recurgen.frontend import from_text, load_spec


def lines(name: str) -> list[str]:
    return backward_lines(load_spec(name)[0])


def test_gla_backward_is_the_kernels() -> None:
    assert lines("gla") == [
        "one token in reverse, as the recurrent kernels run it (∂S_t from the tokens after t, ∂o_t from the loss)",
        "∂S_{t-1} = τ1 ⊙ exp(g_t)",
        "∂q_t = S_t (∂o_t · scale)",
        "∂g_t = Σ_V(τ1 ⊙ S_{t-1}) ⊙ exp(g_t)",
        "∂k_t = τ1 v_t",
        "∂v_t = k_tᵀ τ1",
        "∂scale = Σ(∂o_t ⊙ q_tᵀ S_t)",
        "where τ1 = ∂S_t + q_t (∂o_t · scale)ᵀ",
    ]


def test_elementwise_backward() -> None:
    # `∂h_t + ∂o_t` is used thrice but is small: printed inline, not named
    assert lines("hgrn")[1:] == ["∂h_{t-1} = (∂h_t + ∂o_t) ⊙ exp(g_t)", "∂g_t = (∂h_t + ∂o_t) ⊙ h_{t-1} ⊙ exp(g_t)",
                                 "∂x_t = ∂h_t + ∂o_t"]


def test_complex_adjoint_is_conjugated() -> None:
    text = "\n".join(lines("lru"))  # PyTorch's convention: the cotangent goes through conj(decay)
    assert "∂h_{t-1} = τ1 ⊙ τ3" in text
    assert "τ2 = exp(−exp(nu_log) + i·exp(theta_log))" in text
    assert "τ3 = conj(τ2)" in text


@pytest.mark.parametrize("name", ["gla", "lru", "delta_product", "mlstm", "mamba2", "rwkv7"])
def test_named_subexpressions_unfold_to_the_kernels_adjoint(name: str) -> None:
    """Naming shared sub-expressions (τi, S_t) loses nothing: substituted back, every cotangent is exactly the
    expression the kernels are printed from."""
    spec = load_spec(name)[0]
    step = build_step(spec)
    adj = build_adjoint(step)
    eqs, where = adjoint_equations(spec)
    defs = dict(where) | {f"{s}_t": e for s, e in step.new_states}

    def unfold(e: ir.Expr) -> ir.Expr:
        if isinstance(e, ir.Var) and e.kind is ir.Kind.CONST and e.name in defs:
            return unfold(defs[e.name])
        return replace(e, args=tuple(unfold(c) for c in e.args)) if isinstance(e, ir.Apply) else e

    want = [g for _, g in adj.prev_states] + [g for _, g in adj.inputs] + [g for _, g in (*adj.params, *adj.options)]
    assert [unfold(e) for _, e in eqs] == want
    assert len(eqs) == len(want)
    assert all(lhs.startswith("∂") for lhs, _ in eqs)


def test_multi_step_backward_has_each_steps_slices() -> None:
    text = "\n".join(lines("delta_product"))
    for j in (0, 1):
        assert f"∂k_{{t,{j}}} = " in text
        assert f"∂beta_{{t,{j}}} = " in text


def test_running_max_routes_its_gradient_through_the_max() -> None:
    text = "\n".join(lines("mlstm"))
    assert "∂m_{t-1} = " in text
    assert "step(logsigmoid(fg_t) + m_{t-1} − ig_t)" in text or "step(τ1 − ig_t)" in text


# Gated Slot Attention's readout, o = Vᵀ softmax(K q), written with exp and sum: nonlinear in the state.
SOFTMAX_READOUT = """recurrence gsa_like
input q: [K], k: [K], v: [V]
state S: [K, V]
update S = S + outer(k, v)
output o: [K] = exp(S @ v) / sum(exp(S @ v))
"""


def test_a_nonlinear_readout_sends_its_cotangent_to_the_state() -> None:
    """The defect of #16: explain printed `∂o/∂(...) = 0` for such a readout, from a derivation of its own."""
    text = "\n".join(backward_lines(from_text(SOFTMAX_READOUT, "gsa.rec")))
    assert "∂o_t" in text
    assert "= 0" not in text
    assert "∂S_{t-1} = " in text
