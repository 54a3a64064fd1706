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

The package: `runner` searches one kernel family, `reporting` prints the results, this module is the command.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence

from .. import config
from .reporting import CHECKS, KERNEL_LABELS, replay_command, report
from .runner import (
    ALL_DTYPES,
    ALL_MODES,
    LENGTHS,
    CheckResult,
    ModeResult,
    Progress,
    check_of,
    default_device,
    has_mode,
    has_varlen,
    lengths_up_to,
    run_case,
    search,
    verify_mode,
)

__all__ = ["ALL_DTYPES", "ALL_MODES", "CHECKS", "EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "KERNEL_LABELS", "LENGTHS",
           "CheckResult", "ModeResult", "Progress", "UsageError", "configure", "has_mode", "has_varlen",
           "lengths_up_to", "main", "replay_command", "report", "run", "run_case", "search", "verify_mode"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A bad option value (exit code 2)."""


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
    from ..frontend import load_source, resolve

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
    device = default_device()
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
                        r.checks[check_of(c.label)].failed = True
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
