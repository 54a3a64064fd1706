"""torch.compile(fullgraph=True) over models that call generated kernels: no graph breaks, same numbers.

The kernels are registered as torch custom ops with fake (shape) implementations and autograd, so dynamo
treats them as opaque nodes; their real implementation runs here under the Triton interpreter.
"""

from __future__ import annotations

import pytest
import torch

import recurgen
from tests.helpers import random_inputs, random_state


class Mixer(torch.nn.Module):
    """A projection around a recurrence, as a layer would use it."""

    def __init__(self, name: str, mode: str = "recurrent") -> None:
        super().__init__()
        self.rec = recurgen.load(name)
        self.mode = mode
        self.scale = torch.nn.Parameter(torch.tensor(1.5))

    def forward(self, *xs: torch.Tensor, h0: list[torch.Tensor] | None = None,
                cu_seqlens: torch.Tensor | None = None) -> torch.Tensor:
        o, final = self.rec(xs[0] * self.scale, *xs[1:], initial_state=h0, output_final_state=True,
                            cu_seqlens=cu_seqlens, backend="triton", mode=self.mode, chunk_size=16)
        outs = o if isinstance(o, tuple) else (o,)
        finals = final if isinstance(final, tuple) else (final,)
        return sum(x.float().square().mean() for x in outs) + sum(f.abs().square().mean() for f in finals)


@pytest.mark.interpret
@pytest.mark.parametrize(("name", "varlen", "backend", "mode"), [
    ("gla", False, "inductor", "recurrent"),  # the default backend, once (it compiles C++: slow on 2 cores)
    ("mlstm", False, "aot_eager", "recurrent"), ("lru", False, "aot_eager", "recurrent"),
    ("gla", True, "aot_eager", "recurrent"),
    # chunk mode: the kernel families are custom ops too, and with token kernels (mlstm, rwkv6) the prologue, the
    # families and the epilogue are one op per pass
    ("mlstm", False, "aot_eager", "chunk"), ("delta_product", True, "aot_eager", "chunk"),
    ("gateloop", False, "aot_eager", "chunk"), ("rwkv6", True, "aot_eager", "chunk"),
    ("rwkv6", False, "aot_eager", "chunk"),  # per-channel matmul: the forward keeps A and gc for the backward
])
def test_compiled_model_matches_eager(name: str, varlen: bool, backend: str, mode: str) -> None:
    torch._dynamo.reset()
    model = Mixer(name, mode)
    spec = model.rec.spec
    sizes = {"K": 4, "V": 3, "N": 3, "D": 3}
    B = 1 if varlen else 2
    xs = list(random_inputs(spec, B, 5, 2, sizes, torch.float32, 0).values())
    cu = torch.tensor([0, 2, 5], dtype=torch.int32) if varlen else None
    h0 = list(random_state(spec, 2, 2, sizes, torch.float32, 0))

    def run(fn: torch.nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
        leaves = [x.clone().requires_grad_() for x in xs]
        hs = [h.clone().requires_grad_() for h in h0]
        loss = fn(*leaves, h0=hs, cu_seqlens=cu)
        grads = torch.autograd.grad(loss, [*leaves, *hs, model.scale])
        return loss.detach(), list(grads)

    eager_loss, eager_grads = run(model)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    loss, grads = run(compiled)
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
    for g, e in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


@pytest.mark.interpret
def test_custom_op_passes_torch_opcheck() -> None:
    """torch.library's own consistency checks of the registered op (schema, fake tensor, autograd)."""
    rec = recurgen.load("gla")
    m = rec.module
    xs = list(random_inputs(rec.spec, 1, 3, 1, {"K": 4, "V": 2}, torch.float32, 0).values())
    xs = [x.requires_grad_() for x in xs]
    torch.library.opcheck(m._fwd_op, (xs, [], [0.5], True, True, 2, None, 0),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
    # the same op running chunk mode's blocked-scan forward (block_t > 0) of a scan-family spec
    hgrn = recurgen.load("hgrn")
    ys = [x.requires_grad_() for x in random_inputs(hgrn.spec, 1, 5, 1, {"D": 4}, torch.float32, 0).values()]
    torch.library.opcheck(hgrn.module._fwd_op, (ys, [], [], True, True, 2, None, 16),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


@pytest.mark.interpret
def test_chunk_custom_op_passes_torch_opcheck() -> None:
    rec = recurgen.load("gla")
    op = rec.module._CHUNK_CALLS[0][1]
    gen = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, 5, 1, 4, generator=gen, requires_grad=True) for _ in range(2))
    v = torch.randn(1, 5, 1, 3, generator=gen, requires_grad=True)
    g = (-torch.rand(1, 5, 1, 4, generator=gen)).requires_grad_()
    torch.library.opcheck(op, (q, k, v, g, None, None, None, None, True, 16, 0.5, False),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


class _Ops:
    """A torch.compile backend that records the ops of the forward and backward graphs (then runs them eagerly)."""

    def __init__(self) -> None:
        self.targets: list[str] = []

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
        from functorch.compile import make_boxed_func
        from torch._dynamo.backends.common import aot_autograd

        def record(g: torch.fx.GraphModule, _: list[torch.Tensor]):
            self.targets += [str(n.target) for n in g.graph.nodes if n.op == "call_function"]
            return make_boxed_func(g.forward)

        return aot_autograd(fw_compiler=record, bw_compiler=record)(gm, example_inputs)


@pytest.mark.interpret
@pytest.mark.parametrize("name", ["simple_gla", "mamba2"])
def test_chunk_token_kernels_under_compile(name: str) -> None:
    """Under torch.compile(fullgraph=True) chunk mode runs the token kernels (one opaque op per pass), not the
    spec's formulas traced as torch ops over [B, T, H, ...]; the numbers are eager's to the bit."""
    torch._dynamo.reset()
    rec = recurgen.load(name)
    assert rec.module._CHUNK_TOKEN
    sizes = {"K": 4, "V": 3, "P": 3, "N": 4}
    xs = list(random_inputs(rec.spec, 2, 20, 2, sizes, torch.float32, 0).values())

    def f(*leaves: torch.Tensor) -> torch.Tensor:
        o, ht = rec(*leaves, output_final_state=True, backend="triton", mode="chunk", chunk_size=16)
        return o.square().mean() + ht.square().mean()

    def run(fn):
        leaves = [x.clone().requires_grad_() for x in xs]
        loss = fn(*leaves)
        return [loss.detach(), *torch.autograd.grad(loss, leaves)]

    ops = _Ops()
    eager, compiled = run(f), run(torch.compile(f, fullgraph=True, backend=ops))
    for c, e in zip(compiled, eager, strict=True):
        assert torch.equal(c, e)
    tokens = [t for t in ops.targets if "_chunk_tokens_" in t]
    assert any(t.endswith("_fwd.default") for t in tokens)
    assert any(t.endswith("_bwd.default") for t in tokens)
    # mamba2's prologue: softplus(dt + dt_bias), exp(A); none of it is left to torch
    formulas = ("aten.exp.", "aten.softplus", "aten.sigmoid", "aten.log_sigmoid", "aten.log.")
    assert not [t for t in ops.targets if t.startswith(formulas)]


@pytest.mark.interpret
def test_chunk_token_op_passes_torch_opcheck() -> None:
    rec = recurgen.load("rwkv6")
    m = rec.module
    xs = random_inputs(rec.spec, 1, 5, 1, {"K": 4, "V": 3}, torch.float32, 0)
    leaves = [xs[n].requires_grad_() for _, n in m._TOKEN_LEAVES]
    directs = [xs[n].requires_grad_() for n in m._TOKEN_DIRECT_INPUTS]
    torch.library.opcheck(m._token_fwd_op, (xs["r"], leaves, directs, [], None, [0.5], [4, 3], True, 16, [1.0]),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
