"""running_max: recognise `update m = max(a + m, b)`, a state that is affine in the max-plus semiring.

xLSTM keeps its exponential input gate finite with such a state: `m_t = max(log f_t + m_{t-1}, i_t)`, and
carries `C_t exp(-m_t)` instead of `C_t`, so `C`'s update reads `m` in its coefficients. `m` is not affine
in the usual sense (`max` is not linear), but it is in (max, +): its transitions compose like affine maps,
`(a2, b2) ∘ (a1, b1) = (a1 + a2, max(a2 + b1, b2))`, and its whole sequence depends on inputs only. So the
other states may read it as if it were an input; that is what keeps them affine in themselves.
"""

from __future__ import annotations

from .. import ir
from ..errors import Span
from ..ir import Op
from . import exprs as X
from .affine import NotAffine, split, state_key
from .result import RunningMax

HINT = ("a running max has the form `update m = max(a + m, b)`, where `a` and `b` read only inputs, params, "
        "consts and options (xLSTM's stabiliser: `update m = max(logsigmoid(fg) + m, ig)`)")


class NotRunningMax(Exception):
    """The update has the shape `max(...)` of a running max but breaks one of its rules."""

    def __init__(self, span: Span, message: str) -> None:
        super().__init__(message)
        self.span, self.message, self.hint = span, message, HINT


def _reads_state(e: ir.Expr) -> bool:
    return any(isinstance(n, ir.Var) and state_key(n) is not None for n in ir.walk(e))


def _shift(e: ir.Expr, state: str) -> tuple[bool, ir.Expr | None]:
    """(True, a) when `e` is `a + m` (`m`, `m + a`, `m - c`, ...) with `a` state-free, else (False, None)."""
    try:
        aff = split(e)
    except NotAffine:
        return False, None
    own = aff.part(state)
    if [k for k, _ in aff.parts] != [(state, False)] or own is None or not X.is_hole(own):
        return False, None
    return True, aff.offset


def match(update: ir.Update) -> RunningMax | None:
    """The running max `update` defines, or None when it is not written as `max(..., ...)` of its own state.

    Raises:
        NotRunningMax: a `max` over the state that is not `max(a + m, b)` with state-free `a`, `b`.
    """
    e, state = update.value, update.state
    if not (isinstance(e, ir.Apply) and e.op is Op.MAX) or not any(
            isinstance(n, ir.Var) and n.name == state and n.kind is ir.Kind.STATE for n in ir.walk(e)):
        return None
    x, y = e.args
    for carried, floor in ((x, y), (y, x)):
        ok, shift = _shift(carried, state)
        if ok and not _reads_state(floor):
            break
    else:
        raise NotRunningMax(e.span, f"`{update.state}`'s update takes a max that reads a state, but is not a running "
                            f"max: one argument must be `{state}` plus a state-free term, the other state-free")
    if update.loop is not None:
        raise NotRunningMax(update.span, f"a running max updates once per token: `{state}`'s update cannot loop "
                            f"over `{update.loop.var}`")
    ty = update.value.ty
    if ty.complex:
        raise NotRunningMax(update.span, f"a running max is real: `{state}` is complex")
    return RunningMax(shift, floor)
