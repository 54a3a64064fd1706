"""Every bundled spec parses and checks cleanly, and key sub-expressions get the types the models need."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from recurgen import ir
from recurgen.frontend import load_spec
from recurgen.resources import bundled_spec_names, bundled_spec_text

from .util import node

NAMES = bundled_spec_names()
MODELS_MD = Path("/work/shared/MODELS.md")


def test_twenty_specs_are_bundled() -> None:
    assert len(NAMES) >= 20


@pytest.mark.skipif(not MODELS_MD.exists(), reason="MODELS.md is not in this checkout")
def test_every_model_listed_in_models_md_is_bundled() -> None:
    models = MODELS_MD.read_text(encoding="utf-8").split("## Models", 1)[1]
    listed = set(re.findall(r"^\d+\. \*\*[^*]+\*\* `(\w+)`", models, re.MULTILINE))
    assert listed
    assert listed <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_bundled_spec_checks_without_warnings(name: str) -> None:
    spec, warnings = load_spec(name)
    assert spec.name == name
    assert not warnings, [w.message for w in warnings]
    assert sorted(u.state for u in spec.updates) == sorted(s.name for s in spec.states)
    assert spec.outputs
    assert all(not o.ty.complex for o in spec.outputs)
    assert set(spec.arg_order) == {t.name for t in (*spec.inputs, *spec.params)}
    assert spec.source == bundled_spec_text(name)


@pytest.mark.parametrize("name", NAMES)
def test_every_bundled_spec_has_a_citation_header(name: str) -> None:
    """A comment block with the source and the public call, then the header (STYLE 3.13)."""
    text = bundled_spec_text(name)
    comments = text.split("recurrence", 1)[0]
    assert comments.startswith("# ")
    assert "Call" in comments
    assert re.search(r'^recurrence \w+ ".*(19|20)\d\d|Kimi', text, re.MULTILINE) or re.search(r"(19|20)\d\d", comments)


# (spec, the exact source text of a sub-expression) -> its type
TYPES = {
    ("gla", "exp(g)"): "[K]",
    ("gla", "exp(g) * S"): "[K, V]",  # a [K] gate broadcasts over the rows of S
    ("gla", "outer(k, v)"): "[K, V]",
    ("gla", "q @ S"): "[V]",
    ("simple_gla", "exp(g + g_gamma) * S"): "[K, V]",  # a scalar gate
    ("hgrn", "exp(g) * h + x"): "[D]",
    ("delta_rule", "I - beta * outer(k, k)"): "[K, K]",  # `I` takes its size from its partner
    ("delta_rule", "(I - beta * outer(k, k)) @ S"): "[K, V]",
    ("delta_product", "k[j]"): "[K]",
    ("delta_product", "beta[j]"): "[]",
    ("mamba", "dt * A"): "[E, N]",  # [E] broadcasts into [E, N]
    ("mamba", "h @ C"): "[E]",
    ("mamba2", "outer(delta * x, B)"): "[P, N]",
    ("longhorn", "outer(eps, k * k)"): "[D, N]",
    ("longhorn", "sum(k * k)"): "[]",
    ("rwkv6", "prev(S)"): "[K, V]",
    ("rwkv7", "a @ S"): "[V]",
    ("rwkv7", "outer(b, a @ S)"): "[K, V]",
    ("mlstm", "max(abs(q @ n), exp(-m)) + eps"): "[]",
    ("lru", "complex(B_re, B_im) @ x"): "[N] complex",
    ("lru", "Re(complex(C_re, C_im) @ h)"): "[D]",
    ("s4d", "sum(complex(C_re, C_im) * x, N)"): "[D] complex",
    ("s5", "complex(B_re, B_im) @ u"): "[N] complex",
    ("gateloop", "exp(complex(g, theta))"): "[K] complex",
    ("retention", "2 ** (-5 - head)"): "[]",
}


@pytest.mark.parametrize(("name", "text"), list(TYPES), ids=[f"{n}:{t}" for n, t in TYPES])
def test_sub_expression_types(name: str, text: str) -> None:
    spec, _ = load_spec(name)
    assert str(node(spec, text).ty) == TYPES[name, text]


def test_state_means_previous_value_in_update_and_new_value_in_output() -> None:
    spec, _ = load_spec("rwkv6")
    update_vars = [n for n in ir.walk(spec.updates[0].value) if isinstance(n, ir.Var) and n.name == "S"]
    assert update_vars
    assert all(v.kind is ir.Kind.STATE for v in update_vars)
    out_kinds = {n.kind for n in ir.walk(spec.outputs[0].value) if isinstance(n, ir.Var) and n.name == "S"}
    assert out_kinds == {ir.Kind.PREV_STATE}


def test_fixed_loop_dim_and_loop_update() -> None:
    spec, _ = load_spec("delta_product")
    assert spec.dim("J").size == 2
    assert spec.updates[0].loop == ir.Loop("j", "J", 2)


def test_per_head_const() -> None:
    spec, _ = load_spec("retention")
    (gamma,) = spec.consts
    assert gamma.name == "gamma"
    assert ir.uses(gamma.value, {ir.Kind.HEAD}) == {"head"}
