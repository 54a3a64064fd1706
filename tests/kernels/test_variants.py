"""A researcher's variant is one edited line away: edit a bundled spec's text, get working kernels."""

from __future__ import annotations

import pytest
import torch

import recurgen
from recurgen.resources import bundled_spec_text
from tests.helpers import assert_close, random_inputs, random_state

VARIANTS = {
    # GLA with a scalar (per-head) decay instead of a per-channel one: one declaration changes
    "gla_scalar_decay": ("gla", [("g: [K] logdecay", "g: [] logdecay")]),
    # DeltaNet with a per-channel gate: declare the gate, apply it in the update
    "delta_rule_channel_gate": ("delta_rule", [
        ("beta: [] unit", "beta: [] unit, g: [K] logdecay"),
        ("update S = (I - beta * outer(k, k)) @ S", "update S = (I - beta * outer(k, k)) @ (exp(g) * S)"),
    ]),
}


@pytest.mark.interpret
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_edited_spec_compiles_and_matches_the_oracle(variant: str) -> None:
    base, edits = VARIANTS[variant]
    text = bundled_spec_text(base).replace(f"recurrence {base} ", f"recurrence {variant} ")
    for old, new in edits:
        assert old in text, f"the bundled {base} spec changed: update this test's edit"
        text = text.replace(old, new)
    rec = recurgen.compile(text, name=f"{variant}.rec")
    spec = rec.spec
    sizes = {"K": 5, "V": 3}
    xs = random_inputs(spec, 2, 7, 2, sizes, torch.float32, 0)
    h0 = random_state(spec, 2, 2, sizes, torch.float32, 0)
    leaves = {n: x.clone().requires_grad_() for n, x in xs.items()}
    o, s = rec(*leaves.values(), initial_state=h0, output_final_state=True)
    rleaves = {n: x.double().requires_grad_() for n, x in xs.items()}
    ro, rs = recurgen.reference(rec, *rleaves.values(), initial_state=[h.double() for h in h0],
                                output_final_state=True)
    assert_close(f"{variant}: output", o.detach(), ro.detach(), atol=1e-4, rtol=1e-4)
    assert_close(f"{variant}: final state", s.detach(), rs.detach(), atol=1e-4, rtol=1e-4)
    (o * o).sum().backward()
    (ro * ro).sum().backward()
    for n in leaves:
        g, rg = leaves[n].grad, rleaves[n].grad
        assert g is not None, n
        assert rg is not None, n
        assert_close(f"{variant}: d{n}", g, rg, atol=1e-4 * max(1.0, float(rg.abs().max())), rtol=1e-4)
