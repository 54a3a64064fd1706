"""Generated kernels: a printer temporary never takes the tile name of a spec input (`b_g3 = tl.exp(b_g)` would
overwrite input `g3`). Constant folding of printed arithmetic: tests/codegen/test_tidy.py."""

from __future__ import annotations

import ast

import pytest
import torch

import recurgen
from recurgen import pipeline
from recurgen.frontend import from_text
from recurgen.source import Source

# every prefix the printers give temporaries (b_t, b_r, b_g, b_c, b_f, b_i, b_s) followed by digits, as input names
CLASH_GLA = """recurrence clash_gla
input  t0: [K], s1: [K], f0: [V], i0: [K] logdecay, r0: [K], t1: [K], s0: [K]
state  S: [K, V]
update S = exp(i0) * S + outer(s1 + r0 * t1 * s0, f0)
output o: [V] = scale * (t0 @ S)
"""
CLASH_DELTA = """recurrence clash_delta
input  t0: [K], g0: [K] normalized, g1: [V], g2: [] unit, g3: [], g4: [], c0: []
state  S: [K, V]
update S = (I - g2 * outer(g0, g0)) @ S + exp(g3 - g4) * sigmoid(c0) * g2 * outer(g0, g1)
output o: [V] = scale * (t0 @ S)
"""


def _assignments(source: str, names: set[str]) -> list[str]:
    """The right-hand sides assigned to any of `names` anywhere in the module."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign):
            for t in node.targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name) and n.id in names:
                        out.append(ast.unparse(node.value))
    return out


@pytest.mark.parametrize("text", [CLASH_GLA, CLASH_DELTA])
def test_input_tiles_are_only_loaded(text: str) -> None:
    spec = from_text(text, "clash.rec")
    src = Source(text, "clash.rec")
    source = pipeline.generate(src, spec).source
    tiles = {f"b_{i.name}" for i in spec.inputs}
    for rhs in _assignments(source, tiles):
        assert rhs.startswith("tl.load("), f"an input's tile is overwritten: {rhs}"


@pytest.mark.parametrize("text", [CLASH_GLA, CLASH_DELTA])
def test_clashing_names_compute_what_the_torch_path_does(text: str) -> None:
    mod = recurgen.compile(text)
    spec = from_text(text, "clash.rec")
    torch.manual_seed(0)
    B, T, H, K, V = 1, 6, 1, 4, 3
    xs = []
    for t in spec.inputs:
        x = torch.randn(B, T, H, *({"K": K, "V": V}[d] for d in t.ty.dims), dtype=torch.float32)
        if t.domain.logspace:
            x = -torch.rand_like(x)
        elif t.domain.normalized:
            x = torch.nn.functional.normalize(x, dim=-1)
        elif t.domain.lo >= 0:
            x = torch.rand_like(x)
        xs.append(x.requires_grad_())
    outs = {}
    for backend in ("triton", "torch"):
        o, _ = mod(*xs, backend=backend)
        grads = torch.autograd.grad(o.square().sum(), xs)
        outs[backend] = (o.detach(), grads)
    torch.testing.assert_close(outs["triton"][0], outs["torch"][0], rtol=1e-4, atol=1e-5)
    for a, b in zip(outs["triton"][1], outs["torch"][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
