"""pretty: IR expressions back to readable math (`S_t = diag(exp(g_t)) S_{t-1} + k_t v_tᵀ`).

Used by `recurgen explain`, by evidence strings and by diagnostics. The output is stable text: the
same expression always prints the same way (golden files depend on it).

Conventions: inputs carry the token subscript (`g_t`); in an update a state means its previous value
(`S_{t-1}`), in an output its new one (`S_t`), `prev(S)` is `S_{t-1}`; params, consts, options and
dims print bare. `a @ B` with a vector `a` is `aᵀ B`, `outer(a, b)` is `a bᵀ`, `*` is `·` when a side
is a scalar and `⊙` otherwise.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .. import ir
from ..ir import Kind, Op
from .exprs import HOLE

# Binding strength: juxtaposition (`A B`, `a bᵀ`) binds tighter than `·`, `⊙` and `/`, so
# `scale · q_tᵀ S_t` needs no brackets, while `(u ⊙ k_t) v_tᵀ` keeps them.
_SUM, _PROD, _JUX, _NEG, _POW, _ATOM = 1, 2, 3, 4, 5, 6
_FUNC = {Op.EXP: "exp", Op.LOG: "log", Op.SIGMOID: "sigmoid", Op.LOGSIGMOID: "logsigmoid",
         Op.SOFTPLUS: "softplus", Op.SILU: "silu", Op.SQRT: "sqrt", Op.TANH: "tanh", Op.SIN: "sin",
         Op.COS: "cos", Op.RELU: "relu",
         Op.RE: "Re", Op.IM: "Im", Op.CONJ: "conj", Op.NORMALIZE: "normalize", Op.DIAG: "diag",
         Op.MAX: "max", Op.MIN: "min"}
MINUS = "−"


@dataclass(frozen=True, slots=True)
class Style:
    """Which subscripts to print. `time=None` prints names bare (as the spec writes them)."""

    time: str | None = "t"  # the token of the inputs
    state_time: str | None = "t-1"  # what a bare state name means (update: t-1; output: t)
    loop: str = ""  # the loop variable of a `for` update: states are then the running value

    def sub(self, name: str, t: str | None, extra: str = "") -> str:
        idx = ",".join(x for x in (t or "", extra) if x)
        if not idx:
            return name
        return f"{name}_{idx}" if len(idx) == 1 else f"{name}_{{{idx}}}"


UPDATE = Style()
OUTPUT = Style(state_time="t")
PLAIN = Style(time=None, state_time=None)


def shift(t: str | None, by: int) -> str | None:
    """`t` moved by `by` tokens: shift('t', -1) == 't-1', shift('t-1', 1) == 't'."""
    if t is None or by == 0:
        return t
    m = re.fullmatch(r"(\w+?)([+-]\d+)?", t)
    if m is None:
        return f"{t}{by:+d}"
    n = int(m.group(2) or 0) + by
    return m.group(1) if n == 0 else f"{m.group(1)}{n:+d}"


def number(v: complex | float) -> str:
    if isinstance(v, complex):
        if v.real == 0:
            return "i" if v.imag == 1 else f"{number(v.imag)}i"
        return f"({number(v.real)} + {number(v.imag)}i)"
    if v == math.pi:
        return "π"
    if math.isinf(v):
        return "∞" if v > 0 else f"{MINUS}∞"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v)) if v >= 0 else f"{MINUS}{int(-v)}"
    text = f"{v:g}"
    return text.replace("-", MINUS)


BRACKET_SUMS, BRACKET_ALL = 2, 6  # `level` for pretty(): bracket a sum / anything that is not an atom


def pretty(e: ir.Expr, style: Style = UPDATE, level: int = 0) -> str:
    """Readable math for an IR expression, bracketed when it binds looser than `level`."""
    text, prec = _P(style).show(e)
    return f"({text})" if prec < level else text


class _P:
    def __init__(self, style: Style) -> None:
        self.st = style

    def paren(self, e: ir.Expr, level: int, right: bool = False) -> str:
        text, prec = self.show(e)
        # A right operand that starts with a minus gets brackets: `a − (−b)`, `a · (−b)`.
        return f"({text})" if prec < level or (right and text.startswith(MINUS)) else text

    def var(self, e: ir.Var) -> str:
        st = self.st
        if e.name == HOLE:
            return HOLE
        if e.kind is Kind.INPUT:
            return st.sub(e.name, st.time)
        if e.kind is Kind.STATE:
            return e.name if st.loop else st.sub(e.name, st.state_time)
        if e.kind is Kind.PREV_STATE:
            return st.sub(e.name, shift(st.time, -1) if st.time else None)
        if e.kind is Kind.OPTION and ir.is_hidden(e.name):  # the option behind `given(z)`: shown as written
            return f"given({e.name.removeprefix(ir.presence_option(''))})"
        return e.name

    def show(self, e: ir.Expr) -> tuple[str, int]:
        if isinstance(e, ir.Const):
            text = number(e.value)
            return text, (_NEG if text.startswith(MINUS) else _ATOM)
        if isinstance(e, ir.Var):
            return self.var(e), _ATOM
        return self.apply(e)

    def apply(self, e: ir.Apply) -> tuple[str, int]:
        op, a = e.op, e.args
        if op is Op.RENAME:  # the same values (a repeated dim's occurrence named apart)
            return self.show(a[0])
        if op is Op.ADD:
            return f"{self.paren(a[0], _SUM)} + {self.paren(a[1], _SUM + 1, True)}", _SUM
        if op is Op.SUB:
            return f"{self.paren(a[0], _SUM)} {MINUS} {self.paren(a[1], _SUM + 1, True)}", _SUM
        if op is Op.NEG:
            return f"{MINUS}{self.paren(a[0], _NEG)}", _NEG
        if op is Op.MUL:
            sym = "·" if not a[0].ty.dims or not a[1].ty.dims else "⊙"
            return f"{self.paren(a[0], _PROD)} {sym} {self.paren(a[1], _PROD + 1, True)}", _PROD
        if op is Op.DIV:
            return f"{self.paren(a[0], _PROD)} / {self.paren(a[1], _PROD + 1, True)}", _PROD
        if op is Op.POW:
            return f"{self.paren(a[0], _POW + 1)} ** {self.paren(a[1], _NEG)}", _POW
        if op is Op.MATMUL:
            return self.matmul(a[0], a[1]), _JUX
        if op is Op.OUTER:
            rhs = a[1]
            if isinstance(rhs, ir.Apply) and rhs.op is Op.MATMUL and len(rhs.args[0].ty.dims) == 1:
                return f"{self.paren(a[0], _JUX + 1)} ({self.matmul(rhs.args[0], rhs.args[1])})", _JUX
            return f"{self.paren(a[0], _JUX + 1)} {self.paren(rhs, _ATOM)}ᵀ", _JUX
        if op is Op.TRANSPOSE:
            return f"{self.paren(a[0], _ATOM)}ᵀ", _ATOM
        if op is Op.EYE:
            return "I", _ATOM
        if op is Op.INDEX:
            return self.index(e), _ATOM
        if op is Op.SUM:
            sub = f"_{ir.base_dim(e.attr)}" if e.attr else ""
            return f"Σ{sub}({self.show(a[0])[0]})", _ATOM
        if op is Op.AMAX:
            sub = f"_{e.attr}" if e.attr else ""
            return f"max{sub}({self.show(a[0])[0]})", _ATOM
        if op is Op.NORM:
            return f"‖{self.show(a[0])[0]}‖", _ATOM
        if op is Op.ABS:
            return f"|{self.show(a[0])[0]}|", _ATOM
        if op is Op.COMPLEX:
            return f"{self.paren(a[0], _SUM)} + i·{self.paren(a[1], _PROD + 1)}", _SUM
        name = _FUNC.get(op, op.value)
        return f"{name}({', '.join(self.show(x)[0] for x in a)})", _ATOM

    def matmul(self, x: ir.Expr, y: ir.Expr) -> str:
        lhs = f"{self.paren(x, _ATOM)}ᵀ" if len(x.ty.dims) == 1 else self.paren(x, _JUX)
        return f"{lhs} {self.paren(y, _JUX, True)}"

    def index(self, e: ir.Apply) -> str:
        base, idx = e.args
        pos = idx.name if isinstance(idx, ir.Var) else e.attr
        if isinstance(base, ir.Var) and base.kind is Kind.INPUT:
            return self.st.sub(base.name, self.st.time, pos)
        return f"{self.paren(base, _ATOM)}[{pos}]"
