"""tidy: rendered source -> GeneratedModule (the last code generation stage, before the cache).

Trailing spaces go, values nothing reads are pruned (`prune`), long lines are folded inside their brackets
(`wrap`), and the result is parsed and compiled, so that a template bug is reported here as an internal error
rather than at import.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..errors import InternalError
from .prune import prune_unused
from .wrap import wrap_long_lines


@dataclass(frozen=True, slots=True)
class GeneratedModule:
    spec_name: str
    source: str
    fingerprint: str  # sha256 of the source


def tidy(spec_name: str, rendered: str) -> GeneratedModule:
    """The finished module of `rendered` (byte-for-byte deterministic).

    Raises:
        InternalError: the rendered code does not parse (a recurgen bug).
    """
    source = "\n".join(line.rstrip() for line in rendered.splitlines()) + "\n"
    try:
        source = wrap_long_lines(prune_unused(source))
        compile(source, f"<recurgen:{spec_name}>", "exec")  # from text: no Python-level AST to convert back
    except SyntaxError as err:
        lines = source.splitlines()
        bad = lines[err.lineno - 1] if err.lineno and err.lineno <= len(lines) else ""
        raise InternalError("render", f"generated code for `{spec_name}` does not parse at line {err.lineno}: "
                            f"{err.msg}\n    {bad}") from None
    return GeneratedModule(spec_name, source, hashlib.sha256(source.encode()).hexdigest())
