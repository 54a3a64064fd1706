"""`prev(x)` of an input: the checker desugars it into a hidden state `_prev_x` (update `_prev_x = x`), which every
later stage carries like any state. Checked here: the desugared IR, its diagnostics, and that the oracle runs it
with x_{-1} = 0 and continues a sequence exactly from a final state."""

from __future__ import annotations

import pytest
import torch

from recurgen import ir, oracle
from recurgen.ir import Kind

from .util import errors_of, spec_of

TRAPEZOID = """input q: [K], k: [K], v: [V], g: [] logdecay, lam: [] unit
state S: [K, V]
update S = exp(g) * S + (1 - lam) * exp(g) * outer(prev(k), v) + lam * outer(k, v)
output o: [V] = q @ S + prev(v)
"""


def _vars(e: ir.Expr) -> set[tuple[str, Kind]]:
    return {(n.name, n.kind) for n in ir.walk(e) if isinstance(n, ir.Var)}


def test_prev_of_an_input_is_a_hidden_state_after_the_declared_ones() -> None:
    spec = spec_of(TRAPEZOID)
    assert [s.name for s in spec.states] == ["S", "_prev_k", "_prev_v"]
    assert [s.ty.dims for s in spec.states[1:]] == [("K",), ("V",)]
    hidden = spec.update_of("_prev_k")
    assert isinstance(hidden.value, ir.Var)
    assert (hidden.value.name, hidden.value.kind) == ("k", Kind.INPUT)
    # in an update the previous value is the state's bare value; in an output it is `prev` of the state
    assert ("_prev_k", Kind.STATE) in _vars(spec.update_of("S").value)
    assert ("_prev_v", Kind.PREV_STATE) in _vars(spec.outputs[0].value)
    # used twice, carried once
    twice = spec_of("input k: [K], v: [V]\nstate S: [K, V]\nupdate S = S + outer(prev(k), v) + outer(prev(k), v)\n"
                    "output o: [V] = prev(k) @ S")
    assert [s.name for s in twice.states] == ["S", "_prev_k"]


def test_hidden_names_never_clash_with_spec_names() -> None:
    # a user's own `prev_k` stays theirs: the hidden state's name starts with `_`, which no spec name can
    spec = spec_of("input k: [K], v: [V]\nstate prev_k: [K, V]\nupdate prev_k = prev_k + outer(prev(k), v)\n"
                   "output o: [V] = k @ prev_k")
    assert [s.name for s in spec.states] == ["prev_k", "_prev_k"]
    assert any("is not a valid identifier" in m for m in errors_of(
        "input k: [K]\nstate _prev_k: [K]\nupdate _prev_k = k\noutput o: [] = sum(_prev_k)"))


@pytest.mark.parametrize(("body", "message"), [
    ("input k: [K]\nlet a = prev(k)\nstate S: [K]\nupdate S = S + a\noutput o: [] = sum(S)",
     "`prev(k)` reads the previous token's input, in an `update` or an `output` only"),
    ("input k: [K]\nparam w: [K]\nstate S: [K]\nupdate S = S + prev(w) * k\noutput o: [] = sum(S)",
     "`w` is not a declared state"),
    ("input k: [K]\nstate S: [K]\nupdate S = S + new(k)\noutput o: [] = sum(S)", "`k` is not a declared state"),
])
def test_prev_of_what_is_not_an_input_or_state(body: str, message: str) -> None:
    assert message in errors_of(body)


def _tensors(spec: ir.Spec, t: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    b, h, k, v = 2, 2, 3, 4
    return {"q": torch.randn(b, t, h, k, generator=gen, dtype=torch.float64),
            "k": torch.randn(b, t, h, k, generator=gen, dtype=torch.float64),
            "v": torch.randn(b, t, h, v, generator=gen, dtype=torch.float64),
            "g": -torch.rand(b, t, h, generator=gen, dtype=torch.float64),
            "lam": torch.rand(b, t, h, generator=gen, dtype=torch.float64)}


def test_oracle_reads_zero_before_the_first_token_then_the_previous_input() -> None:
    spec = spec_of(TRAPEZOID)
    x = _tensors(spec, 6)
    out, final = oracle.run(spec, x)
    # o = q @ S + prev(v): a loop written from the definition, x_{-1} = 0
    s = torch.zeros(2, 2, 3, 4, dtype=torch.float64)
    pk = torch.zeros(2, 2, 3, dtype=torch.float64)
    pv = torch.zeros(2, 2, 4, dtype=torch.float64)
    for t in range(6):
        k, v, g, lam = x["k"][:, t], x["v"][:, t], x["g"][:, t, :, None, None], x["lam"][:, t, :, None, None]
        a = g.exp()
        s = a * s + (1 - lam) * a * pk[..., :, None] * v[..., None, :] + lam * k[..., :, None] * v[..., None, :]
        torch.testing.assert_close(out["o"][:, t], torch.einsum("bhk,bhkv->bhv", x["q"][:, t], s) + pv)
        pk, pv = k, v
    torch.testing.assert_close(final["_prev_k"], x["k"][:, -1])
    torch.testing.assert_close(final["_prev_v"], x["v"][:, -1])


@pytest.mark.parametrize("t1", [1, 3, 7])
def test_continuing_from_a_final_state_is_exact(t1: int) -> None:
    """Forward over T tokens == forward over T1 tokens, then T - T1 from the final state (which carries x_{T1-1})."""
    spec = spec_of(TRAPEZOID)
    x = _tensors(spec, 8, seed=1)
    whole, _ = oracle.run(spec, x)
    first, final = oracle.run(spec, {n: v[:, :t1] for n, v in x.items()})
    rest, _ = oracle.run(spec, {n: v[:, t1:] for n, v in x.items()},
                         initial_state=tuple(final[s.name] for s in spec.states))
    torch.testing.assert_close(torch.cat([first["o"], rest["o"]], dim=1), whole["o"], rtol=0, atol=1e-12)
    # without the hidden states the first continued token would read prev = 0: not a continuation
    cut, _ = oracle.run(spec, {n: v[:, t1:] for n, v in x.items()}, initial_state=(final["S"], None, None))
    assert not torch.allclose(cut["o"][:, 0], whole["o"][:, t1])


def test_a_term_of_previous_inputs_only_is_carried_as_one_state() -> None:
    """`outer(prev(k), prev(v))` would be a product of two states (not affine): it is carried whole, as the hidden
    state `_prev_k_v = outer(u * k, v)` (named after the inputs it reads); the per-input states it replaces are
    not kept, and a second such term gets the next free name."""
    spec = spec_of("input k: [K], v: [V], g: [] logdecay, w: [K]\nparam u: [K]\nstate S: [K, V]\n"
                   "update S = exp(g) * S + exp(g) * outer(u * prev(k), prev(v)) + outer(k, v)\n"
                   "output o: [V] = w @ S + sum(prev(k) * prev(k)) * prev(v)")
    assert [s.name for s in spec.states] == ["S", "_prev_k_v", "_prev_k_v_2"]
    carried = spec.update_of("_prev_k_v").value
    assert {(n.name, n.kind) for n in ir.walk(carried) if isinstance(n, ir.Var)} == {
        ("u", Kind.PARAM), ("k", Kind.INPUT), ("v", Kind.INPUT)}
    assert ("_prev_k_v_2", Kind.PREV_STATE) in _vars(spec.outputs[0].value)
    x = _tensors(spec, 5, seed=2) | {"w": torch.randn(2, 5, 2, 3, dtype=torch.float64),
                                    "u": torch.randn(2, 3, dtype=torch.float64)}
    x.pop("q")
    x.pop("lam")
    whole, _ = oracle.run(spec, x)
    first, final = oracle.run(spec, {n: v[:, :2] if v.dim() > 2 else v for n, v in x.items()})
    rest, _ = oracle.run(spec, {n: v[:, 2:] if v.dim() > 2 else v for n, v in x.items()},
                         initial_state=tuple(final[s.name] for s in spec.states))
    torch.testing.assert_close(torch.cat([first["o"], rest["o"]], dim=1), whole["o"], rtol=0, atol=1e-12)


def test_the_previous_input_can_be_indexed() -> None:
    """`prev(x)[0]` (found by the typed-spec fuzzer): an input's previous value indexes like the input."""
    spec = spec_of("dim E = 2\ninput x: [K], e: [E]\nstate S: [K]\nupdate S = exp(prev(e)[0]) * S + x\n"
                   "output o: [] = sum(S)")
    assert [s.name for s in spec.states] == ["S", "_prev_e"]
