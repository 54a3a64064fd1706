"""The checker's reductions over a named dim: `sum(x, N)`, and `max`, `softmax`, `logsumexp` written out in their
stable forms. A mixin of `exprs.ExprChecks` (it uses the checker's `expr`, `_elementwise`, `_quote` and reporter)."""

from __future__ import annotations

from .. import ir
from .. import syntax as S
from ..ir import SCALAR, Kind, Op, Type
from .language import UNKNOWN, _fmt_shape, reduced_dim


class ReductionChecks:
    """Mixed into `exprs.ExprChecks`."""

    def _sum_over(self, e: S.Call) -> ir.Expr | None:
        """`sum(x, N)`: reduce one named dim."""
        x, d = self.expr(e.args[0]), e.args[1]
        if x is None:
            return None
        if isinstance(d, S.Name) and self._repeated(e, x, d):
            return None
        if not isinstance(d, S.Name) or d.name not in x.ty.dims:
            self.r.error(d.span, f"the second argument of `sum` must be one dim of "
                         f"{self._quote(e.args[0].span, 'the first')}, which has shape {_fmt_shape(x.ty.dims)}",
                         "e.g. `sum(C * h, N)` reduces the dim `N`")
            return None
        along = reduced_dim(x.ty.dims, d.name)
        dims = tuple(n for n in x.ty.dims if n != along)
        return ir.Apply(Op.SUM, (x,), Type(dims, x.ty.complex), along, e.span)

    def _repeated(self, e: S.Call, x: ir.Expr, d: S.Name) -> bool:
        """Report a reduction over a dim that `x` has twice with neither occurrence met by another operand (which
        one would be reduced?); True if reported."""
        if x.ty.dims.count(d.name) < 2:
            return False
        n = d.name
        self.r.error(d.span, f"`{e.func}(..., {n})` is ambiguous: {self._quote(e.args[0].span, 'its argument')} has "
                     f"shape {_fmt_shape(x.ty.dims)}, the dim `{n}` twice, and no operand with one `{n}` met either",
                     f"a block acts on a vector through a product: with `M: [{n}, {n}, D]` and `h: [{n}, D]`, "
                     f"`{e.func}(M * h, {n})` reduces the `{n}` that `h` meets (the last one of M)")
        return True

    def _reduction(self, e: S.Call) -> ir.Expr | None:
        """`max(x, N)`, `softmax(x, N)`, `logsumexp(x, N)` (along the dim N; without it, over every element).

        softmax and logsumexp are written out in the stable form, `m = max(x, N)`, `exp(x - m) / sum(exp(x - m), N)`
        and `m + log(sum(exp(x - m), N))`: no exp sees a positive argument, so large logits cannot overflow.
        """
        f = e.func
        example = f"`{f}(x, N)` along the dim N of x, `{f}(x)` over every element"
        if len(e.args) not in (1, 2):
            self.r.error(e.span, f"`{f}` takes 1 or 2 arguments, got {len(e.args)}", example)
            return None
        x = self.expr(e.args[0])
        if x is None:
            return None
        dim = e.args[1] if len(e.args) == 2 else None
        if isinstance(dim, S.Name) and self._repeated(e, x, dim):
            return None
        if f == "max" and isinstance(dim, S.Name) and dim.name not in x.ty.dims:  # a dim's size, as a number
            return self._elementwise(Op.MAX, x, ir.Var(dim.name, Kind.DIM, SCALAR, dim.span), e.span, f,
                                     (e.args[0].span, dim.span))
        if x.ty.complex:
            self.r.error(e.span, f"complex/real mixing: `{f}` takes real values, but "
                         f"{self._quote(e.args[0].span, 'its argument')} is complex", "take Re(...) or abs(...) first")
            return None
        if UNKNOWN in x.ty.dims:
            self.r.error(e.span, f"cannot infer the size of `I` in `{f}`", "write `I(K)` with its dimension")
            return None
        if not x.ty.dims:
            what = "itself" if f != "softmax" else "1"
            self.r.error(e.span, f"`{f}` of a scalar is {what}: {self._quote(e.args[0].span, 'its argument')} has "
                         "shape []", f"{f} reduces a vector or a matrix: {example}")
            return None
        if dim is not None and (not isinstance(dim, S.Name) or dim.name not in x.ty.dims):
            self.r.error(dim.span, f"the second argument of `{f}` must be one dim of "
                         f"{self._quote(e.args[0].span, 'the first')}, which has shape {_fmt_shape(x.ty.dims)}",
                         f"e.g. `{f}(x, {x.ty.dims[-1]})` reduces the dim `{x.ty.dims[-1]}`")
            return None
        along = reduced_dim(x.ty.dims, dim.name) if isinstance(dim, S.Name) else ""
        rest = Type(tuple(d for d in x.ty.dims if d != along) if along else ())
        m = ir.Apply(Op.AMAX, (x,), rest, along, e.span)
        if f == "max":
            return m
        z = ir.Apply(Op.EXP, (ir.Apply(Op.SUB, (x, m), x.ty, span=e.span),), x.ty, span=e.span)
        total = ir.Apply(Op.SUM, (z,), rest, along, e.span)
        if f == "softmax":
            return ir.Apply(Op.DIV, (z, total), x.ty, span=e.span)
        return ir.Apply(Op.ADD, (m, ir.Apply(Op.LOG, (total,), rest, span=e.span)), rest, span=e.span)
