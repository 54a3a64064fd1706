"""cli: the `recurgen` command (also `python -m recurgen`).

    recurgen check SPEC...     parse, check and analyse; print diagnostics (warnings too)
    recurgen explain SPEC...   the derived math: class, operator, chunk form, backward
    recurgen list              the bundled specs with their transition classes
    recurgen compile SPEC -o DIR   write the generated module (needs only torch and triton)
    recurgen inspect SPEC      compile every kernel for a GPU arch (no GPU needed); registers, spills

SPEC is a path to a `.rec` file or the name of a bundled spec. Exit codes: 0 success (warnings
allowed), 1 spec errors, 2 usage errors (bad arguments, unknown file), 3 internal error (a recurgen
bug: one line, the traceback only with `--debug` or RECURGEN_DEBUG=1). A bad spec never produces a
Python traceback.

Subcommands are entries of `COMMANDS`: each adds its arguments and runs with the parsed namespace.
`compile`, `inspect`, `verify` and `bench` are meant to be added the same way.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from . import config, pipeline, verify
from .errors import InternalError, Severity, SpecError
from .resources import bundled_spec_names
from .source import Source, resolve

EXIT_OK, EXIT_SPEC, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class _Internal(Exception):
    """Wraps an unexpected exception with the stage it escaped from."""

    def __init__(self, stage: str, spec: str, error: BaseException) -> None:
        super().__init__(str(error))
        self.stage, self.spec, self.error = stage, spec, error


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _stage(name: str, spec: str, fn: Callable[[], object]) -> object:
    """Run one stage; SpecError passes through, anything else is a recurgen bug."""
    try:
        return fn()
    except SpecError:
        raise
    except InternalError as e:
        raise _Internal(e.stage, spec, e) from e
    except Exception as e:
        raise _Internal(name, spec, e) from e


def _source(spec: str) -> Source:
    try:
        return resolve(spec)
    except FileNotFoundError as e:
        # resolve()'s own message (no file, no bundled spec of that name) lists the bundled names.
        raise _Usage(str(e) if not e.filename else f"no such file: `{spec}`") from e
    except IsADirectoryError as e:
        raise _Usage(f"`{spec}` is a directory, not a .rec file") from e
    except OSError as e:
        raise _Usage(f"cannot read `{spec}`: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise _Usage(f"`{spec}` is not UTF-8 text ({e.reason} at byte {e.start})") from e


class _Usage(Exception):
    pass


def _analyze(src: Source):  # type: ignore[no-untyped-def]  # -> (ir.Spec, warnings, Analysis)
    # the pipeline's first stages; sympy is imported by `analyse`, not by `recurgen --help`
    spec, warnings = _stage("check", src.path, lambda: pipeline.front(src))  # type: ignore[misc]
    analysis = _stage("analyze", src.path, lambda: pipeline.analyse(spec))
    return spec, warnings, analysis


@dataclass
class _Specs:
    """The SPEC arguments of one command: each parsed and analysed; errors reported, the worst exit code kept."""

    command: str
    code: int = EXIT_OK

    def each(self, names: Sequence[str]) -> Iterator[tuple[Source, Any, tuple[Any, ...], Any]]:
        """(source, spec, warnings, analysis) of every spec that has no errors."""
        for name in names:
            try:
                src = _source(name)
                spec, warnings, analysis = _analyze(src)
            except _Usage as e:
                print(f"recurgen {self.command}: error: {e}", file=sys.stderr)
                self.code = max(self.code, EXIT_USAGE)
                continue
            except SpecError as e:
                print(e.render(), file=sys.stderr)
                self.code = max(self.code, EXIT_SPEC)
                continue
            yield src, spec, warnings, analysis


def _print_diagnostics(diags: Sequence[object], source: str, out: TextIO) -> None:
    for d in diags:
        print(d.render(source), file=out)  # type: ignore[attr-defined]


# --- check -------------------------------------------------------------------------------------------
def _configure_check(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="+", metavar="SPEC", help="a .rec file or the name of a bundled spec")


def _run_check(args: argparse.Namespace) -> int:
    from .analysis.report import summary

    specs = _Specs("check")
    for src, _, warnings, analysis in specs.each(args.specs):
        diags = [*warnings, *analysis.diagnostics]
        _print_diagnostics(diags, src.text, sys.stderr)
        n = sum(d.severity is Severity.WARNING for d in diags)
        note = f", {n} warning{'s' if n != 1 else ''}" if n else ""
        print(f"{src.path}: ok ({summary(analysis)}{note})")
    return specs.code


# --- explain -----------------------------------------------------------------------------------------
def _configure_explain(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="+", metavar="SPEC", help="a .rec file or the name of a bundled spec")


def _run_explain(args: argparse.Namespace) -> int:
    from .explain import explain_report

    specs = _Specs("explain")
    texts: list[str] = []
    for src, _, warnings, analysis in specs.each(args.specs):
        _print_diagnostics(warnings, src.text, sys.stderr)
        texts.append(str(_stage("explain", src.path, lambda a=analysis, p=src.path: explain_report(a, p))))
    sys.stdout.write("\n".join(texts))
    return specs.code


# --- list --------------------------------------------------------------------------------------------
def _configure_list(p: argparse.ArgumentParser) -> None:
    del p  # no arguments


def _run_list(args: argparse.Namespace) -> int:
    from .analysis.report import summary

    del args
    rows = []
    for name in bundled_spec_names():
        _, _, analysis = _analyze(_source(name))
        rows.append((name, summary(analysis), analysis.spec.description))
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    for name, cls, desc in rows:
        print(f"{name:<{w1}}  {cls:<{w2}}  {desc}")
    return EXIT_OK


# --- compile -----------------------------------------------------------------------------------------
def _configure_compile(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="+", metavar="SPEC", help="a .rec file or the name of a bundled spec")
    p.add_argument("-o", "--output", metavar="DIR", default=None,
                   help="directory to write <name>.py into (default: print the module to stdout)")


def _run_compile(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .runtime.standalone import standalone

    specs = _Specs("compile")
    for src, spec, warnings, analysis in specs.each(args.specs):
        _print_diagnostics(warnings, src.text, sys.stderr)
        # the rest of the pipeline from the analysis `each` made (plan, render, tidy): nothing is analysed twice
        gen = _stage("render", src.path, lambda s=spec, x=src, a=analysis: pipeline.generate(x, s, a))
        source = standalone(gen.source)  # carries what it needs (runtime/standalone.py)
        if args.output is None:
            sys.stdout.write(source)
            continue
        out = Path(args.output)
        try:
            out.mkdir(parents=True, exist_ok=True)
            path = out / f"{spec.name}.py"
            path.write_text(source, encoding="utf-8")
        except OSError as e:
            raise _Usage(f"cannot write to `{out}`: {e.strerror or e}") from e
        lines = source.count("\n")
        print(f"wrote {path} ({lines} lines: fused recurrent forward, backward and step kernels for `{spec.name}`)")
    return specs.code


# --- inspect -----------------------------------------------------------------------------------------
def _configure_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="+", metavar="SPEC", help="a .rec file or the name of a bundled spec")
    p.add_argument("--arch", action="append", choices=("sm_80", "sm_90"), default=None,
                   help="GPU architecture (repeatable; default sm_90)")
    p.add_argument("--dim", action="append", default=[], metavar="NAME=SIZE",
                   help="size of a dim (default 128 for every free dim), e.g. --dim N=16")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16", help="input/output dtype")
    p.add_argument("--all-configs", action="store_true",
                   help="one row per warp count the autotuner may pick (default: the best per kernel and arch)")
    p.add_argument("--kernels", choices=("all", "recurrent", "chunk"), default="all",
                   help="which kernel families to build: all (default), recurrent or chunk")


def _run_inspect(args: argparse.Namespace) -> int:
    import os
    import subprocess

    if config.interpreting():
        # interpreted kernels cannot be compiled for a GPU: run this command without the interpreter
        env = {**os.environ, "TRITON_INTERPRET": "0"}
        argv = [sys.executable, "-m", "recurgen", "inspect", *sys.argv[2:]] if sys.argv[1:2] == ["inspect"] else \
            [sys.executable, "-m", "recurgen", "inspect", *args.specs, *(f"--arch={a}" for a in args.arch or ()),
             *(f"--dim={d}" for d in args.dim), f"--dtype={args.dtype}",
             *(["--all-configs"] if args.all_configs else []), f"--kernels={args.kernels}"]
        return subprocess.run(argv, env=env, check=False).returncode
    from .api import load
    from .gpu import best, format_table, inspect_module

    sizes: dict[str, int] = {}
    for item in args.dim:
        name, _, value = item.partition("=")
        if not value.isdigit() or int(value) < 1:
            raise _Usage(f"--dim takes NAME=SIZE with a positive size, got `{item}`")
        sizes[name] = int(value)
    rows = []
    for name in args.specs:
        src = _source(name)
        rec = _stage("load", src.path, lambda n=name: load(n))  # a bad spec: its SpecError, before any kernel
        rows += _stage("inspect", src.path,  # type: ignore[operator]
                       lambda r=rec: inspect_module(r.module, sizes, tuple(args.arch or ("sm_90",)), args.dtype,
                                                    until_clean=not args.all_configs, kernels=args.kernels))
    print(format_table(rows if args.all_configs else best(rows)))
    return EXIT_OK


COMMANDS: tuple[Command, ...] = (
    Command("check", "parse, check and analyse specs; print diagnostics", _configure_check, _run_check),
    Command("explain", "print the derived math of a spec (class, operator, chunk form, backward)",
            _configure_explain, _run_explain),
    Command("list", "list the bundled specs with their transition classes", _configure_list, _run_list),
    Command("compile", "write the generated module of a spec (standalone: torch and triton only)",
            _configure_compile, _run_compile),
    Command("inspect", "compile every kernel for a GPU arch without a GPU; registers, spills, shared memory",
            _configure_inspect, _run_inspect),
    Command("verify", "property-test every generated kernel of a spec against its float64 oracle",
            verify.configure, verify.main),
)


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks of internal errors (also RECURGEN_DEBUG=1)")
    parser = argparse.ArgumentParser(
        prog="recurgen", description="A compiler for linear recurrences: .rec specs to Triton kernels.",
        epilog="SPEC is a path to a .rec file or a bundled spec name (see `recurgen list`). Exit codes: "
               "0 ok, 1 spec errors, 2 usage errors, 3 internal error.")
    parser.add_argument("--version", action="version", version=f"recurgen {__version__}")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show tracebacks of internal errors (also RECURGEN_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help, parents=[common])
        cmd.configure(p)
        p.set_defaults(run=cmd.run)
    return parser


def _utf8_safe() -> None:
    # The reports use math symbols (ᵀ ⊙ Σ); never fail on a terminal that cannot show them.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    _utf8_safe()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help, --version (0) and usage errors (2)
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    debug = bool(args.debug) or config.debug()
    try:
        return int(args.run(args))
    except _Usage as e:
        print(f"recurgen {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SpecError as e:
        print(e.render(), file=sys.stderr)
        return EXIT_SPEC
    except _Internal as e:
        print(f"recurgen: internal error in stage `{e.stage}` while processing {e.spec} (this is a recurgen bug, "
              f"please report it): {type(e.error).__name__}: {e.error}", file=sys.stderr)
        if debug:
            traceback.print_exception(e.error, file=sys.stderr)
        else:
            print("run with --debug for the traceback", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as e:
        print(f"recurgen: internal error in `{args.command}` (this is a recurgen bug, please report it): "
              f"{type(e).__name__}: {e}", file=sys.stderr)
        if debug:
            traceback.print_exception(e, file=sys.stderr)
        else:
            print("run with --debug for the traceback", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
