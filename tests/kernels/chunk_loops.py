"""What the chunk-family tests share: the per-token float64 loop over (packed) sequences, and the comparison."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from tests.helpers import close  # re-exported: the family tests import it from here

# allowed error relative to the largest magnitude of each compared tensor: the kernels compute in fp32
# (inputs are rounded before the float64 loop sees them, so only the kernels' own error counts)
TOL = 2e-4

Step = Callable[[torch.Tensor, int, int], torch.Tensor]  # (S_{t-1} [H, K, V], batch row, token) -> S_t


def run_loop(q: torch.Tensor, v: torch.Tensor, h0: torch.Tensor | None, cu_seqlens: torch.Tensor | None,
             step: Step) -> tuple[torch.Tensor, torch.Tensor]:
    """o_t = q_tᵀ S_t with S_t = step(S_{t-1}, b, t), per sequence (batch rows, or cu_seqlens slices of row 0);
    returns o [B, T, H, V] and the final states [N, H, K, V], in float64."""
    q = q.double()
    B, T, H, K = q.shape
    V = v.shape[-1]
    if cu_seqlens is None:
        seqs = [(b, 0, T) for b in range(B)]
    else:
        cu = cu_seqlens.tolist()
        seqs = [(0, cu[i], cu[i + 1]) for i in range(len(cu) - 1)]
    rows: list[list[torch.Tensor]] = [[] for _ in range(B)]
    finals = []
    for n, (b, s0, s1) in enumerate(seqs):
        S = h0[n].double() if h0 is not None else q.new_zeros(H, K, V)
        for t in range(s0, s1):
            S = step(S, b, t)
            rows[b].append(torch.einsum("hk,hkv->hv", q[b, t], S))
        finals.append(S)
    o = torch.stack([torch.stack(r) for r in rows]) if T > 0 else q.new_zeros(B, 0, H, V)
    return o, torch.stack(finals)


def close_outputs(o: torch.Tensor, ht: torch.Tensor | None, ro: torch.Tensor, rht: torch.Tensor, shape: tuple[int, ...],
                  final: bool, tol: float = TOL, o_dtype: torch.dtype = torch.float32) -> None:
    """A family's (o, ht) against the loop's: o of `shape` in `o_dtype`, ht only when the final state was asked
    for."""
    close("o", o, ro.detach(), tol, dtype=o_dtype)
    assert o.shape == shape
    if final:
        close("ht", ht, rht.detach(), tol, dtype=torch.float32)
    else:
        assert ht is None


def strong_and_weak_decays(T: int, K: int, decay: str, period: int, seed: int = 4) -> torch.Tensor:
    """Log-decays of ≈ −5 per token (a chunk's cumulative decay reaches −320: exp(−b) alone overflows fp32) next to
    ≈ −1e-4 (nearly none over the sequence): alternating per channel ([1, T, 1, K], decay "channel") or in runs of
    `period // 2` tokens ([1, T, 1], "scalar")."""
    gen = torch.Generator().manual_seed(seed)
    strong = -5.0 - 0.1 * torch.rand(1, T, 1, K, generator=gen)
    weak = -1e-4 * torch.rand(1, T, 1, K, generator=gen)
    if decay == "channel":
        return torch.where(torch.arange(K) % 2 == 0, strong, weak)
    return torch.where((torch.arange(T) % period < period // 2)[None, :, None], strong[..., 0], weak[..., 0])


def check_gpu_compile(script: str, args: list[str], kernels: int) -> None:
    """Run a family's compile `script` (rows: kernel, arch, dot fp32, warps, registers, spills, stack, shared) in a
    subprocess without the interpreter; per (kernel, arch, dot setting) the best warp configuration must not spill,
    and all `kernels` kernels × 3 (sm_80, sm_90 × both dot operand settings) must be there."""
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    res = subprocess.run([sys.executable, "-c", script, *args], cwd=Path(__file__).parent.parent.parent, env=env,
                         capture_output=True, text=True, check=False, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads(res.stdout.strip().splitlines()[-1])
    best: dict[tuple[str, int, bool], list] = {}
    for r in rows:
        key = (r[0], r[1], r[2])
        if key not in best or (r[5] + r[6], r[3]) < (best[key][5] + best[key][6], best[key][3]):
            best[key] = r
    assert len(best) == kernels * 3, sorted(best)
    print("\nkernel | arch | dot fp32 | warps | registers | spills (B) | stack (B) | shared (B)")
    for r in best.values():
        print(" | ".join(map(str, r)))
    spilled = [r for r in best.values() if r[5] or r[6]]
    assert not spilled, f"kernels that spill in every warp configuration: {spilled}"
