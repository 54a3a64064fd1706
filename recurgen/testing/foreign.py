"""foreign: check any function with a spec's public call (a hand-written kernel, fla's ops) against the spec's oracle.

A spec is the cheapest exact statement of what a kernel must compute; this lets the kernels recurgen did not
generate use the same checks (`checks.check_forward_backward`) as the ones it did. The function is called like a
generated module's public function: inputs and params by the spec's public names (keywords), then `scale` (when
the spec has it), `initial_state` (one state: a tensor; several: a tuple), `output_final_state` and, for packed
batches, `cu_seqlens`; it returns `(outputs, final_state)`. What it cannot do is not held against it, and is
reported as not checked:

- no `initial_state` parameter: it is run from zero states (the oracle too);
- no `output_final_state` parameter, or a final state of None: the final states are not compared;
- outputs that do not require grad (no backward): the gradients are not compared;
- no `cu_seqlens` parameter: packed (variable-length) cases are not drawn, and a given one is skipped.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recurgen import ir

_CALL_ARGS = ("initial_state", "output_final_state", "cu_seqlens")


@dataclass(frozen=True)
class Accepts:
    """Which of the public call's own arguments a function takes (by its signature; `**kwargs` takes all)."""

    initial_state: bool = True
    output_final_state: bool = True
    cu_seqlens: bool = True

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> Accepts:
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):  # a builtin or C extension: assume the full call
            return cls()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return cls()
        return cls(*(name in params for name in _CALL_ARGS))


@dataclass
class Subject:
    """A function wrapped to look like a compiled `Recurrence` to the checks: `.spec`, `.name`, a call.

    `module` is None: there are no generated kernels to re-tile. `unchecked` collects, across calls, what the
    function could not be checked for (see the module docstring).
    """

    fn: Callable[..., Any]
    spec: ir.Spec
    label: str = ""
    accepts: Accepts = field(default_factory=Accepts)
    module: Any = None

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, **kwargs: Any) -> tuple[Any, Any]:
        call = {k: v for k, v in kwargs.items() if k not in _CALL_ARGS or getattr(self.accepts, k)}
        h0 = call.get("initial_state")
        if isinstance(h0, (list, tuple)) and len(h0) == 1:  # one state: a tensor, as the generated modules take
            call["initial_state"] = h0[0]
        result = self.fn(**call)
        if isinstance(result, tuple) and len(result) == 2:
            return result
        return result, None  # outputs only


def subject(fn: Callable[..., Any], spec: Any, label: str = "") -> Subject:
    """Wrap `fn` to be checked against `spec` (an ir.Spec, a Recurrence, or a bundled name / .rec path)."""
    from recurgen.testing.strategies import _spec

    if not callable(fn):
        raise TypeError(f"expected a callable to check against `{spec}`, got {type(fn).__name__}")
    return Subject(fn, _spec(spec), label or getattr(fn, "__qualname__", repr(fn)), Accepts.of(fn))


def load_function(target: str) -> Callable[..., Any]:
    """`MODULE:FUNCTION` — an importable module (`pkg.mod:fn`) or a Python file (`path/to/file.py:fn`).

    Raises:
        ValueError: not of the form MODULE:FUNCTION, the module cannot be imported, or it has no such callable.
    """
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected MODULE:FUNCTION (a module name or a .py path, then the function), got `{target}`")
    try:
        if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise ValueError(f"no such file: `{module_name}`")
            from recurgen.runtime.cache import import_file

            module = import_file(f"recurgen_against.{path.stem}_{abs(hash(str(path.resolve()))):x}", path)
        else:
            module = importlib.import_module(module_name)
    except ValueError:
        raise
    except Exception as e:  # the user's module failed to import: say which and why, no traceback
        raise ValueError(f"cannot import `{module_name}`: {type(e).__name__}: {e}") from e
    fn: Any = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise ValueError(f"`{module_name}` has no `{attr}`")
    if not callable(fn):
        raise ValueError(f"`{target}` is a {type(fn).__name__}, not a function")
    return fn
