"""The structured pieces evaluate to what the spec says: for every bundled spec and state, at random
inputs drawn from the declared domains and a random state,
  * A_t rebuilt from the classification (decay, Householder, DPLR pieces) applied to S equals L(S),
    the update's linear part, and b_t's outer-product factors sum to b_t;
  * the class-specific A_tᵀ (what chunk mode's backward applies) is adjoint: <L(S), dS> = <S, A_tᵀ dS>.
The backward the kernels run (`codegen.step.build_adjoint`) is checked in tests/codegen/test_fuzz_adjoint.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from recurgen import ir
from recurgen.analysis import TransitionKind, analyze
from recurgen.analysis import exprs as X
from recurgen.analysis.classify import applied, transition_matrix
from recurgen.codegen.step import build_adjoint, build_step
from recurgen.frontend import from_text, load_spec
from recurgen.resources import bundled_spec_names
from tests.helpers import close

from .evaluate import environment, evaluate, inner, sample

SIZES = {"K": 3, "V": 2, "D": 3, "N": 2, "E": 3, "P": 2, "J": 2, "M": 4}


def _setup(name: str, seed: int) -> tuple[ir.Spec, dict, dict[str, int]]:
    spec = load_spec(name)[0]
    sizes = {d.name: d.size or SIZES[d.name] for d in spec.dims}
    env = environment(spec, sizes, seed)
    for d in spec.updates:
        if d.loop is not None:
            env[d.loop.var] = 1  # the second step of a multi-step update
    for t in analyze(spec).transitions:
        if t.running_max is not None:  # the others read it like an input
            env[t.state] = _state(spec.tensor(t.state), sizes, 50 + seed)
    return spec, env, sizes


def _state(t: ir.Tensor, sizes: dict[str, int], seed: int) -> torch.Tensor:
    return sample(ir.Tensor(t.name, t.ty), sizes, torch.Generator().manual_seed(seed))


EXACT = {"tol": 1e-12, "rtol": 1e-10, "floor": 1.0}  # float64 and complex128: equal up to rounding


# tests/analysis/evaluate.py aligns operands by dim name: a tensor that repeats a dim (linoss's [X, X, P] block,
# met through Op.RENAME aliases) is outside it; linoss's update is checked against its paper loop instead
# (tests/reference) and its block form by tests/frontend/test_block_dims.py
BY_NAME = [n for n in bundled_spec_names() if n != "linoss"]


@pytest.mark.parametrize("name", BY_NAME)
@pytest.mark.parametrize("seed", [0, 1])
def test_pieces_rebuild_the_update(name: str, seed: int) -> None:
    spec, env, sizes = _setup(name, seed)
    for sa in analyze(spec).states:
        t = sa.transition
        st = spec.tensor(t.state)
        s = _state(st, sizes, 100 + seed)
        env_s = {**env, X.HOLE: s}
        if t.running_max is not None:  # max(shift + m, floor) is the update
            u = next(u for u in spec.updates if u.state == t.state)
            rm = t.running_max
            rebuilt = ir.Apply(ir.Op.MAX, (X.add(rm.shift, X.hole(st.ty)) or X.hole(st.ty), rm.floor), st.ty)
            close("running max", evaluate(rebuilt, env_s, sizes)[0], evaluate(u.value, {**env, t.state: s}, sizes)[0],
                  **EXACT)
            continue
        want = evaluate(t.linear, env_s, sizes)[0]
        m = transition_matrix(t)
        if m is None:  # a state coupled to another (linoss's z) has only the joint block transition
            assert t.kind is TransitionKind.DENSE, t.evidence
            assert t.coupled, t.evidence
            continue
        got = evaluate(applied(t, m, X.hole(st.ty)), env_s, sizes)[0]
        close("linear part", got, want.expand(got.shape) if not want.dim() else want, **EXACT)  # A_t = 0: a 0
        if t.offset_terms:
            total = None
            for o in t.offset_terms:
                term = X.outer(o.left, o.right)
                total = X.add(total, X.mul(o.coef, term) if o.coef is not None else term)
            assert total is not None
            close("offset", evaluate(total, env, sizes)[0], evaluate(t.offset, env, sizes)[0],  # type: ignore[arg-type]
                  **EXACT)
        if t.decay is not None and t.decay.log is not None and t.kind is not TransitionKind.HOUSEHOLDER:
            close("decay", evaluate(X.unary(ir.Op.EXP, t.decay.log), env, sizes)[0],
                  evaluate(t.decay.coef, env, sizes)[0], **EXACT)


@pytest.mark.parametrize("name", BY_NAME)
def test_adjoints_are_adjoint(name: str) -> None:
    spec, env, sizes = _setup(name, 0)
    a = analyze(spec)
    for sa in a.states:
        t = sa.transition
        if t.running_max is not None:  # not linear: its backward routes through the max (test_backward)
            continue
        st = spec.tensor(t.state)
        s, ds = _state(st, sizes, 1), _state(st, sizes, 2)
        cot = ir.Var(f"d{t.state}", ir.Kind.INPUT, st.ty)
        env_s = {**env, X.HOLE: s, cot.name: ds}
        lhs = inner(evaluate(t.linear, env_s, sizes)[0], ds)
        m = transition_matrix(t, transpose=True)
        if m is None:  # a state coupled to another (linoss's z): its adjoint is the joint block's
            assert t.coupled, t.evidence
            continue
        got = evaluate(applied(t, m, cot), env_s, sizes)[0]
        if not got.dim():  # A_t = 0 (a state that reads no state): its adjoint is a 0
            got = got.expand(s.shape)
        assert math.isclose(lhs, inner(s, got), rel_tol=1e-10, abs_tol=1e-12)


def test_right_side_and_coupled_adjoints() -> None:
    spec = from_text("""recurrence mix
input k: [K], v: [V], a: [K], b: [K], w: [K] logdecay, g: [] logdecay
state S: [V, K], z: [K]
update S = S @ (diag(exp(w)) + outer(a, b)) + outer(v, k)
update z = exp(g) * z + S.T @ v
output o: [V] = S @ k
""")
    sizes = {"K": 3, "V": 2}
    env = environment(spec, sizes, 0)
    a = analyze(spec)
    s, z = a.transitions
    assert s.kind is TransitionKind.DPLR
    assert z.kind is TransitionKind.DENSE
    assert z.coupled == ("S",)
    x, dx = _state(spec.tensor("S"), sizes, 1), _state(spec.tensor("S"), sizes, 2)
    env_s = {**env, X.HOLE: x, "dS": dx}
    lhs = inner(evaluate(s.linear, env_s, sizes)[0], dx)
    adj = applied(s, transition_matrix(s, transpose=True), ir.Var("dS", ir.Kind.INPUT, s.linear.ty))  # type: ignore[arg-type]
    assert math.isclose(lhs, inner(x, evaluate(adj, env_s, sizes)[0]), rel_tol=1e-10)
    close("matrix", evaluate(applied(s, transition_matrix(s), X.hole(s.linear.ty)), env_s, sizes)[0],  # type: ignore[arg-type]
          evaluate(s.linear, env_s, sizes)[0], **EXACT)
    ds = dict(build_adjoint(build_step(spec)).prev_states)["S"]  # the kernels' adjoint, which explain prints
    assert "∂z" in ir.uses(ds, {ir.Kind.INPUT})  # S receives z's cotangent through z's update
