"""verify: `recurgen verify SPEC` — hypothesis-driven checks of every generated kernel of a spec against its
float64 oracle, with a report a researcher can act on.

Each kernel family (mode) is searched separately: hypothesis draws cases (shapes, dtype, initial state,
checkpointing, tiling, seed — `recurgen.testing.strategies.cases`), each case runs the family's checks
(`recurgen.testing.checks`), and the first failure is shrunk to a minimal counterexample that the report
prints with a one-line replay command. Results are memoised per case: the interpreter is slow, shrinking
revisits cases, and a case that ran out of time budget must not turn a replay into a flaky "pass".

Modes: `recurrent` (the fused recurrent Triton kernels: forward, final state, backward), `chunk` (the
chunked kernels, for specs with a chunk form; reported as "not generated" otherwise), `torch` (the pure-torch
path, with its decode), `torch-chunk` (the chunk families in plain torch, `backend="torch", mode="chunk"`)
and `step` (Triton decode applied token by token equals the forward).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from . import config

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
ALL_MODES = ("recurrent", "chunk", "torch", "torch-chunk", "step")  # recurgen.testing.MODES, without importing torch
ALL_DTYPES = ("fp32", "fp16", "bf16")
CHECKS = ("forward", "final state", "backward", "decode")
LENGTHS = (1, 2, 5, 8, 13, 17)


class UsageError(Exception):
    """A bad option value (exit code 2)."""


# --- progress ------------------------------------------------------------------------------------------------

class Progress:
    """A one-line progress bar on stderr (redrawn in place on a terminal; sparse lines otherwise, so CI logs
    stay short). Written here to keep recurgen free of a progress-bar dependency."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True, width: int = 24) -> None:
        self.total, self.done, self.width = max(total, 1), 0, width
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label = ""
        self.t0 = time.monotonic()

    def update(self, label: str | None = None, advance: int = 0) -> None:
        changed = label is not None and label != self.label
        if label is not None:
            self.label = label
        self.done = min(self.done + advance, self.total)
        if not self.enabled:
            return
        filled = self.width * self.done // self.total
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"[{bar}] {self.done}/{self.total} {self.label} ({time.monotonic() - self.t0:.0f}s)"
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        elif changed:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


# --- results -------------------------------------------------------------------------------------------------

@dataclass
class CheckResult:
    """One (kernel family, check) row of the report."""

    check: str
    worst: float = 0.0
    failed: bool = False


@dataclass
class ModeResult:
    """Everything one kernel family's search found."""

    mode: str
    status: str = "pass"  # pass | fail | not generated | skipped
    note: str = ""
    examples: int = 0
    out_of_time: int = 0
    overflow: int = 0
    checks: dict[str, CheckResult] = field(default_factory=dict)
    counterexample: Any = None  # the shrunk Case
    messages: list[str] = field(default_factory=list)
    unchecked: set[str] = field(default_factory=set)  # what a function given with --against could not be checked for

    def record(self, outcome: Any) -> None:
        self.unchecked.update(outcome.unchecked)
        for c in outcome.comparisons:
            check = _check_of(c.label)
            row = self.checks.setdefault(check, CheckResult(check))
            if math.isfinite(c.rel_error):
                row.worst = max(row.worst, c.rel_error)
            else:
                row.worst = math.inf


def _check_of(label: str) -> str:
    if label.startswith("gradient"):
        return "backward"
    if label.startswith("final state"):
        return "final state"
    if label.startswith("step"):
        return "decode"
    return "forward"


KERNEL_LABELS = {"recurrent": "recurrent [triton]", "chunk": "chunk [triton]", "torch": "torch path",
                 "torch-chunk": "chunk [torch]", "step": "step [triton]", "function": "--against function"}


# --- running one case ----------------------------------------------------------------------------------------

def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def has_mode(rec: Any, mode: str) -> bool:
    """Whether the module generated this kernel family (chunk: only for specs with a chunk form)."""
    if mode == "function":
        return True
    if mode in ("chunk", "torch-chunk"):
        return callable(getattr(rec.module, f"chunk_{rec.name}", None)) and \
            getattr(rec.module, "CHUNK_REASON", None) is None
    return True


def has_varlen(rec: Any, mode: str) -> bool:
    """Whether this family's entry point takes `cu_seqlens` (variable-length batches)."""
    import inspect

    if mode == "function":
        return rec.accepts.cu_seqlens
    name = f"chunk_{rec.name}" if mode in ("chunk", "torch-chunk") else f"fused_recurrent_{rec.name}"
    fn = getattr(rec.module, name, None)
    try:
        return fn is not None and "cu_seqlens" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def run_case(rec: Any, mode: str, case: Any, device: str) -> Any:
    """One case through one kernel family's checks; an exception in the kernels is a failed comparison."""
    from recurgen.testing.checks import Comparison, Outcome, check_forward_backward, check_step, tile_budget

    try:
        inputs = case.inputs(rec.spec, device=device)
        with tile_budget(rec.module, case.tile_budget):
            if mode == "function":  # a function given with --against (recurgen.testing.foreign)
                return check_forward_backward(rec, inputs, seed=case.seed)
            if mode == "recurrent":
                return check_forward_backward(rec, inputs, backend="triton", checkpoint_every=case.checkpoint_every,
                                              seed=case.seed)
            if mode in ("chunk", "torch-chunk"):  # the Triton chunk kernels, or the same families in plain torch
                fn = getattr(rec.module, f"chunk_{rec.name}")
                backend = "torch" if mode == "torch-chunk" else None
                return check_forward_backward(rec, inputs, fn=fn, backend=backend, seed=case.seed)
            if mode == "torch":  # the token walk: "auto" would chunk from TORCH_CHUNK_AUTO_MIN_T (torch-chunk's job)
                walk = functools.partial(rec, mode="recurrent")
                out = check_forward_backward(rec, inputs, fn=walk, backend="torch", seed=case.seed)
                out.comparisons += check_step(rec, inputs, backend="torch").comparisons
                return out
            if mode == "step":
                return check_step(rec, inputs, backend="triton")
            raise ValueError(f"unknown mode {mode!r}")
    except Exception as e:  # a crash is a failure of the kernel, shrunk like any other
        import traceback

        first = str(e).splitlines()[0] if str(e) else ""
        frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        where = f" (at {frame.filename}:{frame.lineno})" if frame else ""
        return Outcome([Comparison("forward", math.inf, False, f"raised {type(e).__name__}: {first}{where}")])


class _Mismatch(Exception):
    """Raised inside the hypothesis test so it shrinks; carries nothing (the memo has the details)."""


def search(rec: Any, mode: str, strategy: Any, *, examples: int, deadline: float, seed: int,
           progress: Progress, device: str) -> ModeResult:
    """Run hypothesis over `strategy` for one kernel family; on failure, keep the shrunk case."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as hseed

    result = ModeResult(mode)
    memo: dict[str, Any] = {}
    failing: list[Any] = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False, verbosity=Verbosity.quiet,
              print_blob=False,
              phases=(Phase.explicit, Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck))
    @hseed(seed)
    @given(strategy)
    def prop(case: Any) -> None:
        key = case.to_arg()
        if key not in memo:
            if time.monotonic() > deadline and result.examples > 0:  # at least one example always runs
                result.out_of_time += 1
                return
            outcome = run_case(rec, mode, case, device)
            memo[key] = outcome
            if not failing:
                result.examples += 1
                result.overflow += bool(outcome.skipped)
                result.record(outcome)
                progress.update(advance=1)
            else:
                progress.update(f"{rec.name} {mode}: shrinking a counterexample")
        outcome = memo[key]
        if not outcome.passed:
            failing.append(case)
            raise _Mismatch(key)

    try:
        prop()
    except _Mismatch:
        case = failing[-1]
        outcome = memo[case.to_arg()]
        result.status = "fail"
        result.counterexample = case
        result.messages = [c.message for c in outcome.failures()]
        for c in outcome.failures():
            row = result.checks.setdefault(_check_of(c.label), CheckResult(_check_of(c.label)))
            row.failed = True
            row.worst = max(row.worst, c.rel_error) if math.isfinite(c.rel_error) else math.inf
    if result.status == "pass" and result.examples == 0:
        result.status = "skipped"
        result.note = "no example ran within the time budget"
    return result


def lengths_up_to(max_length: int) -> list[int]:
    """The lengths drawn: the short ones (1, odd, around the checkpoint interval) up to `max_length`, and
    `max_length` itself when it is longer than all of them."""
    return [t for t in LENGTHS if t <= max_length] + ([max_length] if max_length > LENGTHS[-1] else [])


def verify_mode(rec: Any, mode: str, *, examples: int = 10, dtypes: Sequence[str] = ALL_DTYPES,
                lengths: Sequence[int] = LENGTHS, seed: int = 0, time_budget: float = 600.0,
                progress: Progress | None = None, device: str | None = None) -> ModeResult:
    """Search one kernel family of `rec` for a counterexample (what `recurgen verify` and the pytest plugin run)."""
    from recurgen.testing import strategies

    if not has_mode(rec, mode):
        reason = getattr(rec.module, "CHUNK_REASON", None) if mode in ("chunk", "torch-chunk") else None
        return ModeResult(mode, status="not generated",
                          note=f"not generated: {reason}" if reason else
                          f"not generated: the module has no `{mode}_{rec.name}` kernels yet")
    # a function has no checkpoints or state tiles of ours to vary: draw only what it sees
    fixed = {"checkpoints": (16,), "tile_budgets": (None,)} if mode == "function" else {}
    strategy = strategies.cases(rec.spec, dtypes=dtypes, lengths=lengths, varlen=has_varlen(rec, mode), **fixed)
    return search(rec, mode, strategy, examples=examples, deadline=time.monotonic() + time_budget, seed=seed,
                  progress=progress or Progress(examples, enabled=False), device=device or _device())


# --- the command ---------------------------------------------------------------------------------------------

def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC", help="a .rec file or the name of a bundled spec")
    p.add_argument("--module", metavar="PATH", default=None,
                   help="check this generated module file (e.g. from `recurgen compile`) instead of compiling SPEC")
    p.add_argument("--against", metavar="MODULE:FUNCTION", default=None,
                   help="check this function instead of recurgen's kernels: a function with the spec's public call "
                        "returning (outputs, final_state), from an importable module (`pkg.mod:fn`) or a .py file "
                        "(`path/to/file.py:fn`); --modes does not apply")
    p.add_argument("--examples", type=int, default=10, metavar="N", help="examples per kernel family (default 10)")
    p.add_argument("--time-budget", type=float, default=600.0, metavar="SECONDS",
                   help="stop drawing new examples after this long, shared across the families; each family "
                        "runs at least one (default 600)")
    p.add_argument("--dtypes", default=",".join(ALL_DTYPES), metavar="LIST",
                   help=f"comma-separated input dtypes (default {','.join(ALL_DTYPES)})")
    p.add_argument("--modes", default=",".join(ALL_MODES), metavar="LIST",
                   help=f"comma-separated kernel families (default {','.join(ALL_MODES)})")
    p.add_argument("--seed", type=int, default=0, help="hypothesis seed: same seed, same examples (default 0)")
    p.add_argument("--max-length", type=int, default=max(LENGTHS), metavar="T",
                   help=f"longest sequence drawn (default {max(LENGTHS)}): lengths {', '.join(map(str, LENGTHS))} "
                        "up to T, and T itself if longer")
    p.add_argument("--replay", metavar="CASE", default=None,
                   help="run exactly this case (as printed in a failure report) instead of searching")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _csv(value: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise UsageError(f"--{what} takes a comma-separated list of {', '.join(allowed)}; got `{value}`")
    return list(dict.fromkeys(items))


def _argv(args: argparse.Namespace) -> list[str]:
    """The options of this invocation, spelled out (to re-run it in a subprocess)."""
    argv = [args.spec, f"--examples={args.examples}", f"--time-budget={args.time_budget}", f"--dtypes={args.dtypes}",
            f"--modes={args.modes}", f"--seed={args.seed}", f"--max-length={args.max_length}"]
    if args.module:
        argv.append(f"--module={args.module}")
    if args.against:
        argv.append(f"--against={args.against}")
    if args.replay:
        argv.append(f"--replay={args.replay}")
    if args.no_progress:
        argv.append("--no-progress")
    return argv


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


def _reexec(args: argparse.Namespace) -> int:
    """Re-run this command with TRITON_INTERPRET=1: it must be set before triton is imported, which may
    already have happened in this process."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    argv = [sys.executable, "-m", "recurgen", "verify", *_argv(args)]
    return subprocess.run(argv, env=env, check=False).returncode


def main(args: argparse.Namespace) -> int:
    """The `verify` entry of the CLI's COMMANDS: usage errors print here (exit 2); spec errors (SpecError)
    propagate to the CLI, which renders them with a caret (exit 1), as for every other command."""
    try:
        return run(args)
    except UsageError as e:
        print(f"recurgen verify: error: {e}", file=sys.stderr)
        return EXIT_USAGE


def _check_spec(spec: str) -> None:
    """Resolve and check SPEC up front: a missing file is a usage error, a bad spec raises SpecError."""
    from .frontend import load_source, resolve

    try:
        src = resolve(spec)
    except FileNotFoundError as e:
        raise UsageError(str(e) if not e.filename else f"no such file: `{spec}`") from e
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read `{spec}`: {e}") from e
    load_source(src)


def run(args: argparse.Namespace) -> int:
    """`recurgen verify`: 0 when every checked kernel matches the oracle, 1 on a mismatch (or spec errors)."""
    try:
        modes = _csv(args.modes, ALL_MODES, "modes")
        dtypes = _csv(args.dtypes, ALL_DTYPES, "dtypes")
        if args.examples < 1:
            raise UsageError(f"--examples must be at least 1, got {args.examples}")
        if not args.time_budget > 0:
            raise UsageError(f"--time-budget must be positive, got {args.time_budget}")
        if args.max_length < 1:
            raise UsageError(f"--max-length must be at least 1, got {args.max_length}")
        from recurgen.testing.checks import Case

        replay = Case.from_arg(args.replay) if args.replay else None
        if replay is not None and replay.dtype not in dtypes:
            dtypes.append(replay.dtype)
    except ValueError as e:
        raise UsageError(f"--replay: {e}") from e
    _check_spec(args.spec)  # usage errors and spec diagnostics before anything heavy is imported
    if args.module and not os.path.isfile(args.module):
        raise UsageError(f"no such module file: `{args.module}`")
    if args.module and args.against:
        raise UsageError("--module and --against both name what to check: give one")
    import torch

    if not config.interpreting() and not torch.cuda.is_available():
        return _reexec(args)
    from recurgen.api import load
    from recurgen.testing.interpreter import speed_up

    speed_up()  # bit-identical, several times faster on scans (no-op on a GPU)
    from recurgen.testing.checks import load_module_file

    if args.against:
        from recurgen.testing import foreign

        try:
            rec = foreign.subject(foreign.load_function(args.against), args.spec, label=args.against)
        except ValueError as e:
            raise UsageError(f"--against: {e}") from e
        modes = ["function"]
    elif args.module:
        try:
            rec = load_module_file(args.spec, args.module)
        except (ImportError, SyntaxError, ValueError) as e:
            raise UsageError(f"cannot use `{args.module}`: {e}") from e
    else:
        rec = load(args.spec)
    device = _device()
    lengths = lengths_up_to(args.max_length)
    runnable = [m for m in modes if has_mode(rec, m)]
    total = len(runnable) * (1 if replay else args.examples)
    progress = Progress(total, enabled=not args.no_progress)
    start = time.monotonic()
    results: list[ModeResult] = []
    try:
        for i, mode in enumerate(modes):
            if not has_mode(rec, mode):
                results.append(verify_mode(rec, mode))  # not generated: its note gives the reason
                continue
            progress.update(f"{rec.name} {mode}")
            if replay is not None:
                outcome = run_case(rec, mode, replay, device)
                r = ModeResult(mode, examples=1)
                r.record(outcome)
                if not outcome.passed:
                    r.status, r.counterexample = "fail", replay
                    r.messages = [c.message for c in outcome.failures()]
                    for c in outcome.failures():
                        r.checks[_check_of(c.label)].failed = True
                progress.update(advance=1)
                results.append(r)
                continue
            remaining = [m for m in modes[i:] if has_mode(rec, m)]
            share = (args.time_budget - (time.monotonic() - start)) / len(remaining)
            results.append(verify_mode(rec, mode, examples=args.examples, dtypes=dtypes, lengths=lengths,
                                       seed=args.seed, time_budget=share, progress=progress, device=device))
    finally:
        progress.close()
    head = f"recurgen verify {rec.name}"
    if args.module:
        head += f" (module {args.module})"
    if args.against:
        head += f" (function {args.against})"
    what = f"replaying {replay.to_arg()}" if replay else f"{args.examples} example(s) per kernel family"
    print(f"{head}: {what}, dtypes {','.join(dtypes)}, seed {args.seed}, "
          f"{'interpreter' if config.interpreting() else device}, {time.monotonic() - start:.1f}s")
    report(rec.name, results, args, sys.stdout)
    return EXIT_FAIL if any(r.status == "fail" for r in results) else EXIT_OK
