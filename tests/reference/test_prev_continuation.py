"""`prev(x)` of an input through the generated module: a sequence continued from a final state (which carries
the previous token's term in its hidden state) gives what one run over the whole sequence gives, in every
mode that runs it (the recurrent Triton kernels under the interpreter, and the torch path)."""

from __future__ import annotations

import pytest
import torch

import recurgen
from recurgen.frontend import load_spec
from tests.helpers import random_inputs

SIZES = {"N": 4, "P": 8}


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_mamba3_continues_exactly_from_its_final_state(backend: str) -> None:
    spec = load_spec("mamba3")[0]
    assert [s.name for s in spec.states] == ["h", "_prev_B_re_B_im_x"]
    fn = recurgen.load("mamba3")
    x = random_inputs(spec, 2, 12, 2, SIZES, torch.float32, seed=3)
    args = [x[n] for n in spec.arg_order]

    def cut(a: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        return a[:, lo:hi] if any(a is x[t.name] for t in spec.inputs) else a

    whole, final = fn(*args, output_final_state=True, backend=backend)
    first, mid = fn(*[cut(a, 0, 5) for a in args], output_final_state=True, backend=backend)
    rest, end = fn(*[cut(a, 5, 12) for a in args], initial_state=mid, output_final_state=True, backend=backend)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole, rtol=1e-5, atol=1e-5)
    for a, b in zip(end, final, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # the hidden state is what carries it: without it the first continued token differs
    restart, _ = fn(*[cut(a, 5, 12) for a in args], initial_state=(mid[0], torch.zeros_like(mid[1])),
                    output_final_state=True, backend=backend)
    assert not torch.allclose(restart[:, 0], whole[:, 5], rtol=1e-3, atol=1e-3)
