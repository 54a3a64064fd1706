"""verify.runner: one kernel family of a spec searched for a counterexample — `Case`s drawn by hypothesis
(`recurgen.testing.strategies.cases`) -> a `ModeResult` (per-check worst error, the shrunk failing case).

Results are memoised per case: the interpreter is slow, shrinking revisits cases, and a case that ran out of
time budget must not turn a replay into a flaky "pass".
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

ALL_MODES = ("recurrent", "chunk", "torch", "torch-chunk", "step")  # recurgen.testing.MODES, without importing torch
ALL_DTYPES = ("fp32", "fp16", "bf16")
LENGTHS = (1, 2, 5, 8, 13, 17)

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
            check = check_of(c.label)
            row = self.checks.setdefault(check, CheckResult(check))
            if math.isfinite(c.rel_error):
                row.worst = max(row.worst, c.rel_error)
            else:
                row.worst = math.inf


def check_of(label: str) -> str:
    if label.startswith("gradient"):
        return "backward"
    if label.startswith("final state"):
        return "final state"
    if label.startswith("step"):
        return "decode"
    return "forward"



# --- running one case ----------------------------------------------------------------------------------------

def default_device() -> str:
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
            row = result.checks.setdefault(check_of(c.label), CheckResult(check_of(c.label)))
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
                  progress=progress or Progress(examples, enabled=False), device=device or default_device())

