"""recurgen.layers: a RecurrentLayer from every bundled spec runs forward and backward (torch path, tiny sizes),
its inputs and params land in their declared domains, and SSM params start with decays in DECAY_RANGE."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from recurgen import ir, layers
from recurgen.layers import RecurrentLayer, constrain_input, constrain_param, init_param, unconstrain_param
from recurgen.resources import bundled_spec_names

SPECS = bundled_spec_names()
# tiny and fast: conftest sets TRITON_INTERPRET=1, so every call names the torch backend explicitly
D_MODEL, HEADS, B, T = 16, 2, 2, 5


def _in_domain(x: torch.Tensor, d: ir.Domain) -> bool:
    lo_ok = (x > d.lo) if d.lo_open else (x >= d.lo)
    hi_ok = (x < d.hi) if d.hi_open else (x <= d.hi)
    return bool((lo_ok & hi_ok).all())


@pytest.mark.parametrize("name", SPECS)
def test_forward_backward_every_spec(name: str) -> None:
    torch.manual_seed(0)
    layer = RecurrentLayer(name, D_MODEL, HEADS, backend="torch")
    x = torch.randn(B, T, D_MODEL, requires_grad=True)
    y = layer(x)
    assert y.shape == (B, T, D_MODEL)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    assert x.grad is not None
    assert x.grad.shape == x.shape
    for pname, p in layer.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"
    # causal: the output at t does not depend on later tokens (the short conv pads on the left only)
    x2 = x.detach().clone()
    x2[:, -1] += 1.0
    torch.testing.assert_close(layer(x2)[:, :-1], y[:, :-1].detach())


@pytest.mark.parametrize("name", SPECS)
def test_inputs_and_params_in_domain(name: str) -> None:
    torch.manual_seed(0)
    layer = RecurrentLayer(name, D_MODEL, HEADS, backend="torch")
    spec = layer.rec.spec
    inputs = layer.spec_inputs(5 * torch.randn(B, T, D_MODEL))
    for t in spec.inputs:
        x = inputs[t.name]
        assert x.shape == (B, T, HEADS, *(layer.sizes[d] for d in t.ty.dims))
        assert _in_domain(x, t.domain), f"{name}: input {t.name} leaves {t.domain}"
        if t.domain.normalized:
            torch.testing.assert_close(x.norm(dim=-1), torch.ones(x.shape[:-1]))
    for p in spec.params:
        value = layer.spec_params()[p.name]
        assert value.shape == (HEADS, *(layer.sizes[d] for d in p.ty.dims))
        assert _in_domain(value, p.domain), f"{name}: param {p.name} leaves {p.domain}"


def test_gated_delta_rule_layer_of_the_issue() -> None:
    layer = RecurrentLayer("gated_delta_rule", d_model=256, n_heads=4, backend="torch")
    assert layer.sizes == {"K": 64, "V": 64}
    assert layer.conv_names == {"q", "k", "v"}
    x = torch.randn(1, 3, 256, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None


def test_dims_expand_and_options() -> None:
    layer = RecurrentLayer("gla", 32, 4, K=4, expand=2.0, conv_size=0, backend="torch")
    assert layer.sizes == {"K": 4, "V": 16}  # V is the output's dim: expanded; K given
    assert layer.conv is None
    assert not layer.conv_names
    assert layer(torch.randn(1, 3, 32)).shape == (1, 3, 32)
    assert RecurrentLayer("delta_product", 32, 4, backend="torch").sizes["J"] == 2  # fixed by the spec
    with pytest.raises(ValueError, match="no dim Q"):
        RecurrentLayer("gla", 32, 4, Q=3)
    with pytest.raises(ValueError, match="fixes J = 2"):
        RecurrentLayer("delta_product", 32, 4, J=3)
    with pytest.raises(ValueError, match="not divisible"):
        RecurrentLayer("gla", 30, 4)
    with pytest.raises(ValueError, match="no input nope"):
        RecurrentLayer("gla", 32, 4, conv_inputs=["nope"])


def test_gate_parameterisations() -> None:
    x = torch.linspace(-10, 10, 101)  # beyond ~±17 an fp32 sigmoid rounds to its bounds
    g = constrain_input(x, ir.Domain(hi=0.0, hi_open=False, logspace=True))
    assert (g <= 0).all()
    assert math.isclose(float(constrain_input(torch.zeros(()), ir.Domain(hi=0.0, logspace=True))),
                        math.log(0.5) / layers.GATE_LOGIT_NORMALIZER, rel_tol=1e-6)
    torch.testing.assert_close(constrain_input(x, ir.Domain(0.0, 1.0)), torch.sigmoid(x))
    assert (constrain_input(x, ir.Domain(0.0, 2.0)) < 2).all()  # beta in (0, 2): negative eigenvalues
    assert (constrain_input(x, ir.Domain(lo=0.0)) > 0).all()
    assert (constrain_input(x, ir.Domain(hi=0.0)) < 0).all()
    bounded = ir.Domain(lo=-5.0, hi=0.0, hi_open=False, logspace=True)  # `logdecay in (-5, 0]`
    assert _in_domain(constrain_input(x, bounded), bounded)
    for d in (ir.Domain(lo=0.0), ir.Domain(hi=0.0), ir.Domain(0.0, 1.0), ir.Domain(hi=0.0, logspace=True)):
        raw = torch.randn(7)
        torch.testing.assert_close(unconstrain_param(constrain_param(raw, d), d), raw, atol=1e-4, rtol=1e-4)


def test_named_init_respects_a_custom_domain() -> None:
    # A custom spec may call a positive param `A`: Mamba's negative init must not be used for it.
    raw = init_param("A", (2, 3), ir.Domain(lo=0.0))
    assert (constrain_param(raw, ir.Domain(lo=0.0)) > 0).all()


@pytest.mark.parametrize("name", ["lru", "s5", "s4d"])
def test_time_invariant_decays_start_in_range(name: str) -> None:
    """With zero inputs one step maps a state of ones to the decay itself: |decay| in DECAY_RANGE."""
    torch.manual_seed(0)
    layer = RecurrentLayer(name, D_MODEL, HEADS, backend="torch")
    spec = layer.rec.spec
    xs = [torch.zeros(1, HEADS, *(layer.sizes[d] for d in t.ty.dims)) for t in spec.inputs]
    (st,) = spec.states
    state = torch.ones(1, HEADS, *(layer.sizes[d] for d in st.ty.dims), dtype=torch.complex64)
    params = layer.spec_params()
    layer.rec.step(*xs, *(params[p.name].detach() for p in spec.params), state=state, backend="torch")
    lo, hi = layers.DECAY_RANGE
    mag = state.abs()
    assert float(mag.min()) >= lo - 1e-6, float(mag.min())
    assert float(mag.max()) <= hi + 1e-6, float(mag.max())


def test_mamba_a_init() -> None:
    layer = RecurrentLayer("mamba", D_MODEL, HEADS, N=4, backend="torch")
    torch.testing.assert_close(layer.spec_params()["A"][0, 0].detach(), -torch.arange(1.0, 5.0))
    a2 = RecurrentLayer("mamba2", D_MODEL, HEADS, backend="torch").spec_params()["A"].detach()
    assert ((a2 <= -1) & (a2 >= -16)).all()


def test_copy_and_pickle_share_the_compiled_recurrence() -> None:
    import pickle

    layer = RecurrentLayer("simple_gla", D_MODEL, HEADS, backend="torch")
    x = torch.randn(1, 3, D_MODEL)
    for other in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert other.rec is layer.rec
        torch.testing.assert_close(other(x), layer(x))


@pytest.mark.parametrize("name", ["gated_delta_rule", "gla", "retention", "mamba", "rwkv7"])
def test_chunk_mode_on_the_torch_backend(name: str) -> None:
    """mode="chunk" (the chunk families in plain torch) gives the layer's outputs and gradients of the token walk."""
    torch.manual_seed(0)
    layer = RecurrentLayer(name, D_MODEL, HEADS, backend="torch", mode="chunk", chunk_size=16)
    assert "mode=chunk" in repr(layer)
    x = torch.randn(B, 21, D_MODEL)
    res = []
    for mode in ("chunk", "recurrent"):
        layer.mode = mode
        layer.zero_grad()
        y = layer(x)
        y.square().mean().backward()
        res.append((y.detach(), [p.grad.clone() for p in layer.parameters()]))
    torch.testing.assert_close(res[0][0], res[1][0], rtol=1e-4, atol=1e-5)
    for a, b in zip(res[0][1], res[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="`mode` must be"):
        RecurrentLayer("gla", D_MODEL, HEADS, backend="torch", mode="fast")
    assert RecurrentLayer("gla", D_MODEL, HEADS, backend="torch").mode == "auto"
