"""Chunk mode runs the spec's per-token formulas inside kernels: no torch op over a [B, T, H, ...] tensor.

The operands (mLSTM's i'_t k_t, Mamba2's Δ_t x_t, ...) and the readout extras (RWKV6's bonus, Mamba2's skip and
gate, mLSTM's normaliser) are generated into the token kernels (recurgen/codegen/chunk_token.py), their gradients
too. The test lists every aten op of a forward + backward outside the families' own ops (their launchers are
the kernel families' business: tests/kernels/test_chunk_{matmul,wy,dplr}.py) with the bytes it moves, as
`benchmarks.counters.count_torch` counts them (allocations and views move none); at these sizes every
[B, T, H, ...] tensor is larger than any other tensor of the call (params, their per-program partial gradients),
so an op that moves that much touches one.
"""

from __future__ import annotations

import pytest
import torch

import recurgen
from benchmarks.counters import count_torch
from tests.helpers import random_inputs

B, T, H = 1, 64, 2
SIZES = {"K": 8, "V": 8, "N": 8, "P": 8}


def _glue(name: str) -> list[tuple[str, int]]:
    rec = recurgen.load(name)
    inputs = random_inputs(rec.spec, B, T, H, SIZES, torch.float16, seed=3, requires_grad=True)
    dy = torch.randn(B, T, H, *(SIZES[d] for d in rec.spec.outputs[0].ty.dims), dtype=torch.float16)
    # the families' custom ops are their own business; the token op (the token kernels and the families' launchers
    # between them) is entered, so the torch ops of its body count
    with count_torch(enter_custom_ops=lambda op: "_chunk_tokens_" in op) as glue:
        out, _ = rec(*inputs.values(), mode="chunk", backend="triton")
        out.backward(dy)
    assert all(x.grad is not None for x in inputs.values())
    return [(op.kernel, op.bytes) for op in glue.launches]


@pytest.mark.interpret
@pytest.mark.parametrize("name", ["rwkv6", "mamba2", "hgrn2"])
def test_chunk_mode_has_no_torch_op_over_tokens(name: str) -> None:
    smallest = B * T * H * 2  # one fp16 per token and head
    over = [(op, n) for op, n in _glue(name) if n >= smallest]
    assert over == [], f"{name}: torch ops over [B, T, H, ...] tensors in chunk mode: {over}"


@pytest.mark.interpret
def test_mlstm_glue_is_its_running_max_operands() -> None:
    # the operands i'_t k_t, the decays and the normalised readout are in the token kernels, the running max m_t
    # in its own kernels (host/running.py); what remains is its operand log f_t = logsigmoid(fg_t) (and ig_t) in
    # fp32, and autograd's sums of their gradients into ig and fg
    ops = {op.split(".")[1] for op, n in _glue("mlstm") if n >= B * T * H * 2}
    assert not ops & {"abs", "exp", "cumsum", "cummax", "cat"}  # the readout's and operands' formulas, the scan
    assert ops <= {"_to_copy", "log_sigmoid_forward", "log_sigmoid_backward", "add"}
