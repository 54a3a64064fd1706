"""Quickstart: compile a bundled spec (or a .rec file), run forward and backward, check against the oracle.

    TRITON_INTERPRET=1 python examples/quickstart.py gla          # CPU: kernels in Triton's interpreter
    python examples/quickstart.py examples/my_gated_delta.rec     # GPU: compiled kernels
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import recurgen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", nargs="?", default="gla", help="bundled spec name or path to a .rec file")
    ap.add_argument("-B", type=int, default=2)
    ap.add_argument("-T", type=int, default=64)
    ap.add_argument("-H", type=int, default=2)
    ap.add_argument("--dim", type=int, default=16, help="size of every free dim (K, V, N, ...)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    rec = recurgen.load(args.spec)
    spec = rec.spec
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"compiled `{spec.name}` ({spec.description}) in {time.perf_counter() - t0:.2f}s; device {device}")

    torch.manual_seed(0)
    sizes = {d.name: d.size or args.dim for d in spec.dims}
    tensors = []
    for t in (spec.tensor(name) for name in spec.arg_order):  # the public call's order
        lead = (args.B, args.T, args.H) if t in spec.inputs else (args.H,)
        x = torch.randn(*lead, *(sizes[d] for d in t.ty.dims), dtype=torch.float64)
        if t.domain.logspace:
            x = F.logsigmoid(x + 3)  # decays near 1, as trained models have them
        elif (t.domain.lo, t.domain.hi) == (0.0, 1.0):
            x = torch.sigmoid(x)
        elif t.domain.lo == 0.0:
            x = F.softplus(x)
        elif t.domain.hi == 0.0:
            x = -F.softplus(x)
        if t.domain.normalized:
            x = x / x.norm(dim=-1, keepdim=True)
        tensors.append(x.to(device=device, dtype=torch.float32).requires_grad_())

    t0 = time.perf_counter()
    o, _state = rec(*tensors, output_final_state=True)
    outs = o if isinstance(o, tuple) else (o,)
    sum(y.square().sum() for y in outs).backward()
    print(f"forward + backward at B={args.B} T={args.T} H={args.H}: {time.perf_counter() - t0:.2f}s")

    ref_in = [x.detach().double().cpu().requires_grad_() for x in tensors]
    ro, _ = recurgen.reference(rec, *ref_in, output_final_state=True)
    routs = ro if isinstance(ro, tuple) else (ro,)
    sum(y.square().sum() for y in routs).backward()
    worst = max(float((a.detach().double().cpu() - b.detach()).abs().max() / b.detach().abs().max())
                for a, b in zip(outs, routs, strict=True))
    gworst = max(float((x.grad.double().cpu() - r.grad).abs().max() / r.grad.abs().max().clamp_min(1e-12))
                 for x, r in zip(tensors, ref_in, strict=True))
    print(f"max relative error vs the float64 oracle: outputs {worst:.1e}, gradients {gworst:.1e}")
    if worst > 1e-3 or gworst > 1e-3:
        raise SystemExit("mismatch against the oracle")
    if rec.chunk_reason is None:  # the chunked-parallel kernels, against the same oracle
        leaves = [x.detach().clone().requires_grad_() for x in tensors]
        t0 = time.perf_counter()
        co, _ = rec(*leaves, mode="chunk", chunk_size=16)
        couts = co if isinstance(co, tuple) else (co,)
        sum(y.square().sum() for y in couts).backward()
        cworst = max(float((a.detach().double().cpu() - b.detach()).abs().max() / b.detach().abs().max())
                     for a, b in zip(couts, routs, strict=True))
        cgworst = max(float((x.grad.double().cpu() - r.grad).abs().max() / r.grad.abs().max().clamp_min(1e-12))
                      for x, r in zip(leaves, ref_in, strict=True))
        print(f"chunk mode: {time.perf_counter() - t0:.2f}s; max relative error: outputs {cworst:.1e}, "
              f"gradients {cgworst:.1e}")
        if cworst > 1e-3 or cgworst > 1e-3:
            raise SystemExit("chunk mode: mismatch against the oracle")
    print("ok")


if __name__ == "__main__":
    main()
