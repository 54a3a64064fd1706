"""Property: for random linear updates built from a small typed grammar, `analyze` never fails with
anything but SpecError, and whatever class it finds, A_t rebuilt from the pieces equals the update's
linear part, the class's transposed transition is its adjoint (numerically, at random inputs), and the
kernels' backward prints."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from recurgen import ir
from recurgen.analysis import analyze
from recurgen.analysis import exprs as X
from recurgen.analysis.classify import applied, transition_matrix
from recurgen.analysis.report import explain
from recurgen.explain import backward_lines
from recurgen.frontend import from_text

from .evaluate import environment, evaluate, inner, sample

HEADER = """recurrence fuzz
dim E = 2
input q: [K], k: [K] normalized, c: [K], x: [K], v: [V], w: [V], g: [K] logdecay, a: [] logdecay, beta: [] unit
input p: [E, K], r: [K, E]
param M: [K, K], N: [V, V]
state S: [K, V]
"""
SIZES = {"K": 3, "V": 2, "E": 2}

scalars = st.sampled_from(["beta", "exp(a)", "0.5", "2", "(1 - beta)", "-beta"])
vec_k = st.sampled_from(["k", "c", "x", "exp(g)", "k * c", "(1 - exp(g))", "beta * k", "p[0]", "(2 * p)[1]", "r.T[0]",
                         "(exp(g) * r.T)[1]", "cos(x)", "sin(c)"])
vec_v = st.sampled_from(["v", "w", "exp(-softplus(w))"])
mat_k = st.recursive(
    st.one_of(st.just("I"), st.builds(lambda a, b: f"outer({a}, {b})", vec_k, vec_k),
              st.builds(lambda a: f"diag({a})", vec_k), st.just("M")),
    lambda m: st.one_of(st.builds(lambda s, a: f"({s} * {a})", scalars, m),
                        st.builds(lambda a, b: f"({a} + {b})", m, m),
                        st.builds(lambda a, b: f"({a} - {b})", m, m),
                        st.builds(lambda a, b: f"({a} @ {b})", m, m),
                        st.builds(lambda a: f"{a}.T", m)),
    max_leaves=4)
mat_v = st.one_of(st.just("N"), st.builds(lambda a, b: f"(I - outer({a}, {b}))", vec_v, vec_v),
                  st.builds(lambda a: f"diag({a})", vec_v))


def _terms(t: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda s, a: f"{s} * ({a})", scalars, t),
        st.builds(lambda m, a: f"{m} @ ({a})", mat_k, t),
        st.builds(lambda a, m: f"({a}) @ {m}", t, mat_v),
        st.builds(lambda u, a: f"{u} * ({a})", vec_k, t),
        st.builds(lambda u, a: f"({a}) * {u}", vec_v, t),
        st.builds(lambda u, w, a: f"outer({u}, {w} @ ({a}))", vec_k, vec_k, t),
        st.builds(lambda a, b: f"{a} + {b}", t, t),
        st.builds(lambda a, b: f"{a} - ({b})", t, t),
        st.builds(lambda a: f"-({a})", t))


linear = st.recursive(st.just("S"), _terms, max_leaves=4)


@given(linear)
def test_random_linear_updates(update: str) -> None:
    spec = from_text(HEADER + f"update S = {update} + outer(k, v)\noutput o: [V] = q @ S\n", "fuzz.rec")
    a = analyze(spec)  # always affine here: any SpecError would be a bug
    explain(a)
    (t,) = a.transitions
    env = environment(spec, SIZES, 0)
    gen = torch.Generator().manual_seed(1)
    st_ = spec.tensor("S")
    s, ds = sample(st_, SIZES, gen), sample(st_, SIZES, gen)
    cot = ir.Var("dS", ir.Kind.INPUT, st_.ty)
    env_s = {**env, X.HOLE: s, cot.name: ds}
    want = evaluate(t.linear, env_s, SIZES)[0]
    m = transition_matrix(t)
    if m is not None:
        got = evaluate(applied(t, m, X.hole(st_.ty)), env_s, SIZES)[0]
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10, msg=f"{t.kind}: {update}")
        mt = transition_matrix(t, transpose=True)  # the class's A_tᵀ (chunk mode's backward) is L's adjoint
        assert mt is not None
        adj = evaluate(applied(t, mt, cot), env_s, SIZES)[0]
        assert math.isclose(inner(want, ds), inner(s, adj), rel_tol=1e-9, abs_tol=1e-10)
    assert backward_lines(spec)[1].startswith("∂S_{t-1} = ")  # the kernels' adjoint prints for any update


def test_kinds_found_by_the_grammar_cover_the_structured_classes() -> None:
    # A few hand-picked members of the grammar, one per class the fuzzer is meant to reach.
    seen = set()
    for upd in ["S", "beta * S", "exp(g) * S", "(S) * exp(-softplus(w))", "(I - outer(beta * k, k)) @ (S)",
                "diag(exp(g)) @ (S) + outer(c, x @ (S))", "M @ (S)"]:
        spec = from_text(HEADER + f"update S = {upd} + outer(k, v)\noutput o: [V] = q @ S\n")
        seen.add(analyze(spec).transitions[0].kind.name)
    assert seen == {"IDENTITY", "SCALAR", "DIAGONAL", "HOUSEHOLDER", "DPLR", "DENSE"}


