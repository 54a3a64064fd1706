"""`explain` reports (golden files for every bundled spec), the dump, and the pretty-printer."""

from __future__ import annotations

from pathlib import Path

import pytest

from recurgen import ir
from recurgen.analysis import ChunkMode, analyze
from recurgen.analysis.pretty import OUTPUT, PLAIN, UPDATE, Style, pretty, shift
from recurgen.analysis.report import dump, explain
from recurgen.codegen.chunk_plan import plan_chunk
from recurgen.explain import explain_report
from recurgen.frontend import from_text, load_spec
from recurgen.resources import bundled_spec_names

from .golden import check_golden


@pytest.mark.parametrize("name", bundled_spec_names())
def test_explain_golden(name: str, update_golden: bool) -> None:
    text = explain_report(analyze(load_spec(name)[0]))  # with the chunk kernels generated from the analysis
    check_golden(f"explain/{name}.txt", text, update_golden)


@pytest.mark.parametrize("name", ["gla", "mlstm", "delta_product"])
def test_explain_is_deterministic(name: str) -> None:
    spec = load_spec(name)[0]
    assert explain(analyze(spec)) == explain(analyze(load_spec(name)[0]))
    assert dump(analyze(spec)) == dump(analyze(spec))


def test_dump_names_every_piece() -> None:
    text = dump(analyze(load_spec("kda")[0]))
    assert "state S: kind=HOUSEHOLDER side=left" in text
    assert "householder beta=beta_t key=k_t order=right" in text
    assert "operator    diag-low-rank:" in text


def _spec_expr(update: str, out: str = "q @ S") -> tuple[ir.Expr, ir.Expr]:
    spec = from_text(f"""recurrence p
input q: [K], k: [K], v: [V], g: [K], beta: [], u: [K]
param M: [K, K]
state S: [K, V]
update S = {update}
output o: [V] = {out}
""")
    return spec.updates[0].value, spec.outputs[0].value


@pytest.mark.parametrize(("update", "text"), [
    ("exp(g) * S + outer(k, v)", "exp(g_t) ⊙ S_{t-1} + k_t v_tᵀ"),
    ("(I - beta * outer(k, k)) @ S + beta * outer(k, v)", "(I − beta_t · k_t k_tᵀ) S_{t-1} + beta_t · k_t v_tᵀ"),
    ("S + outer(u * k, v)", "S_{t-1} + (u_t ⊙ k_t) v_tᵀ"),
    ("S + outer(k, k @ S)", "S_{t-1} + k_t (k_tᵀ S_{t-1})"),
    ("M.T @ S - (-S)", "Mᵀ S_{t-1} − (−S_{t-1})"),
    ("S / (1 + beta) + outer(k, v) * 2 ** -1", "S_{t-1} / (1 + beta_t) + k_t v_tᵀ · 2 ** −1"),
    ("S + outer(k / norm(k), v)", "S_{t-1} + (k_t / ‖k_t‖) v_tᵀ"),
])
def test_pretty_updates(update: str, text: str) -> None:
    assert pretty(_spec_expr(update)[0], UPDATE) == text


def test_pretty_outputs_and_styles() -> None:
    upd, out = _spec_expr("S", "0.5 * (q @ S) + sum(k * q) * (k @ S)")
    assert pretty(out, OUTPUT) == "0.5 · q_tᵀ S_t + Σ(k_t ⊙ q_t) · k_tᵀ S_t"
    assert pretty(out, PLAIN) == "0.5 · qᵀ S + Σ(k ⊙ q) · kᵀ S"
    assert pretty(out, Style(time="t-1", state_time="t-1")) == \
        "0.5 · q_{t-1}ᵀ S_{t-1} + Σ(k_{t-1} ⊙ q_{t-1}) · k_{t-1}ᵀ S_{t-1}"
    assert pretty(upd) == "S_{t-1}"


def test_shift() -> None:
    assert (shift("t", -1), shift("t-1", 1), shift("t-1", -1), shift("t", 2), shift(None, 1)) == \
        ("t-1", "t", "t-2", "t+2", None)


PAPERS = sorted((Path(__file__).parents[1] / "papers").glob("*.rec"))
_FAMILY = {ChunkMode.MATMUL: {"matmul"}, ChunkMode.WY: {"wy", "dplr"}, ChunkMode.SCAN: {"scan"}}


@pytest.mark.parametrize("path", [*bundled_spec_names(), *PAPERS], ids=lambda p: getattr(p, "stem", p))
def test_explained_chunk_form_is_the_one_that_runs(path: str | Path) -> None:
    """The analysis' chunk form (explain's `chunk form`) names the kernel family chunk mode calls (GateLoop's
    complex row-wise decay runs the scan family, and explain says scan), and a state without one says why."""
    a = analyze(load_spec(path)[0])
    plan = plan_chunk(a)
    calls = {c.state: c.family for c in plan.calls}
    for s in a.states:
        mode = s.chunk.mode
        if mode is ChunkMode.NONE:
            assert not plan.chunkable
            assert "recurrent mode only" in s.chunk.lines[0]
        elif mode is ChunkMode.SHIFT and plan.chunkable:  # memoryless: a sequence before the calls, no kernel
            assert s.state not in calls
            assert s.state in {r.state for r in plan.running}
        elif mode is not ChunkMode.PREFIX_MAX and plan.chunkable:
            assert calls[s.state] in _FAMILY[mode], (s.state, mode, calls)
