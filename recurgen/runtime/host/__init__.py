"""host: the host code of every generated module, as real modules (linted, imported and tested like any other).

`codegen.render` copies their sections, verbatim, into the module it writes (templates/module.py.jinja places them
around the spec's own parts: its tables, kernels, launchers, torch step and chunk section), so a module written by
`recurgen compile -o` needs neither recurgen nor this package. A section is the text after a line `#: section NAME`
up to the next such line or the end of the file; what comes before a file's first section (its docstring and
imports) is not copied: the names it imports are the generated module's own globals there.

    common      constants, argument checks, tiling and launch helpers      (constants, helpers)
    ops         the fused recurrent kernels as differentiable custom ops   (ops)
    chunk_token the token kernels and the families between them, one op    (chunk_token: in the chunk section)
    running     chunk mode's running max (mLSTM) in kernels, one op         (chunk_running_max: in the chunk section)
    torch_path  the pure-torch path and the torch chunk families' loader   (torch_ops, torch_forward,
                                                                             chunk_torch_load, chunk_torch)
    carried     the loader of a module that carries chunk_torch            (chunk_torch_carried: runtime.standalone)
    api         the public call's argument handling                        (api)
    bound       what each generated module defines from its spec (never copied)
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

FILES = ("common", "ops", "chunk_token", "running", "torch_path", "carried", "api")
_MARK = re.compile(r"^#: section (\w+)\n", re.MULTILINE)


@cache
def sections() -> dict[str, str]:
    """Section name -> its source text (no leading or trailing blank lines), from the files of this package."""
    out: dict[str, str] = {}
    folder = Path(__file__).parent
    for name in FILES:
        text = (folder / f"{name}.py").read_text(encoding="utf-8")
        marks = list(_MARK.finditer(text))
        for mark, end in zip(marks, [*marks[1:], None], strict=True):
            body = text[mark.end(): end.start() if end is not None else len(text)]
            out[mark.group(1)] = body.strip("\n")
    return out
