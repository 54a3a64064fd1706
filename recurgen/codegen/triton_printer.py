"""triton_printer: IR expressions -> straight-line Triton statements on register tiles.

A value with named dims (d1, d2) is a tile of shape [B_d1, B_d2]; scalars are scalars. Operands are
aligned by name (`x[:, None]`). Every reduction masks the padded lanes of the reduced dim, so values
in padding (where e.g. log(0) may live) never reach a valid lane. Complex values are (re, im) pairs:
Triton has no complex dtype. Structurally equal sub-expressions are computed once; sub-expressions
that depend on no token (params, consts, options) go to the prologue, before the time loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..errors import InternalError
from ..ir import Apply, Const, Expr, Kind, Op, Var, base_dim, reduced_axes

Val = str | tuple[str, str]  # a real tile's name, or a complex tile's (re, im) names

_UNARY_REAL: dict[Op, str] = {
    Op.EXP: "tl.exp({0})", Op.LOG: "tl.log({0})", Op.SIGMOID: "tl.sigmoid({0})",
    Op.SQRT: "tl.sqrt({0})", Op.ABS: "tl.abs({0})", Op.RELU: "tl.maximum({0}, 0.0)",
    Op.SOFTPLUS: "_softplus({0})", Op.LOGSIGMOID: "-_softplus(-{0})", Op.SILU: "{0} * tl.sigmoid({0})",
    Op.TANH: "2.0 * tl.sigmoid(2.0 * {0}) - 1.0", Op.SIN: "tl.sin({0})", Op.COS: "tl.cos({0})", Op.NEG: "-{0}",
    Op.STEP: "tl.where({0} >= 0, 1.0, 0.0)", Op.SIGN: "tl.where({0} > 0, 1.0, tl.where({0} < 0, -1.0, 0.0))",
}


@dataclass
class TritonPrinter:
    """Emits statements for expressions; `leaves` maps leaf expressions to existing tile names."""

    leaves: Mapping[Expr, Val]
    varying: Callable[[Expr], bool]  # True: depends on the token, goes to the body
    prefix: str = "b_t"
    # names the kernel already uses (`b_g3` is the tile of a spec input `g3`): never given to a temporary; the
    # leaves' own names are added
    reserved: frozenset[str] = frozenset()
    prologue: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    names: dict[Expr, Val] = field(default_factory=dict)
    _count: int = 0

    # --- plumbing ---------------------------------------------------------------------------
    def __post_init__(self) -> None:
        taken = {n for v in self.leaves.values() for n in ((v,) if isinstance(v, str) else v)}
        self.reserved = self.reserved | taken

    def _new(self, e: Expr, code: str) -> str:
        name = f"{self.prefix}{self._count}"
        while name in self.reserved:
            self._count += 1
            name = f"{self.prefix}{self._count}"
        self._count += 1
        dims = ", ".join(e.ty.dims)
        (self.body if self.varying(e) else self.prologue).append(f"{name} = {code}" + (f"  # [{dims}]"
                                                                                         if dims else ""))
        return name

    def _new_c(self, e: Expr, re_code: str, im_code: str) -> tuple[str, str]:
        return self._new(e, re_code), self._new(e, im_code)

    def value(self, e: Expr) -> Val:
        if e in self.leaves:
            return self.leaves[e]
        if e in self.names:
            return self.names[e]
        if isinstance(e, Const):
            v = e.value
            out: Val = (_lit(v.real), _lit(v.imag)) if isinstance(v, complex) else _lit(v)
        elif isinstance(e, Var):
            if e.kind is Kind.DIM:
                out = self._new(e, f"{e.name} * 1.0")
            elif e.kind is Kind.HEAD:
                out = self._new(e, "i_h * 1.0")
            elif e.kind is Kind.HEADS:
                out = self._new(e, "H * 1.0")
            else:
                raise InternalError("codegen", f"no tile for {e.kind.value} `{e.name}`")
        elif e.op is Op.RENAME:  # the same tile: an alias dim has its dim's lanes and mask
            out = self.value(e.args[0])
        else:
            out = self._apply(e)
        self.names[e] = out
        return out

    def real(self, e: Expr) -> str:
        v = self.value(e)
        assert isinstance(v, str), e
        return v

    def cplx(self, e: Expr) -> tuple[str, str]:
        v = self.value(e)
        return v if isinstance(v, tuple) else (v, "0.0")

    # --- alignment and masks ----------------------------------------------------------------
    @staticmethod
    def align(code: str, src: tuple[str, ...], dst: tuple[str, ...]) -> str:
        """Index `code` (dims `src`) so it broadcasts against dims `dst`."""
        if src == dst or not src or code in ("0.0", "1.0") or _is_lit(code):
            return code
        if len(src) == len(dst) and src == dst[::-1]:
            return f"tl.trans({code})"
        kept = [d for d in dst if d in src]
        if kept != list(src):
            if len(src) == 2 and kept == list(src[::-1]):
                code, src = f"tl.trans({code})", src[::-1]
            else:
                raise InternalError("codegen", f"cannot align {src} to {dst}")
        return f"{code}[{', '.join(':' if d in src else 'None' for d in dst)}]"

    @staticmethod
    def mask(dims: tuple[str, ...], which: tuple[int, ...] | None = None) -> str:
        """The validity mask over `dims` restricted to positions `which` (default all)."""
        which = tuple(range(len(dims))) if which is None else which
        parts = []
        for i in which:
            idx = ", ".join(":" if j == i else "None" for j in range(len(dims)))
            parts.append(f"m_{dims[i]}[{idx}]" if len(dims) > 1 else f"m_{dims[i]}")
        return " & ".join(parts) if parts else "True"

    @staticmethod
    def _row(dims: tuple[str, ...], pos: str) -> str:
        """True on row `pos` of the first dim of a tile over `dims`."""
        idx = ", ".join(":" if j == 0 else "None" for j in range(len(dims)))
        return f"o_{dims[0]}[{idx}] == {pos}" if len(dims) > 1 else f"o_{dims[0]} == {pos}"

    def _masked_sum(self, code: str, dims: tuple[str, ...], axes: tuple[int, ...]) -> str:
        """Sum `code` (dims) over `axes`, with padding lanes of those axes zeroed first."""
        out = f"tl.where({self.mask(dims, axes)}, {code}, 0.0)"
        for ax in sorted(axes, reverse=True):
            out = f"tl.sum({out}, axis={ax})"
        return out

    # --- operations -------------------------------------------------------------------------
    def _apply(self, e: Apply) -> Val:
        op = e.op
        if e.ty.complex or any(a.ty.complex for a in e.args):
            return self._apply_complex(e)
        dims = e.ty.dims
        if op in _UNARY_REAL:
            return self._new(e, _UNARY_REAL[op].format(self.real(e.args[0])))
        if op in (Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.MAX, Op.MIN):
            a, b = (self.align(self.real(x), x.ty.dims, dims) for x in e.args)
            if op in (Op.MAX, Op.MIN):
                return self._new(e, f"tl.{'maximum' if op is Op.MAX else 'minimum'}({a}, {b})")
            return self._new(e, f"{a} {op.value} {b}")
        if op is Op.POW:
            return self._new(e, self._pow(e))
        if op in (Op.MATMUL, Op.TENSORDOT):
            return self._new(e, self._matmul(self.real(e.args[0]), self.real(e.args[1]), e.args[0].ty.dims,
                                             e.args[1].ty.dims, int(e.attr) if op is Op.TENSORDOT else 1))
        if op is Op.OUTER:
            return self._new(e, self._outer(self.real(e.args[0]), self.real(e.args[1]), e.args[0].ty.dims,
                                            e.args[1].ty.dims))
        return self._new(e, self._structural(e, self.real(e.args[0]) if e.args else ""))

    def _structural(self, e: Apply, x: str) -> str:
        """Ops that only move or reduce values; shared by the real and complex paths."""
        op, dims = e.op, e.ty.dims
        src = e.args[0].ty.dims if e.args else ()
        if op is Op.EYE:
            d = dims[0]
            return f"tl.where(o_{d}[:, None] == o_{d}[None, :], 1.0, 0.0)"
        if op is Op.DIAG:
            d = dims[0]
            return f"tl.where(o_{d}[:, None] == o_{d}[None, :], {x}[:, None], 0.0)"
        if op is Op.DIAGONAL:
            d = src[0]
            return f"tl.sum(tl.where(o_{d}[:, None] == o_{d}[None, :], {x}, 0.0), axis=1)"
        if op is Op.TRANSPOSE:
            return f"tl.trans({x})"
        if op is Op.SUM:
            return self._masked_sum(x, src, reduced_axes(e)) if src else x
        if op is Op.BROADCAST:
            return f"tl.zeros([{', '.join(f'B{base_dim(d)}' for d in dims)}], dtype=tl.float32) + " \
                f"{self.align(x, src, dims)}"
        if op in (Op.INDEX, Op.EMBED) and x == "0.0":  # the imaginary part of a real value stays a literal
            return x
        if op is Op.INDEX:  # row `attr` of a computed tile (input slices `k[j]` are loaded as leaves instead)
            return self._masked_sum(f"tl.where({self._row(src, e.attr)}, {x}, 0.0)", src, (0,))
        if op is Op.EMBED:
            body = self.align(x, src, dims) if src else x
            return f"tl.where({self._row(dims, e.attr)}, {body}, 0.0)"
        if op is Op.AMAX:  # padding lanes hold -inf, never the max of a valid lane
            axes = reduced_axes(e)
            out = f"tl.where({self.mask(src, axes)}, {x}, float('-inf'))"
            for ax in sorted(axes, reverse=True):
                out = f"tl.max({out}, axis={ax})"
            return out
        if op is Op.NORM:
            return f"tl.sqrt({self._masked_sum(f'{x} * {x}', src, tuple(range(len(src))))})"
        if op is Op.NORMALIZE:
            return f"{x} / tl.sqrt({self._masked_sum(f'{x} * {x}', src, tuple(range(len(src))))})"
        raise InternalError("codegen", f"no Triton form for {op.value}")

    def _pow(self, e: Apply) -> str:
        x, c = e.args
        xs = self.align(self.real(x), x.ty.dims, e.ty.dims)
        if isinstance(c, Const) and not isinstance(c.value, complex):
            v = c.value
            if v == 2.0:
                return f"{xs} * {xs}"
            if v == 1.0:
                return xs
            if v == 0.5:
                return f"tl.sqrt({xs})"
            if v == -0.5:
                return f"1.0 / tl.sqrt({xs})"
            if v == -1.0:
                return f"1.0 / {xs}"
        return f"tl.exp({self.real(c)} * tl.log({xs}))"

    def _matmul(self, a: str, b: str, da: tuple[str, ...], db: tuple[str, ...], n: int = 1) -> str:
        """`a @ b` (n = 1) or a tensordot over n dims, positionally: the last n dims of a with the first n of b."""
        k = da[-1]
        if n == 1 and len(da) == 1 and len(db) == 1:
            return f"tl.sum(tl.where(m_{k}, {a} * {b}, 0.0), axis=0)"
        if n == 1 and len(da) == 1 and len(db) == 2:
            return f"tl.sum(tl.where(m_{k}[:, None], {a}[:, None] * {b}, 0.0), axis=0)"
        if n == 1 and len(da) == 2 and len(db) == 1:
            return f"tl.sum(tl.where(m_{k}[None, :], {a} * {b}[None, :], 0.0), axis=1)"
        if n == 1 and len(da) == 2 and len(db) == 2:
            return f"tl.sum(tl.where(m_{k}[None, :, None], {a}[:, :, None] * {b}[None, :, :], 0.0), axis=1)"
        # the general product (3-dim operands): both sides laid out over (a's free, shared, b's free) axes
        free_a, rank = len(da) - n, len(da) + len(db) - n
        ia = ", ".join(":" if i < len(da) else "None" for i in range(rank))
        ib = ", ".join(":" if i >= free_a else "None" for i in range(rank))
        shared = tuple(range(free_a, len(da)))
        prod = f"{a}[{ia}] * {b}[{ib}]"
        return self._masked_sum(prod, da + db[n:], shared)

    @staticmethod
    def _outer(a: str, b: str, da: tuple[str, ...], db: tuple[str, ...]) -> str:
        rank = len(da) + len(db)
        ia = ", ".join(":" if i < len(da) else "None" for i in range(rank))
        ib = ", ".join(":" if i >= len(da) else "None" for i in range(rank))
        return f"{a}[{ia}] * {b}[{ib}]"

    # --- complex ----------------------------------------------------------------------------
    def _apply_complex(self, e: Apply) -> Val:
        op, dims = e.op, e.ty.dims
        args = e.args
        if op is Op.RE:
            return self.cplx(args[0])[0]
        if op is Op.IM:
            return self.cplx(args[0])[1]
        if op is Op.ABS:
            r, i = self.cplx(args[0])
            return self._new(e, f"tl.sqrt({r} * {r} + {i} * {i})")
        if op is Op.COMPLEX:
            zero = f"tl.zeros([{', '.join(f'B{base_dim(d)}' for d in dims)}], dtype=tl.float32)"

            def part(x: Expr) -> str:
                if isinstance(x, Const) and x.value == 0.0:  # a real value made complex: no imaginary tile
                    return "0.0"
                code = self.real(x)  # a part with the value's dims is used as is (a [P, D] copy costs registers)
                return code if x.ty.dims == dims else self._new(e, f"{self.align(code, x.ty.dims, dims)} + {zero}")
            return part(args[0]), part(args[1])
        if op is Op.CONJ:  # negated where it is used, not into a tile of its own (a [P, D] tile costs registers)
            r, i = self.cplx(args[0])
            return r, "0.0" if i == "0.0" else f"(-{i})"
        if op is Op.NEG:
            r, i = self.cplx(args[0])
            return self._new_c(e, f"-{r}", f"-{i}")
        if op is Op.EXP:
            r, i = self.cplx(args[0])
            m = self._new(e, f"tl.exp({r})")
            return self._new_c(e, f"{m} * tl.cos({i})", f"{m} * tl.sin({i})")
        if op in (Op.ADD, Op.SUB, Op.MUL, Op.DIV):
            (ar, ai), (br, bi) = (self._aligned_c(x, dims) for x in args)
            s = op.value
            if op in (Op.ADD, Op.SUB):  # a real operand's imaginary part (0.0) is not printed
                return self._new_c(e, _combine(_nonzero(ar), s, _nonzero(br)), _combine(_nonzero(ai), s, _nonzero(bi)))
            if op is Op.MUL:
                return self._new_c(e, _combine(_times(ar, br), "-", _times(ai, bi)),
                                   _combine(_times(ar, bi), "+", _times(ai, br)))
            den = self._new(e, f"{br} * {br} + {bi} * {bi}")
            return self._new_c(e, f"({ar} * {br} + {ai} * {bi}) / {den}", f"({ai} * {br} - {ar} * {bi}) / {den}")
        if op in (Op.MATMUL, Op.OUTER, Op.TENSORDOT):
            (ar, ai), (br, bi) = self.cplx(args[0]), self.cplx(args[1])
            da, db = args[0].ty.dims, args[1].ty.dims
            n = int(e.attr) if op is Op.TENSORDOT else 1

            def prod(x: str, y: str) -> str | None:
                if "0.0" in (x, y):  # an imaginary part of a real operand: the term vanishes
                    return None
                return self._outer(x, y, da, db) if op is Op.OUTER else self._matmul(x, y, da, db, n)
            return self._new_c(e, _combine(prod(ar, br), "-", prod(ai, bi)),
                               _combine(prod(ar, bi), "+", prod(ai, br)))
        if op in (Op.TRANSPOSE, Op.SUM, Op.BROADCAST, Op.DIAG, Op.DIAGONAL, Op.INDEX, Op.EMBED):
            r, i = self.cplx(args[0])
            return self._new_c(e, self._structural(e, r), self._structural(e, i))
        if op is Op.POW and isinstance(args[1], Const) and args[1].value == 2.0:
            return self._apply_complex(Apply(Op.MUL, (args[0], args[0]), e.ty))
        raise InternalError("codegen", f"`{op.value}` of a complex value has no kernel form yet")

    def _aligned_c(self, x: Expr, dims: tuple[str, ...]) -> tuple[str, str]:
        r, i = self.cplx(x)
        return self.align(r, x.ty.dims, dims), self.align(i, x.ty.dims, dims)


def _nonzero(x: str) -> str | None:
    return None if x == "0.0" else x


def _times(x: str, y: str) -> str | None:
    """`x * y`, or None when a factor is the literal 0.0 (the imaginary part of a real operand)."""
    return None if "0.0" in (x, y) else f"{x} * {y}"


def _combine(a: str | None, sign: str, b: str | None) -> str:
    if a is None and b is None:
        return "0.0"
    if b is None:
        return a  # type: ignore[return-value]
    if a is None:
        return f"-({b})" if sign == "-" else b
    return f"{a} {sign} {b}"


def _lit(v: float) -> str:
    if math.isinf(v):
        return "float('inf')" if v > 0 else "float('-inf')"
    return repr(float(v))


def _is_lit(code: str) -> bool:
    try:
        float(code)
    except ValueError:
        return False
    return True
