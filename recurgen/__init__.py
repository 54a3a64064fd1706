"""recurgen: a compiler for linear recurrences.

    import recurgen
    gla = recurgen.load("gla")
    o, final_state = gla(q, k, v, g, output_final_state=True)
"""

from __future__ import annotations

from typing import Any

from .errors import InternalError, SpecError
from .version import __version__

__all__ = ["InternalError", "Recurrence", "SpecError", "__version__", "compile", "load", "reference"]
_API = ("Recurrence", "compile", "load", "reference")


def __getattr__(name: str) -> Any:
    # The API needs torch; `recurgen check` and the front end do not, so import it on first use.
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in ("distributed", "layers", "testing"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'recurgen' has no attribute {name!r}")
