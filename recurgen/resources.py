"""The one place that locates the shipped grammar, templates and bundled specs."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable


def grammar_text() -> str:
    return resources.files("recurgen._grammar").joinpath("recurgen.lark").read_text(encoding="utf-8")


def templates_dir() -> Traversable:
    return resources.files("recurgen._templates")


def specs_dir() -> Traversable:
    return resources.files("recurgen._specs")


def bundled_spec_names() -> tuple[str, ...]:
    return tuple(sorted(p.name[:-4] for p in specs_dir().iterdir() if p.name.endswith(".rec")))


def bundled_spec_text(name: str) -> str:
    return specs_dir().joinpath(f"{name}.rec").read_text(encoding="utf-8")
