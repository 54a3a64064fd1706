"""Diagnostics: source spans, spec errors rendered like a compiler's, and internal errors."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

MAX_DIAGNOSTICS = 20


@dataclass(frozen=True, slots=True)
class Span:
    """Half-open source region with 1-based line/column, as Lark's `Meta` gives it."""

    path: str
    line: int
    col: int
    end_line: int
    end_col: int

    @staticmethod
    def of(meta: object, path: str) -> Span:
        if getattr(meta, "empty", True):
            return Span(path, 1, 1, 1, 1)
        return Span(path, meta.line, meta.column, meta.end_line, meta.end_column)  # type: ignore[attr-defined]

    @staticmethod
    def point(path: str, line: int, col: int, width: int = 1) -> Span:
        return Span(path, line, col, line, col + max(width, 1))


NOSPAN = Span("<generated>", 1, 1, 1, 1)


class Severity(Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One message about the spec, tied to a span of its text."""

    severity: Severity
    message: str
    span: Span
    hint: str = ""

    def render(self, source: str) -> str:
        return render_diagnostic(self, source)


def describe_char(ch: str) -> str:
    """A character as a diagnostic names it: shown when printable, always with its code point and name."""
    name = unicodedata.name(ch, "")
    code = f"U+{ord(ch):04X}" + (f" {name}" if name else "")
    return f"`{ch}` ({code})" if ch.isprintable() and not ch.isspace() else code


def _displayable(line: str) -> str:
    # Tabs become one space and control characters `?`, so the caret columns (which count characters,
    # as Lark does) stay aligned with what the terminal shows.
    return "".join(" " if c == "\t" else "?" if not c.isprintable() else c for c in line)


def render_diagnostic(diag: Diagnostic, source: str) -> str:
    """`path:line:col: error: msg`, the source line, a caret underline of the span, and a hint."""
    sp = diag.span
    # Lark counts lines by "\n" only; `str.splitlines` would also split at form feeds, U+2028 and
    # others (which may sit in comments), and then show the wrong line.
    lines = [ln.removesuffix("\r") for ln in source.split("\n")]
    line_no = min(max(sp.line, 1), len(lines))
    text = _displayable(lines[line_no - 1])
    start = max(sp.col, 1)
    end = sp.end_col if sp.end_line == sp.line else len(text) + 1
    width = max(end - start, 1)
    gutter = " " * len(str(line_no))
    out = [
        f"{sp.path}:{sp.line}:{sp.col}: {diag.severity.value}: {diag.message}",
        f"{gutter} |",
        f"{line_no} | {text}",
        f"{gutter} | {' ' * (start - 1)}{'^' * width}",
    ]
    if diag.hint:
        out.append(f"{gutter} = hint: {diag.hint}")
    return "\n".join(out)


class SpecError(Exception):
    """A spec the compiler rejects; carries every diagnostic found, sorted by position."""

    def __init__(self, diagnostics: Iterable[Diagnostic], source: str) -> None:
        diags = sorted(diagnostics, key=lambda d: (d.span.line, d.span.col))
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diags[:MAX_DIAGNOSTICS])
        self.truncated = max(len(diags) - MAX_DIAGNOSTICS, 0)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        parts = [d.render(self.source) for d in self.diagnostics]
        errors = sum(d.severity is Severity.ERROR for d in self.diagnostics) + self.truncated
        if self.truncated:
            parts.append(f"... and {self.truncated} more")
        parts.append(f"{errors} error{'s' if errors != 1 else ''} in {self.diagnostics[0].span.path}")
        return "\n\n".join(parts[:-1]) + "\n" + parts[-1]


class InternalError(Exception):
    """A bug in recurgen, not in the spec: reported with the stage where it happened."""

    def __init__(self, stage: str, message: str, spec: str = "") -> None:
        self.stage, self.detail, self.spec = stage, message, spec
        where = f" while compiling {spec}" if spec else ""
        super().__init__(f"internal error in stage `{stage}`{where} (this is a recurgen bug): {message}")


@dataclass(slots=True)
class Reporter:
    """Collects diagnostics during one stage; `raise_if_errors` ends the stage."""

    source: str
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(self, span: Span, message: str, hint: str = "") -> None:
        self.diagnostics.append(Diagnostic(Severity.ERROR, message, span, hint))

    def warning(self, span: Span, message: str, hint: str = "") -> None:
        self.diagnostics.append(Diagnostic(Severity.WARNING, message, span, hint))

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.diagnostics)

    def raise_if_errors(self) -> None:
        if self.has_errors:
            raise SpecError([d for d in self.diagnostics if d.severity is Severity.ERROR], self.source)

    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity is Severity.WARNING)
