"""templating: the one Jinja environment every template of `templates/` is rendered with.

Shared by `render` (the module, the fused recurrent kernels, the chunk section) and `chunk_core` (the chunk
kernel families); `StrictUndefined` turns a name a template uses but was not handed into an error.
"""

from __future__ import annotations

import itertools
import os
from functools import cache

import jinja2

from .. import config
from ..resources import templates_dir


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        autoescape=False, bytecode_cache=_compiled_templates(),
    )
    env.filters["pyrepr"] = _pyrepr
    env.filters["pystr"] = _pystr
    env.filters["pylines"] = _pylines
    return env


def _compiled_templates() -> jinja2.BytecodeCache | None:
    """Compiling the templates is most of a cold render: Jinja keeps them compiled in the cache directory, each
    checked against its template's source when read. None (compile in memory) when the directory is not writable,
    since Jinja's write would then fail the render."""
    folder = config.cache_dir() / "templates"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(folder)) if os.access(folder, os.W_OK | os.X_OK) else None


def _pyrepr(x: object) -> str:
    """A Python literal for plain data (names were validated as identifiers; strings are escaped)."""
    if isinstance(x, list):
        x = tuple(x)
    return repr(x)


def _pystr(x: str | None, width: int = 100) -> str:
    """A string (or None) as a Python literal; a long one as adjacent literals folded at spaces (same value)."""
    if x is None or len(repr(x)) <= width:
        return repr(x)
    pieces = [x[i:j] for i, j in itertools.pairwise(_folds(x, width))]
    return "\n".join(["(", *(f"    {p!r}" for p in pieces), ")"])


def _pylines(items: list[str] | tuple[str, ...], width: int = 100) -> str:
    """A tuple of strings, one per line, each long one as adjacent literals folded at spaces (same value)."""
    if not items:
        return "()"
    out = ["("]
    for text in items:
        pieces = [text[i:j] for i, j in itertools.pairwise(_folds(text, width))]
        out += [f"    {p!r}" for p in pieces[:-1]] + [f"    {pieces[-1]!r},"]
    return "\n".join([*out, ")"])


def _folds(text: str, width: int) -> list[int]:
    """Cut positions of `text` (first 0, last len): after a space, every piece at most `width` long if it can be."""
    cuts = [0]
    while len(text) - cuts[-1] > width:
        space = text.rfind(" ", cuts[-1] + 1, cuts[-1] + width)
        if space < 0:
            break
        cuts.append(space + 1)
    return [*cuts, len(text)]
