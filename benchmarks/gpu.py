"""gpu: `python -m benchmarks.gpu`, the one command for a CUDA machine (issue 15); under 8 minutes on one H100.

    python -m benchmarks.gpu                  # compile, check, time; writes benchmarks/results/gpu.md
    python -m benchmarks.gpu --specs gla,hgrn # a subset of the bundled specs
    python -m benchmarks.gpu --dry-run        # the same code path in Triton's interpreter at tiny shapes, on CPU

1. compile every bundled spec (`recurgen.load`; Triton compiles each kernel at its first call, in step 2);
2. check, in compiled mode at small shapes, every kernel family (fused recurrent; chunk where the spec has one)
   against the float64 oracle: forward, final state and backward (`recurgen.testing.checks`), a variable-length
   batch (`cu_seqlens`), and decode (`step` token by token);
3. time the forward (inference) and forward + backward (training) of every spec and family, bf16, at
   B=8 T=4096 H=16 K=V=128 and B=1 T=8192 H=96 K=V=128: warm-up, then CUDA events around each call, the median
   reported; flash-linear-attention's kernels for the same model alongside when it is installed.

`--dry-run` runs all of it under the interpreter (TRITON_INTERPRET=1, CPU tensors) at tiny shapes, timing with a
CPU clock in place of CUDA events, and writes gpu-dry-run.md: what CI runs (tests/benchmarks/test_gpu.py) so that
the real run is ready for the first GPU. A failed check makes the exit status 1; timings are reported, never
asserted. Rows that run out of memory or past `--budget` are reported as such.
"""

from __future__ import annotations

import os
import sys

if "--dry-run" in sys.argv:  # the interpreter must be chosen before triton is first imported
    os.environ["TRITON_INTERPRET"] = "1"

import argparse
import contextlib
import math
import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import common

CHECK_MODES = ("recurrent", "chunk")  # the kernel families; decode ("step") is checked once per spec
CHECKS = ("forward", "final state", "backward", "varlen", "decode")


@dataclass(frozen=True)
class Shape:
    """One timed shape: B x T x H, every free dim `dim`."""

    B: int
    T: int
    H: int
    dim: int

    def __str__(self) -> str:
        return f"B={self.B} T={self.T} H={self.H} K=V={self.dim}"


@dataclass(frozen=True)
class Plan:
    """Everything that differs between the real run and the dry run; the code path is the same."""

    device: str
    timer: str  # "CUDA events" or "CPU clock"
    check_dtypes: tuple[str, ...]
    check_B: int
    check_T: int
    check_H: int
    check_dim: int
    varlen: tuple[int, ...]  # sequence lengths packed into one row
    shapes: tuple[Shape, ...]
    dtype: torch.dtype
    warmup: int
    reps: int
    out_name: str


REAL = Plan("cuda", "CUDA events", ("fp32", "bf16"), 2, 100, 2, 32, (37, 64, 1), (Shape(8, 4096, 16, 128),
            Shape(1, 8192, 96, 128)), torch.bfloat16, warmup=3, reps=10, out_name="gpu.md")
# bf16 under the interpreter proves nothing unless a kernel computes in fp32: the dry run checks fp32 only
DRY = Plan("cpu", "CPU clock", ("fp32",), 1, 5, 1, 4, (2, 3), (Shape(1, 8, 2, 16), Shape(2, 4, 1, 16)),
           torch.bfloat16, warmup=1, reps=1, out_name="gpu-dry-run.md")


# --- timing -------------------------------------------------------------------------------------------

def elapsed_ms(plan: Plan, fn: Callable[[], Any]) -> float:
    """Milliseconds of one call of `fn`: CUDA events around it on a GPU, the CPU clock otherwise."""
    if plan.device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return float(start.elapsed_time(end))
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def median_ms(plan: Plan, fn: Callable[[], Any]) -> float:
    for _ in range(plan.warmup):  # compiles, autotunes, warms caches
        fn()
    if plan.device == "cuda":
        torch.cuda.synchronize()
    return statistics.median(elapsed_ms(plan, fn) for _ in range(plan.reps))


def _outs(x: Any) -> tuple[torch.Tensor, ...]:
    return x if isinstance(x, tuple) else (x,)


Call = Callable[[dict[str, torch.Tensor]], Any]  # tensors by recurgen name -> (o, final state)


def inputs_at(plan: Plan, spec: Any, shape: Shape) -> dict[str, torch.Tensor]:
    """The spec's inputs at `shape` on the device (made once per spec and shape, shared by every timed call)."""
    sz = common.spec_dims(spec, shape.dim)
    return {n: x.to(plan.device) for n, x in common.make_inputs(spec, shape.B, shape.T, shape.H, sz,
                                                                dtype=plan.dtype).items()}


def time_call(plan: Plan, call: Call, xs: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(forward ms, forward + backward ms) of `call` on `xs`."""
    with torch.no_grad():
        fwd = median_ms(plan, lambda: call(xs))
    train = {n: x.detach().requires_grad_(True) for n, x in xs.items()}
    cots: list[torch.Tensor] = []

    def step() -> None:
        outs = _outs(call(train)[0])
        if not cots:
            cots.extend(torch.randn_like(o) for o in outs)
        torch.autograd.grad(outs, list(train.values()), cots, allow_unused=True)  # no .grad accumulation timed

    return fwd, median_ms(plan, step)


# --- the run --------------------------------------------------------------------------------------------

@dataclass
class Report:
    plan: Plan
    env: dict[str, str]
    compiled: list[tuple[str, float, str]] = field(default_factory=list)  # spec, seconds, error
    checks: list[list[str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    timings: dict[str, list[list[str]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _worst(outcomes: list[Any]) -> str:
    """A table cell: the worst relative error of some comparisons, FAIL if any failed, skipped/– if none ran."""
    comps = [c for o in outcomes for c in o.comparisons]
    if not comps:
        skipped = [o.skipped for o in outcomes if o.skipped]
        return f"skipped ({skipped[0]})" if skipped else "–"
    worst = max(c.rel_error for c in comps)
    text = "inf" if not math.isfinite(worst) else f"{worst:.1e}"
    if all(c.passed for c in comps):
        return text
    bad = next(c for c in comps if not c.passed)
    return f"**FAIL** {text}: {bad.message or bad.label}"[:160]


def check_spec(plan: Plan, rec: Any, report: Report) -> None:
    """Every family of one spec against the float64 oracle, in each check dtype."""
    from recurgen import verify
    from recurgen.testing.checks import Case

    free = {d.name: plan.check_dim for d in rec.spec.dims if d.size is None}
    for mode in (m for m in CHECK_MODES if verify.has_mode(rec, m)):
        for dtype in plan.check_dtypes:
            case = Case(B=plan.check_B, T=plan.check_T, H=plan.check_H, sizes=free, dtype=dtype, seed=1)
            main = verify.run_case(rec, mode, case, plan.device)
            by_check: dict[str, list[Any]] = {c: [] for c in CHECKS}
            for c in main.comparisons:
                by_check[verify.check_of(c.label)].append(_one(c))
            if main.skipped:
                by_check["forward"].append(main)
            if verify.has_varlen(rec, mode):
                packed = Case(B=1, T=sum(plan.varlen), H=plan.check_H, sizes=free, dtype=dtype, seed=2,
                              splits=plan.varlen)
                by_check["varlen"].append(verify.run_case(rec, mode, packed, plan.device))
            if mode == "recurrent":  # decode is the recurrent step whatever the training mode
                by_check["decode"].append(verify.run_case(rec, "step", case, plan.device))
            cells = [_worst(by_check[c]) for c in CHECKS]
            report.checks.append([f"`{rec.name}`", mode, dtype, *cells])
            report.failures += [f"{rec.name} {mode} {dtype} {c}" for c, cell in zip(CHECKS, cells, strict=True)
                                if cell.startswith("**FAIL")]


def _one(comparison: Any) -> Any:
    from recurgen.testing.checks import Outcome

    return Outcome([comparison])


def _fla_calls() -> dict[str, dict[str, Call]]:
    """fla's entry points by family and spec (empty when fla is not installed)."""
    from . import peers

    ok, _ = peers.available()
    if not ok:
        return {}
    fused, chunk = peers.adapters(), peers.chunk_adapters()
    return {"recurrent": {n: (lambda xs, f=f: f(xs, None, False)) for n, f in fused.items()},
            "chunk": {n: (lambda xs, f=f: f(xs, None, False)) for n, f in chunk.items()}}


@contextlib.contextmanager
def _fla_shim(plan: Plan) -> Iterator[None]:
    # fla's kernels in the interpreter need their loop variables as tensors (peers.loop_vars_as_tensors)
    # and cannot time autotune configs: fla runs its smallest tiles there, as the counts do (counters.count)
    if plan.device == "cpu":
        from . import peers
        from .counters import count

        with peers.loop_vars_as_tensors(), count(peers.POLICIES["smallest"], peers.is_fla):
            yield
    else:
        yield


def _timed(plan: Plan, call: Call, xs: dict[str, torch.Tensor]) -> tuple[str, str]:
    try:
        fwd, train = time_call(plan, call, xs)
        return f"{fwd:.3f}", f"{train:.3f}"
    except torch.cuda.OutOfMemoryError:
        return "OOM", "OOM"
    except Exception as e:  # one row failing must not lose the others: reported in its cell
        traceback.print_exc()
        return f"error: {type(e).__name__}", "–"
    finally:
        if plan.device == "cuda":
            torch.cuda.empty_cache()


def time_all(plan: Plan, recs: dict[str, Any], report: Report, deadline: float) -> None:
    fla = _fla_calls()
    if not fla:
        report.notes.append("flash-linear-attention is not installed (or not importable): recurgen only.")
    for shape in plan.shapes:
        rows = report.timings.setdefault(str(shape), [])
        for name, rec in recs.items():
            modes = [m for m in CHECK_MODES if m == "recurrent" or rec.chunk_reason is None]
            if time.monotonic() > deadline:
                rows += [[f"`{name}`", mode, "not timed (--budget spent)", "", "", "", ""] for mode in modes]
                continue
            try:
                xs = inputs_at(plan, rec.spec, shape)
            except torch.cuda.OutOfMemoryError:
                rows += [[f"`{name}`", mode, "OOM (inputs)", "", "", "", ""] for mode in modes]
                continue
            for mode in modes:
                mine = _timed(plan, lambda xs, rec=rec, mode=mode: rec(*xs.values(), mode=mode), xs)
                theirs = ("–", "–")
                peer = fla.get(mode, {}).get(name)
                if peer is not None:
                    with _fla_shim(plan):
                        theirs = _timed(plan, peer, xs)
                rows.append([f"`{name}`", mode, *mine, *theirs, _speedup(mine[1], theirs[1])])
                print(f"[{time.strftime('%H:%M:%S')}] {shape} {name} {mode}: {mine} fla {theirs}", flush=True)
            del xs


def _speedup(mine: str, theirs: str) -> str:
    try:
        return f"{float(theirs) / float(mine):.2f}"
    except ValueError:
        return "–"


def render(report: Report) -> str:
    plan = report.plan
    dry = plan.device == "cpu"
    md = ["# recurgen on a GPU: compile, check, time" + (" (dry run: interpreter, tiny shapes)" if dry else ""), "",
          "Generated by `python -m benchmarks.gpu" + (" --dry-run" if dry else "") + "`; do not edit by hand. "
          + ("A dry run exercises the code path only: its times are the interpreter's, meaningless as speeds."
             if dry else "Measured on the device below."), "", "## Environment", "", common.env_block(report.env), "",
          "## Compile", "", common.md_table(["spec", "load s", "error"],
                                            [[f"`{n}`", f"{s:.2f}", e or ""] for n, s, e in report.compiled]), "",
          "## Checks against the float64 oracle", "",
          f"Compiled kernels at B={plan.check_B} T={plan.check_T} H={plan.check_H}, every free dim "
          f"{plan.check_dim}, with an initial state; varlen: sequences of {', '.join(map(str, plan.varlen))} "
          "tokens packed into one row; decode: the step kernel token by token. Cells: the worst relative error "
          "(FAIL beyond the dtype's tolerance).", "",
          common.md_table(["spec", "family", "dtype", *CHECKS], report.checks), ""]
    if report.failures:
        md += [f"**{len(report.failures)} failed check(s)**: " + "; ".join(report.failures), ""]
    md += ["## Times", "",
           f"{str(plan.dtype).replace('torch.', '')} inputs, fp32 params, no initial state. Median of {plan.reps} "
           f"calls after {plan.warmup} warm-up calls, timed with {plan.timer}. fwd: inference forward; fwd+bwd: "
           "training forward and backward from random cotangents. fla: flash-linear-attention's kernels of the same "
           "family (`fused_recurrent_*` / `chunk_*`); *fla / recurgen*: fla's fwd+bwd time over recurgen's (above 1: "
           "recurgen is faster).", ""]
    for shape, rows in report.timings.items():
        md += [f"### {shape}", "", common.md_table(["spec", "family", "recurgen fwd ms", "recurgen fwd+bwd ms",
                                                    "fla fwd ms", "fla fwd+bwd ms", "fla / recurgen"], rows), ""]
    md += [f"- {n}" for n in report.notes]
    return "\n".join(md) + "\n"


def environment(plan: Plan) -> dict[str, str]:
    env = common.environment()
    if plan.device == "cuda":
        p = torch.cuda.get_device_properties(0)
        env["device"] = f"{p.name}, {p.multi_processor_count} SMs, CUDA {torch.version.cuda}"
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="the interpreter on CPU at tiny shapes (what CI runs)")
    ap.add_argument("--specs", default=None, help="comma-separated specs (default: every bundled spec)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: check, time")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds after which timing stops (default 420)")
    ap.add_argument("--out", type=Path, default=common.RESULTS, help="results directory")
    args = ap.parse_args(argv)
    plan = DRY if args.dry_run else REAL
    from .counters import interpreting

    if args.dry_run and not interpreting():
        ap.error("--dry-run needs Triton's interpreter: run it as `python -m benchmarks.gpu --dry-run` (sets "
                 "TRITON_INTERPRET=1 before triton is imported)")
    if not args.dry_run and (interpreting() or not torch.cuda.is_available()):
        ap.error("no compiled CUDA run possible here (" + ("TRITON_INTERPRET=1 is set" if interpreting() else
                 "no CUDA device") + "): unset TRITON_INTERPRET on a CUDA machine, or use --dry-run")
    import recurgen

    t_start = time.monotonic()
    names = args.specs.split(",") if args.specs else common.all_specs()
    report = Report(plan, environment(plan))
    recs: dict[str, Any] = {}
    for name in names:
        t0 = time.perf_counter()
        try:
            recs[name] = recurgen.load(name)
            report.compiled.append((name, time.perf_counter() - t0, ""))
        except Exception as e:  # a spec that does not compile is reported, the others still run
            report.compiled.append((name, time.perf_counter() - t0, f"{type(e).__name__}: {e}"[:200]))
            report.failures.append(f"{name} compile")
    skip = set(args.skip.split(","))
    if "check" not in skip:
        for rec in recs.values():
            check_spec(plan, rec, report)
            print(f"[{time.strftime('%H:%M:%S')}] checked {rec.name}", flush=True)
    if "time" not in skip:
        time_all(plan, recs, report, t_start + args.budget)
    report.notes.append(f"whole run: {time.monotonic() - t_start:.0f} s.")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / plan.out_name
    path.write_text(render(report))
    print(path)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
