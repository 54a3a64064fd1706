"""symbolic: the elementwise part of IR expressions as sympy, with assumptions from value domains.

sympy is used only inside `recurgen.analysis` (STYLE.md 3.4): nothing here crosses the stage
boundary except printed strings and booleans.

* Each input or param becomes a real symbol whose assumptions come from its `ir.Domain`
  (`logdecay` -> nonpositive, `positive`, `unit` -> positive, `negative` ...), so sympy can prove
  `softplus(dt) * A <= 0` for Mamba's decay.
* Non-elementwise sub-expressions (`q @ S`, `sum(k * k)`, `norm(x)`) become opaque symbols named
  `[...]` after their text; `outer(a, b)` is elementwise `a * b` (entry (i, j) is a_i b_j).
* Size guard: expressions with more than `MAX_NODES` IR nodes are refused (`TooLarge`) before sympy
  sees them, so no analysis ever runs for minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import sympy as sp

from .. import ir
from ..ir import Kind, Op
from . import exprs as X
from .pretty import PLAIN, pretty

MAX_NODES = 256  # an IR expression larger than this is not handed to sympy


class TooLarge(Exception):
    """An expression above the sympy size guard."""


class Failed(Exception):
    """sympy could not handle an expression (e.g. `max` of values it cannot order)."""


# Activation functions as sympy Functions with their derivatives and signs, so derivatives print in
# the vocabulary of the spec (`sigmoid(x)`, not `exp(-x)/(1 + exp(-x))**2`).
class sigmoid(sp.Function):  # lower case: the class name is what sympy prints
    @classmethod
    def eval(cls, x: sp.Expr) -> sp.Expr | None:
        # Numbers evaluate to closed forms, so Max/Min of them stay comparable.
        return 1 / (1 + sp.exp(-x)) if x.is_Number else None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real

    def _eval_is_positive(self) -> bool | None:
        return True if self.args[0].is_real else None


class logsigmoid(sp.Function):
    @classmethod
    def eval(cls, x: sp.Expr) -> sp.Expr | None:
        return -sp.log(1 + sp.exp(-x)) if x.is_Number else None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sigmoid(-self.args[0])

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real

    def _eval_is_negative(self) -> bool | None:
        return True if self.args[0].is_real else None


class softplus(sp.Function):
    @classmethod
    def eval(cls, x: sp.Expr) -> sp.Expr | None:
        return sp.log(1 + sp.exp(x)) if x.is_Number else None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sigmoid(self.args[0])

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real

    def _eval_is_positive(self) -> bool | None:
        return True if self.args[0].is_real else None


class silu(sp.Function):
    @classmethod
    def eval(cls, x: sp.Expr) -> sp.Expr | None:
        return x / (1 + sp.exp(-x)) if x.is_Number else None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        x = self.args[0]
        return sigmoid(x) * (1 + x * (1 - sigmoid(x)))

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real


_UNARY = {
    Op.EXP: sp.exp, Op.LOG: sp.log, Op.SQRT: sp.sqrt, Op.ABS: sp.Abs, Op.TANH: sp.tanh, Op.SIN: sp.sin, Op.COS: sp.cos,
    Op.RE: sp.re,
    Op.IM: sp.im, Op.CONJ: sp.conjugate, Op.SIGMOID: sigmoid, Op.LOGSIGMOID: logsigmoid,
    Op.SOFTPLUS: softplus, Op.SILU: silu, Op.RELU: lambda x: sp.Max(x, 0), Op.NEG: lambda x: -x,
}
_BINARY = {
    Op.ADD: lambda a, b: a + b, Op.SUB: lambda a, b: a - b, Op.MUL: lambda a, b: a * b,
    Op.DIV: lambda a, b: a / b, Op.POW: lambda a, b: a ** b, Op.MAX: sp.Max, Op.MIN: sp.Min,
    Op.COMPLEX: lambda a, b: a + sp.I * b, Op.OUTER: lambda a, b: a * b,
}


def assumptions(dom: ir.Domain, is_complex: bool = False) -> dict[str, bool]:
    """sympy assumptions for a value in `dom` (real unless complex)."""
    if is_complex:
        return {"complex": True}
    out = {"real": True}
    if dom.logspace or dom.hi < 0 or (dom.hi == 0 and not dom.hi_open):
        out["nonpositive"] = True
    if dom.hi < 0 or (dom.hi == 0 and dom.hi_open):
        out["negative"] = True
    if dom.lo > 0 or (dom.lo == 0 and not dom.lo_open):
        out["nonnegative"] = True
    if dom.lo > 0 or (dom.lo == 0 and dom.lo_open):
        out["positive"] = True
    if math.isfinite(dom.lo) and math.isfinite(dom.hi):
        out["finite"] = True
    return out


@dataclass
class Converter:
    """IR -> sympy for one spec; remembers the opaque symbols it made (by their text)."""

    spec: ir.Spec
    opaque: dict[str, ir.Expr] = field(default_factory=dict)  # symbol name -> the IR it stands for

    def __call__(self, e: ir.Expr) -> sp.Expr:
        if X.size(e, MAX_NODES) > MAX_NODES:
            raise TooLarge(f"more than {MAX_NODES} nodes")
        try:
            return self.conv(e)
        except (ValueError, TypeError, ArithmeticError, RecursionError, AttributeError) as err:
            raise Failed(str(err)) from err

    def symbol(self, v: ir.Var) -> sp.Symbol:
        if v.kind in (Kind.INPUT, Kind.PARAM):
            t = self.spec.tensor(v.name)
            return sp.Symbol(v.name, **assumptions(t.domain, t.ty.complex))
        if v.kind is Kind.DIM or v.kind is Kind.HEADS:
            return sp.Symbol(v.name, integer=True, positive=True)
        if v.kind in (Kind.HEAD, Kind.LOOP):
            return sp.Symbol(v.name, integer=True, nonnegative=True)
        return sp.Symbol(v.name, **({"complex": True} if v.ty.complex else {"real": True}))

    def opaque_symbol(self, e: ir.Expr) -> sp.Symbol:
        name = f"[{pretty(e, PLAIN)}]"
        self.opaque[name] = e
        kw: dict[str, bool] = {"complex": True} if e.ty.complex else {"real": True}
        if isinstance(e, ir.Apply) and (e.op is Op.NORM or (e.op is Op.SUM and _is_square(e.args[0]))):
            kw["nonnegative"] = True
        return sp.Symbol(name, **kw)

    def conv(self, e: ir.Expr) -> sp.Expr:
        if isinstance(e, ir.Const):
            v = e.value
            if isinstance(v, complex):
                return _num(v.real) + sp.I * _num(v.imag)
            return sp.pi if v == math.pi else _num(v)
        if isinstance(e, ir.Var):
            return self.symbol(e)
        op, a = e.op, e.args
        if op is Op.INDEX and isinstance(a[0], ir.Var) and a[0].kind in (Kind.INPUT, Kind.PARAM):
            t = self.spec.tensor(a[0].name)
            pos = a[1].name if isinstance(a[1], ir.Var) else e.attr
            return sp.Symbol(f"{a[0].name}[{pos}]", **assumptions(t.domain, t.ty.complex))
        if op in _UNARY:
            return _UNARY[op](self.conv(a[0]))
        if op in _BINARY:
            return _BINARY[op](self.conv(a[0]), self.conv(a[1]))
        return self.opaque_symbol(e)


def _is_square(e: ir.Expr) -> bool:
    return isinstance(e, ir.Apply) and e.op is Op.MUL and e.args[0] == e.args[1] and not e.ty.complex


def _num(v: float) -> sp.Expr:
    return sp.Integer(int(v)) if v == int(v) and abs(v) < 1e15 else sp.Float(v)


def real_part_nonpositive(e: ir.Expr, spec: ir.Spec) -> bool | None:
    """Whether sympy can prove Re(e) <= 0 from the declared domains (None: too large to try)."""
    try:
        x = Converter(spec)(e)
        if e.ty.complex:
            x = sp.re(sp.expand_complex(x))
        return bool(x.is_nonpositive) or _below_a_max(x)
    except (TooLarge, Failed):
        return None
    except (ValueError, TypeError, ArithmeticError, RecursionError, AttributeError):
        return None


def _below_a_max(x: sp.Expr) -> bool:
    """`r − max(a, b, ...) <= 0` because `r <= a` or `r <= b` (xLSTM's stabilised gates: `x + m − max(x + m, i)`)."""
    if not isinstance(x, sp.Add):
        return False
    for term in x.args:
        if isinstance(term, sp.Mul) and term.args[0] == -1 and len(term.args) == 2 and isinstance(term.args[1], sp.Max):
            rest = x - term
            return any(bool((rest - a).is_nonpositive) for a in term.args[1].args)
    return False
