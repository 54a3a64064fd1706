"""Make Triton's CPU interpreter (TRITON_INTERPRET=1) faster without changing a single computed bit.

Every kernel test and numerics cell here runs in the interpreter, and two of its costs are pure overhead:

- **Device-function calls re-patch `triton.language`.** Each call of a `@triton.jit` helper from inside a
  kernel runs `_patch_lang` again (an `inspect.getmembers` walk of `tl`, `tl.core`, `tl.math` and
  `tl.tensor`, about 2.6 ms), although the kernel's launch has already patched those very modules. The
  chunk kernels call small load helpers tens of times per program: a quarter of a gla forward.
- **Scans with a custom combine function walk elements one at a time.** The interpreter's generic scan
  calls the combine function once per element with 0-d tensors; the combine functions are elementwise, so
  calling them once per position along the scan axis, on the whole slice, does the same operations in the
  same order on every element (each output is still the left-to-right fold). For a [64, 8] scan that is 63
  calls instead of 504: most of a scan-family cell.

`speed_up()` installs both, once per process, and only on the Triton versions whose internals it was
checked against (the functions it replaces must exist with the expected names); otherwise it does nothing
and says why. `tests/testing/test_interpreter.py` checks bit-equality against the stock interpreter.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import numpy as np

from recurgen import config

_INSTALLED: list[str] = []


def speed_up() -> str:
    """Install the two speed-ups (idempotent). Returns what was done, or why nothing was.

    RECURGEN_STOCK_INTERPRETER=1 leaves the interpreter as it is (to compare against it, or to rule us out).
    """
    if _INSTALLED:
        return _INSTALLED[0]
    if not config.interpreting():
        return "not interpreting (TRITON_INTERPRET is not set): nothing to speed up"
    if os.environ.get("RECURGEN_STOCK_INTERPRETER", "0") not in ("", "0"):
        return "RECURGEN_STOCK_INTERPRETER is set: the interpreter is left as it is"
    from triton.runtime import interpreter as itp

    missing = [name for name in ("_patch_lang", "ScanOps", "GridExecutor", "InterpretedFunction")
               if not hasattr(itp, name)]
    if missing or not hasattr(itp.ScanOps, "generic_scan"):
        return f"this Triton's interpreter lacks {missing or ['ScanOps.generic_scan']}: left as it is"
    original = itp._patch_lang
    itp._patch_lang = _patch_lang_once(original)
    itp.ScanOps.generic_scan = _slice_scan
    _INSTALLED.append("interpreter sped up: device calls reuse the launch's patches; scans combine whole slices")
    return _INSTALLED[0]


class _Unchanged:
    """The scope a device call gets when it had nothing left to patch."""

    def restore(self) -> None:
        return None


class _Launch:
    """The scope of a kernel launch: restores the launch's patches and ends the 'already patched' window."""

    def __init__(self, scope: Any, langs: set[int], active: list[set[int]]) -> None:
        self._scope, self._active = scope, active
        active.append(langs)

    def restore(self) -> None:
        self._active.pop()
        self._scope.restore()


def _patch_lang_once(original: Any) -> Any:
    from triton import language as tl

    active: list[set[int]] = []  # the language modules patched since the running launch began

    def patch(fn: Any) -> Any:
        langs = {id(v) for v in fn.__globals__.values() if inspect.ismodule(v) and v in (tl, tl.core)}
        if not active:  # a launch (device calls only happen inside one): patch, and remember what
            return _Launch(original(fn), langs, active)
        if langs <= active[-1]:  # a device call whose modules are already patched
            return _Unchanged()
        # A helper seeing another language module (tl.sum & co. see `core`): patch as the interpreter would.
        # The interpreter never restores a device call's patches, so they hold for the rest of the launch.
        active[-1] |= langs
        return original(fn)

    return patch


def _slice_scan(self: Any, input: Any) -> list[Any]:  # noqa: A002  (the name the interpreter passes)
    """The interpreter's generic scan, one combine call per position along the axis instead of per element.

    Same arithmetic as `ScanOps.generic_scan`: out[0] = x[0], out[i] = combine(out[i-1], x[i]) elementwise,
    in the inputs' dtypes.
    """
    datas = [arg.handle.data for arg in input]
    axis, n = self.axis, datas[0].shape[self.axis]
    outs = [np.zeros(d.shape, dtype=d.dtype) for d in datas]

    def at(i: int) -> tuple[Any, ...]:  # position i along the axis (every input has the same shape)
        return (*(slice(None),) * axis, i)

    for out, d in zip(outs, datas, strict=True):
        out[at(0)] = d[at(0)]
    shape = np.shape(outs[0][at(0)])
    for i in range(1, n):
        acc = tuple(self.to_tensor(o[at(i - 1)], arg.dtype) for o, arg in zip(outs, input, strict=True))
        cur = tuple(self.to_tensor(d[at(i)], arg.dtype) for d, arg in zip(datas, input, strict=True))
        ret = self.combine_fn.fn(*acc, *cur)
        ret = ret if isinstance(ret, tuple) else (ret,)
        for out, value in zip(outs, ret, strict=True):
            data = np.asarray(value.handle.data if hasattr(value, "handle") else value)
            # 0-d slices come back as 1-element arrays, constants as scalars: fit either to the slot
            out[at(i)] = data.reshape(shape) if data.size == int(np.prod(shape)) else np.broadcast_to(data, shape)
    return [self.to_tensor(o, arg.dtype) for o, arg in zip(outs, input, strict=True)]
