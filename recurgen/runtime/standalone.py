"""standalone: a generated module that carries everything it imports from recurgen (for `recurgen compile`).

A module recurgen loads itself takes the chunk families in plain torch (the torch backend's chunk mode) from
`recurgen.runtime.chunk_torch`; a module written out to be used without recurgen gets that file's source in its
`_CHUNK_TORCH_SOURCE` (run into a private module at import), so its torch chunk path never falls back to walking
tokens.
"""

from __future__ import annotations

from pathlib import Path

_HOOK = "_CHUNK_TORCH_SOURCE = None\n"


def standalone(source: str) -> str:
    """`source` (a rendered module) with recurgen.runtime.chunk_torch's source carried in `_CHUNK_TORCH_SOURCE`.

    Raises:
        ValueError: the module has no `_CHUNK_TORCH_SOURCE = None` line (not rendered by this recurgen).
    """
    if source.count(_HOOK) != 1:
        raise ValueError("not a module rendered by this recurgen: no `_CHUNK_TORCH_SOURCE = None` line")
    carried = (Path(__file__).with_name("chunk_torch.py")).read_text(encoding="utf-8")
    # a raw triple-quoted string keeps the file readable; repr() if the text could end or break one
    text = f"r'''{carried}'''" if "'''" not in carried and not carried.rstrip("\n").endswith("\\") else repr(carried)
    return source.replace(_HOOK, f"_CHUNK_TORCH_SOURCE = {text}  # recurgen.runtime.chunk_torch, carried\n")
