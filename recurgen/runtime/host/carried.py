"""carried: how a module written by `recurgen compile -o` loads the chunk_torch source it carries.

runtime.standalone puts this section in place of `torch_path`'s `chunk_torch_load` and the source of
recurgen.runtime.chunk_torch in place of `_CHUNK_TORCH_SOURCE = None`: the module then imports nothing of recurgen.
"""

from __future__ import annotations

import importlib.util

#: section chunk_torch_carried
# The chunk families in plain torch (backend="torch"): a copy of recurgen.runtime.chunk_torch, carried here so that
# the torch backend never walks tokens for want of recurgen.
_CHUNK_TORCH_SOURCE = None


def _load_chunk_torch():
    """The carried source run as a private module (not in sys.modules: nothing else can import it by name)."""
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(f"{__name__}._chunk_torch", None))
    exec(compile(_CHUNK_TORCH_SOURCE, f"<{module.__name__}>", "exec"), module.__dict__)
    return module
