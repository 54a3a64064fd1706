"""frontend: spec text, a path or a bundled name -> checked ir.Spec (the pipeline's parse and check stages).

For tools and tests that need the checked spec only; `recurgen.pipeline` composes the whole compiler.
"""

from __future__ import annotations

from pathlib import Path

from . import ir, pipeline
from .errors import Diagnostic
from .source import Source, resolve

__all__ = ["Source", "from_text", "load_source", "load_spec", "resolve"]


def load_source(src: Source, switches: dict[str, float] | None = None) -> tuple[ir.Spec, tuple[Diagnostic, ...]]:
    """Parse and check (in the variant `switches` selects); raises SpecError with every diagnostic."""
    return pipeline.front(src, switches)


def load_spec(spec: str | Path) -> tuple[ir.Spec, tuple[Diagnostic, ...]]:
    return load_source(resolve(spec))


def from_text(text: str, path: str = "<spec>") -> ir.Spec:
    return load_source(Source(text, path))[0]
