"""Measure, on the torch backend (CPU, no Triton), from which length chunk mode trains faster than walking tokens.

    python examples/cpu_crossover.py                                  # the specs and lengths of docs/cpu.md
    python examples/cpu_crossover.py gla mamba2 --lengths 8,16,32 --threads 2

One training step of a `RecurrentLayer` (forward + backward, B=8, d_model=64, 2 heads) per spec, length and
mode; the time printed is the median of `--repeats` steps after one warm-up. It measures, it does not decide:
the module's TORCH_CHUNK_AUTO_MIN_T (templates/module.py.jinja) is set from these numbers (docs/cpu.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TRITON_INTERPRET", "0")  # the pure-torch path: what a CPU user without the interpreter gets

import torch

from recurgen.layers import RecurrentLayer


def step_time(spec: str, mode: str, T: int, batch: int, d_model: int, heads: int, repeats: int) -> float:
    torch.manual_seed(0)
    layer = RecurrentLayer(spec, d_model, heads, backend="torch", mode=mode)
    x = torch.randn(batch, T, d_model)
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        layer(x).square().mean().backward()
        if i:  # the first step warms up (allocations, lazy imports)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("specs", nargs="*", default=["gla", "gated_delta_rule", "mamba2", "lru", "rwkv7", "mlstm"])
    ap.add_argument("--lengths", default="8,16,32,64,128")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    lengths = [int(t) for t in args.lengths.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), B={args.batch}, d_model={args.d_model}, "
          f"H={args.heads}; seconds per training step (forward + backward), recurrent / chunk")
    print("| spec | " + " | ".join(f"T={t}" for t in lengths) + " |")
    print("|---|" + "---|" * len(lengths))
    for spec in args.specs:
        cells = []
        for T in lengths:
            rec = step_time(spec, "recurrent", T, args.batch, args.d_model, args.heads, args.repeats)
            chk = step_time(spec, "chunk", T, args.batch, args.d_model, args.heads, args.repeats)
            cells.append(f"{rec:.3f} / {chk:.3f}{' *' if chk < rec else ''}")
        print(f"| {spec} | " + " | ".join(cells) + " |", flush=True)
    print("(* chunk mode faster)")


if __name__ == "__main__":
    main()
