"""The one place that locates the shipped grammar, templates and bundled specs."""

from __future__ import annotations

import contextlib
from importlib import resources
from importlib.abc import Traversable

from .config import cache_dir


def grammar_text() -> str:
    return resources.files("recurgen._grammar").joinpath("recurgen.lark").read_text(encoding="utf-8")


def grammar_tables() -> str:
    """Where Lark keeps the parser tables it builds from the grammar (it checks them against the grammar, its
    own version and Python's when it reads them, and rebuilds and rewrites them when they differ)."""
    root = cache_dir()
    with contextlib.suppress(OSError):  # unwritable: Lark builds the tables in memory, as without a cache
        root.mkdir(parents=True, exist_ok=True)
    return str(root / "grammar.lark")


def templates_dir() -> Traversable:
    return resources.files("recurgen._templates")


def specs_dir() -> Traversable:
    return resources.files("recurgen._specs")


def bundled_spec_names() -> tuple[str, ...]:
    return tuple(sorted(p.name[:-4] for p in specs_dir().iterdir() if p.name.endswith(".rec")))


def bundled_spec_text(name: str) -> str:
    return specs_dir().joinpath(f"{name}.rec").read_text(encoding="utf-8")
