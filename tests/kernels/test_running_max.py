"""Chunk mode's running max m_t = max(a_t + m_(t-1), b_t) (mLSTM's stabiliser) in its Triton kernels (host/running.py:
a max-plus scan, BT tokens at a time, and the reverse affine scan of its backward) against the closed form the torch
backend computes in float64: values, final m and the gradients of a, b and m_0, dense and packed (an empty sequence,
lengths across block edges)."""

from __future__ import annotations

import pytest
import torch

import recurgen


def _run(fn, a, b, m0, cu, cot):
    leaves = [x.clone().requires_grad_() for x in (a, b, *([m0] if m0 is not None else []))]
    prev, new, last = fn(leaves[0], leaves[1], leaves[2] if m0 is not None else None, cu)
    loss = sum((x * c).sum() for x, c in zip((prev, new, last), cot, strict=True))
    return [prev.detach(), new.detach(), last.detach(), *torch.autograd.grad(loss, leaves)]


@pytest.mark.interpret
@pytest.mark.parametrize(("T", "packed", "with_m0"), [(70, False, True), (150, False, False), (150, True, True)])
def test_running_max_kernels_match_the_closed_form(T: int, packed: bool, with_m0: bool) -> None:
    m = recurgen.load("mlstm").module
    gen = torch.Generator().manual_seed(T)
    B, H = (1, 2) if packed else (2, 2)
    cu = torch.tensor([0, 64, 64, 100, T], dtype=torch.int32) if packed else None
    N = 4 if packed else B
    a = torch.nn.functional.logsigmoid(torch.randn(B, T, H, generator=gen) * 3)
    b = torch.randn(B, T, H, generator=gen) * 4
    m0 = torch.randn(N, H, generator=gen) if with_m0 else None
    cot = [torch.randn(B, T, H, generator=gen), torch.randn(B, T, H, generator=gen), torch.randn(N, H, generator=gen)]
    got = _run(lambda *x: m._chunk_running_max(*x, backend="triton"), a, b, m0, cu, cot)
    want = _run(lambda a, b, m0, cu: m._chunk_running_max(a.double(), b.double(), m0, cu, backend="torch"),
                a, b, m0, cu, cot)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w.to(g.dtype), rtol=1e-5, atol=1e-5)


@pytest.mark.interpret
def test_running_max_op_passes_torch_opcheck() -> None:
    m = recurgen.load("mlstm").module
    gen = torch.Generator().manual_seed(0)
    a = torch.nn.functional.logsigmoid(torch.randn(1, 9, 2, generator=gen)).requires_grad_()
    b = torch.randn(1, 9, 2, generator=gen).requires_grad_()
    m0 = torch.randn(1, 2, generator=gen).requires_grad_()
    torch.library.opcheck(m._running_max_fwd_op, (a, b, m0, None),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


_COMPILE = """
import recurgen
from recurgen.gpu import _compile_row
m = recurgen.load("mlstm").module
fwd = dict.fromkeys(("a", "b", "m0", "prev", "new", "last"), "*fp32")
bwd = dict.fromkeys(("a", "b", "prev", "dprev", "dnew", "dlast", "da", "db", "dm0"), "*fp32")
for fn, sig in ((m._running_max_fwd_kernel, fwd), (m._running_max_bwd_kernel, bwd)):
    consts = {"BT": m.RUNNING_BLOCK, "IS_VARLEN": True, "USE_M0": True}
    consts.update({"USE_DLAST": True} if "dlast" in sig else {})
    sig = {**sig, "cu_seqlens": "*i32", "T": "i32", "H": "i32", **dict.fromkeys(consts, "constexpr")}
    for arch in ("sm_80", "sm_90"):
        r = _compile_row(fn, sig, consts, None, arch, {"num_warps": 1}, fn.__name__, "")
        print(r.kernel, arch, r.spills + r.stack)
"""


def test_running_max_kernels_compile_for_gpus_without_spills() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", _COMPILE], capture_output=True, text=True, env=env, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.split("\n")
    rows = [ln.split() for ln in lines if ln.startswith("_running_max_")]
    assert len(rows) == 4
    assert all(r[2] == "0" for r in rows), proc.stdout
