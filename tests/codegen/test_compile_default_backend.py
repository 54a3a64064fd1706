"""torch.compile(fullgraph=True) of a call that leaves `backend` to the module: the choice (Triton on CUDA or under
the interpreter, else the pure-torch path) must be traceable, so it is read from the tensors' device and a flag set
at import, never from triton's getenv inside the graph.

Each case runs in a subprocess: the interpreter is on or off from the start (this suite's conftest turns it on).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import sys, torch, recurgen
    torch.manual_seed(0)
    mode, backend = sys.argv[1:]
    rec = recurgen.load("gla")
    assert rec.module._default_backend(torch.zeros(1)) == backend
    B, T, H, K, V = 1, 20, 2, 4, 3
    xs = [torch.randn(B, T, H, K), torch.randn(B, T, H, K), torch.randn(B, T, H, V), -torch.rand(B, T, H, K)]
    h0 = torch.randn(B, H, K, V)

    def f(q, k, v, g, h0):
        o, ht = rec(q, k, v, g, initial_state=h0, output_final_state=True, mode=mode, chunk_size=16)
        return o.square().mean() + ht.square().mean()

    def run(fn):
        leaves = [x.clone().requires_grad_() for x in (*xs, h0)]
        loss = fn(*leaves)
        return loss.detach(), torch.autograd.grad(loss, leaves)

    eager = run(f)
    compiled = run(torch.compile(f, fullgraph=True, backend="aot_eager"))
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-5, atol=1e-6)
    for g, e in zip(compiled[1], eager[1], strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
    print("compiled", mode, backend)
""")


def _run(mode: str, backend: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if backend == "triton":
        env["TRITON_INTERPRET"] = "1"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode, backend], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"compiled {mode} {backend}" in proc.stdout


# The recurrent torch path is the chunk path's simpler sibling (one traced loop): slow-only.
@pytest.mark.parametrize("mode", [pytest.param("recurrent", marks=pytest.mark.slow), "chunk"])
def test_fullgraph_forward_backward_on_the_torch_path(mode: str) -> None:
    _run(mode, "torch")


@pytest.mark.interpret
def test_fullgraph_forward_backward_on_the_triton_path_by_default() -> None:
    """Under the interpreter the default is the Triton path: its custom ops are traced as opaque nodes."""
    _run("recurrent", "triton")
