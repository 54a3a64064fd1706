"""verify.reporting: the `recurgen verify` report — `ModeResult`s -> a table per kernel family and check, then
each failure in full with a one-line replay command."""

from __future__ import annotations

import argparse
import math
import shlex
from collections.abc import Sequence
from typing import Any, TextIO

from .runner import ModeResult

CHECKS = ("forward", "final state", "backward", "decode")

KERNEL_LABELS = {"recurrent": "recurrent [triton]", "chunk": "chunk [triton]", "torch": "torch path",
                 "torch-chunk": "chunk [torch]", "step": "step [triton]", "function": "--against function"}


def replay_command(args: argparse.Namespace, mode: str, case: Any) -> str:
    """A one-line shell command that re-runs `case` on `mode`, and nothing else."""
    words = ["recurgen", "verify", args.spec]
    if args.module:
        words += ["--module", args.module]
    if getattr(args, "against", None):
        words += ["--against", args.against, "--replay", case.to_arg()]
        return shlex.join(words)
    words += ["--modes", mode, "--replay", case.to_arg()]
    return shlex.join(words)


def _fmt_err(x: float) -> str:
    return "inf" if not math.isfinite(x) else f"{x:.2e}"


def report(name: str, results: Sequence[ModeResult], args: argparse.Namespace, out: TextIO) -> None:
    """Per kernel family and check: pass/fail and the worst relative error; then each failure in full."""
    rows = [("kernel", "check", "result", "worst rel. error", "examples")]
    for r in results:
        label = KERNEL_LABELS.get(r.mode, r.mode)
        if r.status in ("not generated", "skipped"):
            rows.append((label, "-", r.status, "-", "0"))
            continue
        for check in CHECKS:
            row = r.checks.get(check)
            if row is None:
                continue
            verdict = "FAIL" if row.failed else "pass"
            rows.append((label, check, verdict, _fmt_err(row.worst), str(r.examples)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out)
    for r in results:
        if r.note:
            print(f"{KERNEL_LABELS.get(r.mode, r.mode)}: {r.note}", file=out)
        extra = []
        if r.out_of_time:
            extra.append(f"{r.out_of_time} example(s) not run: time budget")
        if r.overflow:
            extra.append(f"{r.overflow} example(s) proved nothing: the exact result overflows the dtype")
        if r.unchecked:
            extra.append("not checked: " + "; ".join(sorted(r.unchecked)))
        if extra:
            print(f"{KERNEL_LABELS.get(r.mode, r.mode)}: {'; '.join(extra)}", file=out)
    for r in results:
        if r.status != "fail":
            continue
        case = r.counterexample
        print(f"\nFAIL {name} {KERNEL_LABELS.get(r.mode, r.mode)}: minimal counterexample", file=out)
        dims = " ".join(f"{k}={v}" for k, v in sorted(case.sizes.items()))
        print(f"  shapes: B={case.B} T={case.T} H={case.H}" + (f" {dims}" if dims else ""), file=out)
        ours = "" if r.mode == "function" else \
            f"checkpoint every {case.checkpoint_every}, tile budget {case.tile_budget or 'default'}, "
        print(f"  dtype: {case.dtype}, initial state: {'yes' if case.initial_state else 'no'}, {ours}"
              f"seed {case.seed}", file=out)
        for msg in r.messages:
            print("  - " + msg.replace("\n", "\n    "), file=out)
        print(f"  replay: {replay_command(args, r.mode, case)}", file=out)
    failed = [r for r in results if r.status == "fail"]
    checked = [r for r in results if r.status in ("pass", "fail")]
    if failed:
        print(f"\n{name}: FAILED — {len(failed)} of {len(checked)} kernel families disagree with the oracle", file=out)
    else:
        print(f"\n{name}: ok — {len(checked)} kernel famil{'y' if len(checked) == 1 else 'ies'} match the float64 "
              "oracle", file=out)

