"""Numerical danger warnings, symbol assumptions from domains, and the sympy size guard."""

from __future__ import annotations

import math

import pytest
import sympy as sp

from recurgen import ir
from recurgen.analysis import analyze
from recurgen.analysis.symbolic import MAX_NODES, Converter, TooLarge, assumptions, real_part_nonpositive
from recurgen.errors import Severity
from recurgen.frontend import from_text, load_spec
from recurgen.resources import bundled_spec_names

# mLSTM without its stabiliser: a plain logsigmoid forget gate
UNSTABILISED = """recurrence mlstm_unstabilised
input  q: [K], k: [K], v: [V], ig: [], fg: []
state  C: [K, V], n: [K]
update C = exp(logsigmoid(fg)) * C + exp(ig) * outer(scale * k, v)
update n = exp(logsigmoid(fg)) * n + exp(ig) * (scale * k)
output h: [V] = (q @ C) / max(abs(q @ n), 1)
"""


HEADER = """recurrence w
input  q: [K], k: [K], v: [V], g: [K], f: [], ig: [], n: [] logdecay, p: [] positive
param  A: [K] negative
state  S: [K, V]
"""


def warnings_of(update: str) -> list[str]:
    a = analyze(from_text(HEADER + f"update S = {update}\noutput o: [V] = q @ S\n", "w.rec"))
    assert all(d.severity is Severity.WARNING for d in a.diagnostics)
    return [d.message for d in a.diagnostics]


@pytest.mark.parametrize("name", bundled_spec_names())
def test_bundled_specs_warn_about_nothing(name: str) -> None:
    # mLSTM's gates are stabilised: exp(ig − m_t) and exp(log f + m_{t-1} − m_t) are provably <= 1
    assert analyze(load_spec(name)[0]).diagnostics == ()


def test_unstabilised_exponential_input_gate() -> None:
    (d,) = analyze(from_text(UNSTABILISED, "u.rec")).diagnostics
    assert "`exp(ig)` in the input term of `C` and `n`" in d.message
    assert "fp32" in d.hint


def test_exp_of_an_undeclared_input() -> None:
    (msg,) = warnings_of("exp(g) * S + outer(k, v)")
    assert "`exp(g)` in the transition of `S` may exceed 1" in msg
    d = analyze(from_text(HEADER + "update S = exp(g) * S + outer(k, v)\noutput o: [V] = q @ S\n", "w.rec")) \
        .diagnostics[0]
    assert "logdecay" in d.hint
    assert (d.span.line, d.span.col, d.span.end_col) == (5, 12, 18)


@pytest.mark.parametrize("update", [
    "exp(n) * S + outer(k, v)",
    "exp(-softplus(g)) * S + outer(k, v)",
    "exp(logsigmoid(f)) * S + outer(k, v)",
    "exp(p * A) * S + outer(k, v)",
    "exp(-p) * S + outer(k, v)",
    "exp(n) * S + (1 - exp(n)) * outer(k, v)",
])
def test_safe_decays_do_not_warn(update: str) -> None:
    assert warnings_of(update) == []


def test_decay_not_in_log_space() -> None:
    (msg,) = warnings_of("sigmoid(f) * S + outer(k, v)")
    assert "not in log space" in msg
    d = analyze(from_text(HEADER + "update S = sigmoid(f) * S + outer(k, v)\noutput o: [V] = q @ S\n")).diagnostics[0]
    assert "exp(logsigmoid(f))" in d.hint


@pytest.mark.parametrize("decl", ["input  w: [K] unit", "param  w: [K] unit", "input  w: [] unit",
                                  "param  w: [] unit"])
def test_decay_not_in_log_space_is_one_rule_for_inputs_and_params(decl: str) -> None:
    """Issue 16: Comba's `alpha` (an input) warned, RWKV-5's `w: [K] unit` (a param) did not."""
    spec = from_text(f"recurrence r5\ninput q: [K], k: [K], v: [V]\n{decl}\nstate S: [K, V]\n"
                     "update S = w * S + outer(k, v)\noutput o: [V] = q @ S\n")
    (d,) = analyze(spec).diagnostics
    assert "`w` of `S` is not in log space" in d.message
    assert f"`logdecay` {decl.split()[0]} g" in d.hint


def test_constant_decays_need_no_log_space() -> None:
    spec = from_text("recurrence r\ninput q: [K], k: [K], v: [V]\nconst gamma = 1 - 2 ** (-5 - head)\n"
                     "state S: [K, V]\nupdate S = gamma * S + outer(k, v)\noutput o: [V] = q @ S\n")
    assert analyze(spec).diagnostics == ()


def test_elementwise_scan_decays_need_no_log_space() -> None:
    spec = from_text("recurrence h\ninput x: [D], f: [D]\nstate h: [D]\nupdate h = sigmoid(f) * h + x\n"
                     "output o: [D] = h\n")
    assert analyze(spec).diagnostics == ()


def test_unbounded_input_gate() -> None:
    (msg,) = warnings_of("exp(n) * S + exp(ig) * outer(k, v)")
    assert "unbounded exponential gate" in msg


def test_assumptions_from_domains() -> None:
    logdecay = ir.Domain(hi=0.0, hi_open=False, logspace=True)
    assert assumptions(logdecay) == {"real": True, "nonpositive": True}
    assert assumptions(ir.Domain(lo=0.0, hi=1.0)) == {"real": True, "positive": True, "finite": True}
    assert assumptions(ir.Domain(hi=0.0))["negative"]
    assert assumptions(ir.Domain(), is_complex=True) == {"complex": True}
    assert "nonpositive" not in assumptions(ir.Domain(lo=-math.inf, hi=2.0))


def test_complex_decays_are_proved_by_their_real_part() -> None:
    s5 = load_spec("s5")[0]
    t = analyze(s5).transitions[0]
    assert t.decay is not None
    assert t.decay.log is not None
    assert real_part_nonpositive(t.decay.log, s5) is True


def test_size_guard() -> None:
    spec = load_spec("gla")[0]
    g = ir.Var("g", ir.Kind.INPUT, ir.Type(("K",)))
    big: ir.Expr = g
    for _ in range(MAX_NODES):
        big = ir.Apply(ir.Op.ADD, (big, g), big.ty)
    with pytest.raises(TooLarge):
        Converter(spec)(big)
    assert real_part_nonpositive(big, spec) is None
    assert isinstance(Converter(spec)(g), sp.Symbol)


def test_oversized_gate_is_not_a_hang() -> None:
    lets = "".join(f"let g{i + 1} = g{i} + g{i}\n" for i in range(9))  # 2^9 copies of g once inlined
    spec = from_text("recurrence big\ninput q: [K], k: [K], v: [V], g0: [K] logdecay\n" + lets +
                     "state S: [K, V]\nupdate S = exp(-softplus(g9)) * S + outer(k, v)\noutput o: [V] = q @ S\n")
    a = analyze(spec)  # sympy refuses it (size guard): the sign check gives up instead of running for minutes
    assert a.states[0].transition.decay is not None
