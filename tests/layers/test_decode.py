"""Layers that decode: prefill (`layer(x, return_cache=True)`) then `layer.step` token by token gives the full
forward's output at every position, for every bundled spec (torch backend: fast), and on the Triton path for one
spec per transition class (under the interpreter)."""

from __future__ import annotations

import pytest
import torch

from recurgen.layers import LayerCache, RecurrentLayer
from recurgen.resources import bundled_spec_names

SPECS = bundled_spec_names()
B, T, PREFILL, D_MODEL, HEADS = 2, 7, 3, 8, 2
# one spec per transition class of the analysis (recurgen.analysis.classify)
BY_CLASS = {"diagonal": "gla", "householder": "gated_delta_rule", "dplr": "rwkv7", "complex_diagonal": "lru",
            "identity": "linear_attn", "scalar": "retention", "running_max": "mlstm"}
FAST_CLASSES = ("diagonal", "householder", "dplr", "complex_diagonal")


def _decode_matches_forward(name: str, backend: str | None) -> None:
    torch.manual_seed(0)
    layer = RecurrentLayer(name, D_MODEL, HEADS, backend=backend)
    x = torch.randn(B, T, D_MODEL)
    with torch.no_grad():
        full = layer(x)
        assert isinstance(full, torch.Tensor)
        # prefill, then decode the rest
        y, cache = layer(x[:, :PREFILL], return_cache=True)
        assert isinstance(cache, LayerCache)
        assert len(cache.states) == len(layer.rec.spec.states)
        torch.testing.assert_close(y, full[:, :PREFILL], rtol=1e-4, atol=1e-5)
        for t in range(PREFILL, T):
            y_t, cache = layer.step(x[:, t], cache)
            assert y_t.shape == (B, D_MODEL)
            torch.testing.assert_close(y_t, full[:, t], rtol=1e-4, atol=1e-5, msg=lambda m, t=t: f"{name} t={t}: {m}")
        # decode from the first token
        cache = layer.empty_cache(B)
        for t in range(T):
            y_t, cache = layer.step(x[:, t], cache)
            torch.testing.assert_close(y_t, full[:, t], rtol=1e-4, atol=1e-5, msg=lambda m, t=t: f"{name} t={t}: {m}")
        # a prefill that continues from a cache equals the forward too
        y2, _ = layer(x[:, PREFILL:], cache=layer(x[:, :PREFILL], return_cache=True)[1], return_cache=True)
        torch.testing.assert_close(y2, full[:, PREFILL:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", SPECS)
def test_decode_equals_forward_every_spec(name: str) -> None:
    _decode_matches_forward(name, "torch")


@pytest.mark.interpret
@pytest.mark.parametrize("kind", [k if k in FAST_CLASSES else pytest.param(k, marks=pytest.mark.slow)
                                  for k in BY_CLASS])
def test_decode_equals_forward_on_the_triton_path(kind: str) -> None:
    _decode_matches_forward(BY_CLASS[kind], "triton")


def test_the_classes_above_are_the_specs_classes() -> None:
    from recurgen.analysis import analyze
    from recurgen.frontend import load_spec

    for kind, name in BY_CLASS.items():
        kinds = {s.kind.value for s in analyze(load_spec(name)[0]).states}
        assert kind in kinds, (name, kinds)


def test_layer_without_conv_and_plain_call() -> None:
    torch.manual_seed(0)
    layer = RecurrentLayer("gla", D_MODEL, HEADS, conv_size=0, backend="torch")
    x = torch.randn(B, 4, D_MODEL)
    y = layer(x)
    assert isinstance(y, torch.Tensor)
    y2, cache = layer(x, return_cache=True)
    assert cache.conv is None
    torch.testing.assert_close(y2, y)
