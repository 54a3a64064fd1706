"""The whole compile pipeline on untrusted text, under a time bound, and a check of generated code."""

from __future__ import annotations

import ast
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from recurgen import ir, pipeline
from recurgen.codegen.tidy import GeneratedModule
from recurgen.errors import SpecError
from recurgen.source import Source

TIME_LIMIT_S = 20.0  # CPU seconds per spec; the pipeline takes well under one for anything it accepts


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt a hang after `seconds` of this process's CPU time (Hypothesis' `deadline` only measures
    examples that finish).

    CPU time, not wall time: the CI machines are shared (load averages of 10+ on 2 cores were seen), and a
    wall-clock bound then fails examples that merely waited for a core. A hang in the compiler (a sympy
    expansion, a loop) burns CPU and is still caught.
    """
    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"the pipeline used more than {seconds} s of CPU time")

    previous = signal.signal(signal.SIGVTALRM, on_alarm)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def compile_untrusted(text: str, path: str = "hostile.rec") -> tuple[ir.Spec, GeneratedModule] | None:
    """Parse, check, analyse and render `text`: None for a SpecError; any other exception propagates."""
    with time_limit(TIME_LIMIT_S):
        try:
            src = Source(text, path)
            spec, _ = pipeline.front(src)
            return spec, pipeline.generate(src, spec)
        except SpecError as err:
            error = err
    assert error.diagnostics, "a SpecError must carry at least one diagnostic"
    return None


def code_names(source: str) -> set[str]:
    """Every name the module's *code* mentions: identifiers, attributes, imports, definitions, arguments.

    String literals (docstrings included) and comments are not code, so a payload that ends up there is inert.
    """
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.update(node.name.split("."))
            if node.asname:
                names.add(node.asname)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg) or (isinstance(node, ast.keyword) and node.arg):
            names.add(node.arg)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(node.module.split("."))
    return names
