"""format: IR -> canonical spec text (for generated-code headers and round trips)."""

from __future__ import annotations

from . import ir
from .ir import Apply, Const, Kind, Op, Var

_PREC = {Op.ADD: 1, Op.SUB: 1, Op.MUL: 2, Op.DIV: 2, Op.MATMUL: 2, Op.NEG: 3, Op.POW: 4}
_FUNCS = {Op.STEP: "step", Op.SIGN: "sign", Op.DIAGONAL: "diagonal", Op.BROADCAST: "broadcast"}


def _num(v: complex | float) -> str:
    if isinstance(v, complex):
        return f"{v.imag:g}j" if v.real == 0 else f"complex({v.real:g}, {v.imag:g})"
    return f"{int(v)}" if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def expr_text(e: ir.Expr, parent: int = 0) -> str:
    """Readable infix text; parenthesised only where precedence needs it."""
    if isinstance(e, Const):
        text = _num(e.value)
        return f"({text})" if parent >= 3 and text.startswith("-") else text
    if isinstance(e, Var):
        return f"prev({e.name})" if e.kind is Kind.PREV_STATE else e.name
    assert isinstance(e, Apply)
    op = e.op
    if op in _PREC:
        p = _PREC[op]
        if op is Op.NEG:
            text = f"-{expr_text(e.args[0], p)}"
        elif op is Op.POW:
            text = f"{expr_text(e.args[0], p + 1)} ** {expr_text(e.args[1], p)}"
        else:
            text = f"{expr_text(e.args[0], p)} {op.value} {expr_text(e.args[1], p + 1)}"
        return f"({text})" if p < parent else text
    if op is Op.RENAME:  # the same values: a repeated dim's occurrence named apart
        return expr_text(e.args[0], parent)
    if op is Op.EYE:
        return f"I({e.attr})" if e.attr and e.attr != "?" else "I"
    if op is Op.TRANSPOSE:
        return f"{expr_text(e.args[0], 5)}.T"
    if op is Op.INDEX:
        idx = e.args[1]
        return f"{expr_text(e.args[0], 5)}[{idx.name if isinstance(idx, Var) else e.attr}]"
    name = _FUNCS.get(op, op.value)
    args = [expr_text(a) for a in e.args]
    if op is Op.AMAX:
        name = "max"
    if op in (Op.SUM, Op.AMAX) and e.attr:
        args.append(ir.base_dim(e.attr))
    return f"{name}({', '.join(args)})"
