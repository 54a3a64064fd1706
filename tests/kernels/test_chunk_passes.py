"""Chunk mode beyond one kernel call per state reading only inputs (issue 16):

- a memoryless state (what `prev(x)` of an input desugars to, or any update that reads no state) is computed for
  every token before the calls and read one token back as an input term: a real trapezoid (Mamba-3 without the
  rotation, scalar decay) runs the scan kernels with b_t = this token's and the previous token's terms; an output
  may read the memoryless state and its `prev`;
- a readout whose query is a function of another state's read (`softmax(q @ hk) @ hv`) runs in passes, each a
  stage of chunk calls; with matmul kernels on both sides (no token kernels around a staged query).
Each against the float64 oracle: outputs, final states, gradients of every input and initial state, and packed
sequences (an empty one, a single token, a chunk boundary). The bundled mamba3 and gsa run in test_chunk_mode.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import recurgen
from tests.kernels.test_fused_recurrent import check_against_oracle, check_varlen

TRAPEZOID = """recurrence trapezoid "Mamba-3's trapezoidal update, real and without rotation"
input  x: [P], dt: [], B: [N], C: [N], lam: [] unit
param  A: [] negative
let    delta = softplus(dt)
state  h: [N, P]
update h = exp(delta * A) * h + (1 - lam) * delta * exp(delta * A) * outer(prev(B), prev(x))
         + lam * delta * outer(B, x)
output y: [P] = C @ h
"""

MEMORYLESS_OUTPUT = """recurrence memoryless_out "an output reads a state that reads no state, and its prev"
input  q: [K], k: [K], v: [V], x: [V], g: [] logdecay
state  S: [K, V], u: [V]
update S = exp(g) * S + outer(k, v)
update u = 2 * x
output o: [V] = q @ S + u - 0.5 * prev(u)
"""

SLOTS = """recurrence slots "a softmax over one matmul pass's read-out is the next pass's query"
input  q: [K], k: [K], v: [V], s: [M], g: [K] logdecay, f: [M] logdecay
state  hk: [K, M], hv: [M, V]
update hk = exp(g) * hk + outer(k, s)
update hv = exp(f) * hv + outer(s, v)
output o: [V] = softmax(q @ hk, M) @ hv
"""

SPECS = {"trapezoid": TRAPEZOID, "memoryless_out": MEMORYLESS_OUTPUT, "slots": SLOTS}
FAMILIES = {"trapezoid": ["scan"], "memoryless_out": ["matmul"], "slots": ["matmul", "matmul"]}


def _path(tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.rec"
    path.write_text(SPECS[name])
    return str(path)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_plan(tmp_path: Path, name: str) -> None:
    rec = recurgen.load(_path(tmp_path, name))
    assert rec.chunk_reason is None
    assert [c[1] for c in rec.module.CHUNK_KERNELS] == FAMILIES[name]
    if name == "slots":  # hv's query is formed from hk's read-out: a second stage, no token kernels
        assert [c[-1] for c in rec.module._CHUNK_CALLS] == [0, 1]
        assert not rec.module._CHUNK_TOKEN


@pytest.mark.interpret
@pytest.mark.parametrize("name", [  # the bundled mamba3 and gsa run the same paths in test_chunk_mode's default run
    "memoryless_out", *(pytest.param(n, marks=pytest.mark.slow) for n in ("slots", "trapezoid"))])
def test_matches_oracle(tmp_path: Path, name: str) -> None:
    path = _path(tmp_path, name)
    check_against_oracle(path, B=2, T=21, H=2, sizes={"K": 5, "V": 3, "N": 4, "P": 3, "M": 4}, dtype=torch.float32,
                         with_h0=True, ckpt=16, budget=None, backend="triton", seed=3, mode="chunk", chunk_size=16)
    check_varlen(path, cu=[0, 3, 3, 4, 22], backend="triton", seed=4, mode="chunk", chunk_size=16)


def test_unsupported_passes_say_why() -> None:
    """A contraction of two reads neither of which is a state read whole has no pass order."""
    rec = recurgen.compile("""recurrence two_reads
input  q: [K], k: [K], v: [V]
state  S1: [K, V], S2: [V, K]
update S1 = S1 + outer(k, v)
update S2 = S2 + outer(v, k)
output o: [] = (q @ S1) @ (S2 @ q)
""")
    assert "in passes when one side is a state read whole" in (rec.chunk_reason or "")
