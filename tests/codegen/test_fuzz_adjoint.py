"""Property: for every spec the typed generator of tests/frontend/test_fuzz.py builds, the code generator's
adjoint step (codegen.autodiff on the step DAG: what the backward kernels print) equals torch autograd through
the step, at random values of one token.

Both sides are evaluated by the oracle's `Evaluator` in float64, which also evaluates the internal ops autodiff
emits (EMBED, STEP, SIGN, DIAGONAL, BROADCAST): so every derivative rule the generator reaches is checked, with
no kernel compiled. The generator reaches indexing of computed values (`(2 * x)[0]`, `m.T[1]`), `sin`/`cos`,
`prev(M)` and `new(M)` in updates.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings

from recurgen import ir
from recurgen.codegen.step import build_adjoint, build_step, cotangent_var
from recurgen.errors import SpecError
from recurgen.frontend import from_text
from recurgen.oracle import Evaluator, Sizes
from recurgen.testing.sampling import random_inputs, random_state
from tests.frontend.test_fuzz import typed_specs

SIZES = {"K": 3, "V": 2, "N": 4, "D": 2, "E": 2, "J": 2}
Kind = ir.Kind


def check_adjoint(text: str, seed: int = 0) -> None:
    try:
        spec = from_text(text, "fuzz.rec")
    except SpecError:
        pytest.skip("rejected (the front-end fuzzer reports that)")
    step = build_step(spec)
    adjoint = build_adjoint(step)
    inputs = random_inputs(spec, 1, 1, 1, SIZES, torch.float64, seed)
    states = random_state(spec, 1, 1, SIZES, torch.float64, seed)
    ev = Evaluator(spec, Sizes(1, 1, 1, {**SIZES, **{d.name: d.size for d in spec.dims if d.size}}),
                   torch.float64, torch.device("cpu"))
    leaves: dict[tuple[str, Kind], torch.Tensor] = {}
    for t in spec.inputs:
        leaves[(t.name, Kind.INPUT)] = inputs[t.name][:, 0].clone().requires_grad_()
    for t in spec.params:
        leaves[(t.name, Kind.PARAM)] = inputs[t.name].unsqueeze(0).clone().requires_grad_()
    for s, x in zip(spec.states, states, strict=True):
        leaves[(s.name, Kind.STATE)] = x.clone().requires_grad_()
    for o in spec.options:
        leaves[(o.name, Kind.OPTION)] = ev.ev(o.value).detach().clone().requires_grad_()
    for c in spec.consts:
        ev.env[(c.name, Kind.CONST)] = ev.ev(c.value)
    ev.env.update(leaves)

    gen = torch.Generator().manual_seed(seed + 1)
    loss = torch.zeros((), dtype=torch.float64)
    roots = [(n, e, spec.tensor(n).ty) for n, e in step.new_states] + [(n, e, e.ty) for n, e in step.outputs]
    for name, expr, ty in roots:
        value = ev.ev(expr).expand(1, 1, *(ev.sizes.dims[d] for d in ty.dims))
        cot = torch.randn(value.shape, generator=gen, dtype=torch.float64)
        if value.is_complex():
            cot = torch.complex(cot, torch.randn(value.shape, generator=gen, dtype=torch.float64))
        ev.env[(cotangent_var(name, ty).name, Kind.INPUT)] = cot
        loss = loss + (torch.conj(cot) * value).real.sum()
    if not torch.isfinite(loss):
        return  # a random domain overflowed: nothing to compare
    want = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()), allow_unused=True), strict=True))

    got: dict[tuple[str, Kind], torch.Tensor] = {}

    def add(key: tuple[str, Kind], g: torch.Tensor) -> None:
        got[key] = got[key] + g if key in got else g

    with torch.no_grad():
        for name, g in adjoint.prev_states:
            add((name, Kind.STATE), ev.ev(g))
        for leaf, g in adjoint.inputs:
            val = ev.ev(g)
            if isinstance(leaf, ir.Var):
                add((leaf.name, Kind.INPUT), val)
            else:  # a loop slice k[j]: its row of the whole input
                base = leaf.args[0]
                assert isinstance(base, ir.Var)
                full = torch.zeros_like(leaves[(base.name, Kind.INPUT)])
                full[:, :, int(leaf.attr)] = val
                add((base.name, Kind.INPUT), full)
        for name, g in adjoint.params:
            add((name, Kind.PARAM), ev.ev(g))
        for name, g in adjoint.options:
            add((name, Kind.OPTION), ev.ev(g))
    for key, w in want.items():
        g = got.get(key)
        if w is None or not torch.isfinite(w).all():
            continue
        shape = leaves[key].shape
        g = torch.zeros(shape, dtype=w.dtype) if g is None else g.expand(shape)
        scale = max(1.0, w.abs().max().item())
        assert torch.allclose(g, w, rtol=1e-7, atol=1e-9 * scale), f"d{key[0]}: {g} != {w}\n{text}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed_specs())
@example('recurrence fuzz\ndim E = 2\ninput x0: [K], x1: [V], xe: [E], ue: [E, K]\nstate S0: [K, V]\n'
         'update S0 = cos(sum(xe)) * S0 + outer((2 * ue)[1], x1)\noutput y0 = (ue.T @ xe) * (S0 @ x1)\n')
def test_adjoint_of_generated_specs_matches_autograd(text: str) -> None:
    check_adjoint(text)


def test_adjoint_through_index_of_a_computed_matrix_and_new() -> None:
    """RoPE's `q.T[0] @ S` (an output indexing a computed matrix) and a `new(M)` read, by hand."""
    check_adjoint('recurrence t "t"\ndim E = 2\ninput q: [K, E], k: [K], v: [V], g: [] logdecay\n'
                  "state S: [K, V], M: [K, V]\nupdate S = exp(g) * S + outer(sin(k) * (2 * q.T)[1], v)\n"
                  "update M = M + new(S)\noutput o: [V] = q.T[0] @ M + (q.T[1] @ prev(S))\n")
