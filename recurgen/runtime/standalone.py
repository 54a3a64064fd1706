"""standalone: a generated module that carries everything it imports from recurgen (for `recurgen compile`).

A module recurgen loads itself takes the chunk families in plain torch (the torch backend's chunk mode) from
`recurgen.runtime.chunk_torch` (host section `chunk_torch_load`); a module written out to be used without recurgen
gets host section `chunk_torch_carried` in its place, with that file's source in `_CHUNK_TORCH_SOURCE` (run into a
private module at import), so it imports nothing of recurgen and its torch chunk path never falls back to walking
tokens.
"""

from __future__ import annotations

from pathlib import Path

from .host import sections

_HOOK = "_CHUNK_TORCH_SOURCE = None\n"


def standalone(source: str) -> str:
    """`source` (a rendered module) loading recurgen.runtime.chunk_torch's source from `_CHUNK_TORCH_SOURCE`.

    Raises:
        ValueError: the module does not hold host section `chunk_torch_load` once (not rendered by this recurgen).
    """
    host = sections()
    load = host["chunk_torch_load"] + "\n"
    if source.count(load) != 1:
        raise ValueError("not a module rendered by this recurgen: no `_load_chunk_torch` of recurgen.runtime.host")
    carried = (Path(__file__).with_name("chunk_torch.py")).read_text(encoding="utf-8")
    # a raw triple-quoted string keeps the file readable; repr() if the text could end or break one
    text = f"r'''{carried}'''" if "'''" not in carried and not carried.rstrip("\n").endswith("\\") else repr(carried)
    loader = (host["chunk_torch_carried"] + "\n").replace(
        _HOOK, f"_CHUNK_TORCH_SOURCE = {text}  # recurgen.runtime.chunk_torch, carried\n")
    return source.replace(load, loader)
