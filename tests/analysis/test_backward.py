"""Adjoint recurrences and sympy-derived gate gradients."""

from __future__ import annotations

import pytest

from recurgen.analysis import analyze
from recurgen.frontend import from_text, load_spec

# mLSTM without its stabiliser: a plain logsigmoid forget gate
UNSTABILISED = """recurrence mlstm_unstabilised
input  q: [K], k: [K], v: [V], ig: [], fg: []
state  C: [K, V], n: [K]
update C = exp(logsigmoid(fg)) * C + exp(ig) * outer(scale * k, v)
update n = exp(logsigmoid(fg)) * n + exp(ig) * (scale * k)
output h: [V] = (q @ C) / max(abs(q @ n), 1)
"""


def grads(name: str) -> dict[tuple[str, str], str]:
    spec = from_text(UNSTABILISED, "u.rec") if name == "mlstm_unstabilised" else load_spec(name)[0]
    return {(g.expr, g.wrt): g.derivative for g in analyze(spec).gate_gradients}


def test_exp_gate() -> None:
    assert grads("gla")[("exp(g)", "g")] == "exp(g)"


def test_mamba_decay_wrt_every_leaf() -> None:
    g = grads("mamba")
    e = "exp(A*softplus(delta + delta_bias))"
    assert g[(e, "delta")] == "A*exp(A*softplus(delta + delta_bias))*sigmoid(delta + delta_bias)"
    assert g[(e, "delta_bias")] == g[(e, "delta")]
    assert g[(e, "A")] == "exp(A*softplus(delta + delta_bias))*softplus(delta + delta_bias)"


def test_logsigmoid_and_complex_gates() -> None:
    assert grads("mlstm_unstabilised")[("exp(logsigmoid(fg))", "fg")] == "exp(logsigmoid(fg))*sigmoid(-fg)"
    f = "exp(m + logsigmoid(fg) - Max(ig, m + logsigmoid(fg)))"  # the stabilised forget gate: max routes it
    assert grads("mlstm")[(f, "ig")] == f"-{f}*Heaviside(ig - m - logsigmoid(fg))"
    lru = grads("lru")
    assert lru[("exp(-exp(nu_log) + I*exp(theta_log))", "theta_log")] == \
        "I*exp(theta_log)*exp(-exp(nu_log) + I*exp(theta_log))"


def test_non_elementwise_parts_are_opaque() -> None:
    g = grads("longhorn")
    assert any(wrt == "[Σ(k ⊙ k)]" for _, wrt in g), g
    assert any(wrt == "beta" for _, wrt in g)


def test_gates_are_listed_once() -> None:
    exprs = [(g.expr, g.wrt) for g in analyze(load_spec("mlstm")[0]).gate_gradients]
    assert len(exprs) == len(set(exprs))  # C and n share the forget gate


@pytest.mark.parametrize(("name", "recurrence"), [
    ("gla", "dS_{t-1} = diag(exp(g_t)) dS_t + scale · q_{t-1} do_{t-1}ᵀ"),
    ("linear_attn", "dS_{t-1} = dS_t + scale · q_{t-1} do_{t-1}ᵀ"),
    ("rwkv6", "dS_{t-1} = diag(exp(w_t)) dS_t + scale · r_t do_tᵀ"),
    ("hgrn", "dh_{t-1} = exp(g_t) ⊙ dh_t + do_{t-1}"),
    ("gated_delta_rule", "dS_{t-1} = exp(g_t) · (I − beta_t · k_t k_tᵀ) dS_t + scale · q_{t-1} do_{t-1}ᵀ"),
    ("kda", "dS_{t-1} = diag(exp(g_t)) (I − beta_t · k_t k_tᵀ) dS_t + scale · q_{t-1} do_{t-1}ᵀ"),
    ("rwkv7", "dS_{t-1} = (diag(exp(w_t)) + a_t b_tᵀ) dS_t + scale · r_{t-1} do_{t-1}ᵀ"),
    ("mamba2", "dh_{t-1} = exp(softplus(dt_t + dt_bias) · A) · dh_t"
               " + ((given(z) · silu(z_{t-1}) + 1 − given(z)) ⊙ dy_{t-1}) C_{t-1}ᵀ"),
    ("mlstm", "dC_{t-1} = exp(logsigmoid(fg_t) + m_{t-1} − max(logsigmoid(fg_t) + m_{t-1}, ig_t)) · dC_t"
              " + q_{t-1} dP1_{t-1}ᵀ"),
])
def test_adjoint_recurrence_text(name: str, recurrence: str) -> None:
    a = analyze(load_spec(name)[0])
    assert a.states[0].backward.recurrence == recurrence


def test_complex_adjoint_is_conjugated() -> None:
    bw = analyze(load_spec("lru")[0]).states[0].backward
    assert bw.recurrence.startswith("dh_{t-1} = conj(exp(")
    assert "conj(C_re + i·C_im)ᵀ dy_{t-1}" in bw.recurrence


def test_multi_step_adjoint_reverses_the_steps() -> None:
    bw = analyze(load_spec("delta_product")[0]).states[0].backward
    assert "in reverse order, j = 1 down to 0" in bw.recurrence


def test_decay_and_input_cotangents() -> None:
    bw = analyze(load_spec("gla")[0]).states[0].backward
    assert bw.decay_cotangent == "d(g_t) = exp(g_t) ⊙ Σ_V(dS_t ⊙ S_{t-1})"
    assert bw.input_cotangents == ("d[k_t] = dS_t v_t", "d[v_t] = dS_tᵀ k_t")


def test_running_max_routes_its_gradient_through_the_max() -> None:
    m = analyze(load_spec("mlstm")[0]).state("m").backward
    assert m.adjoint is None
    assert m.recurrence.startswith("dm_{t-1} = 1[logsigmoid(fg_t) + m_{t-1} ≥ ig_t] · dm_t + ")
    assert m.decay_cotangent == ("d[logsigmoid(fg_t)] = 1[logsigmoid(fg_t) + m_{t-1} ≥ ig_t] · dm_t;  "
                                 "d[ig_t] = (1 − 1[logsigmoid(fg_t) + m_{t-1} ≥ ig_t]) · dm_t")
