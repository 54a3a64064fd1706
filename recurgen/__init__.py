"""recurgen: a compiler for linear recurrences.

    import recurgen
    gla = recurgen.load("gla")
    o, final_state = gla(q, k, v, g, output_final_state=True)
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import Recurrence, compile, load, reference
from .errors import InternalError, SpecError

__all__ = ["InternalError", "Recurrence", "SpecError", "__version__", "compile", "load", "reference"]
