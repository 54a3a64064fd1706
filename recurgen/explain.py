"""The `recurgen explain` report: the analysis' derived math, then what chunk mode generates from it."""

from __future__ import annotations

from .analysis.report import _line, explain
from .analysis.result import Analysis
from .codegen.chunk_plan import describe, plan_chunk


def explain_report(analysis: Analysis, path: str | None = None) -> str:
    lines = describe(plan_chunk(analysis))
    return explain(analysis, path) + "".join(_line("chunk mode" if i == 0 else "", ln) + "\n"
                                             for i, ln in enumerate(lines))
