"""torch_printer: IR expressions -> torch statements on `[B, H, *dims]` tensors (the CPU path).

The same step DAG the kernels compute, vectorised over batch and head; torch's autograd gives
its backward. Leading batch dims are covered by `...`, so a value with dims (K,) aligned to
(K, V) is `x[..., :, None]`, and a per-(batch, head) scalar becomes `x[..., None, None]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .. import ir
from ..errors import InternalError
from ..ir import Apply, Const, Expr, Kind, Op, Var, product_subscripts, reduced_axes

_MATH = {Op.NEG: "-{0}", Op.EXP: "math.exp({0})", Op.LOG: "math.log({0})", Op.SQRT: "math.sqrt({0})",
         Op.ABS: "abs({0})", Op.SIN: "math.sin({0})", Op.COS: "math.cos({0})"}
_ARITH = {Op.ADD: "+", Op.SUB: "-", Op.MUL: "*", Op.DIV: "/", Op.POW: "**"}


def _fold(e: Expr) -> str | None:
    """Python text of a constant real sub-expression (numbers only), or None."""
    if isinstance(e, Const):
        return repr(e.value) if isinstance(e.value, complex) else repr(float(e.value))
    if not isinstance(e, Apply) or e.ty.complex or e.ty.dims:
        return None
    parts = [_fold(a) for a in e.args]
    if not e.args or any(p is None for p in parts):
        return None
    if e.op in _ARITH:
        return f"({parts[0]} {_ARITH[e.op]} {parts[1]})"
    if e.op in _MATH:
        return f"({_MATH[e.op].format(parts[0])})"
    return None


_UNARY: dict[Op, str] = {
    Op.NEG: "-{0}", Op.EXP: "torch.exp({0})", Op.LOG: "torch.log({0})", Op.SIGMOID: "torch.sigmoid({0})",
    Op.LOGSIGMOID: "torch.nn.functional.logsigmoid({0})", Op.SOFTPLUS: "torch.nn.functional.softplus({0})",
    Op.SILU: "torch.nn.functional.silu({0})",
    Op.SQRT: "torch.sqrt({0})", Op.ABS: "torch.abs({0})", Op.TANH: "torch.tanh({0})",
    Op.SIN: "torch.sin({0})", Op.COS: "torch.cos({0})", Op.RELU: "torch.relu({0})",
    Op.RE: "torch.real({0})", Op.IM: "torch.imag({0})", Op.CONJ: "torch.conj({0})",
}


@dataclass
class TorchPrinter:
    leaves: Mapping[Expr, str]
    scalars: frozenset[str] = frozenset()  # leaf names that are Python numbers, not [B, H] tensors
    lines: list[str] = field(default_factory=list)
    names: dict[Expr, str] = field(default_factory=dict)
    _count: int = 0

    def _new(self, code: str) -> str:
        name = f"t{self._count}"
        self._count += 1
        self.lines.append(f"{name} = {code}")
        return name

    def _is_number(self, code: str) -> bool:
        if code in self.scalars:
            return True
        try:
            complex(code)
        except ValueError:
            return False
        return True

    def align(self, code: str, src: tuple[str, ...], dst: tuple[str, ...]) -> str:
        if src == dst or not dst or self._is_number(code):
            return code
        if not src:
            return f"{code}[..., {', '.join('None' for _ in dst)}]"
        if len(src) == len(dst) and src == dst[::-1]:
            return f"{code}.transpose(-1, -2)"
        kept = [d for d in dst if d in src]
        if kept != list(src):
            if len(src) == 2 and kept == list(src[::-1]):
                code, src = f"{code}.transpose(-1, -2)", src[::-1]
            else:
                raise InternalError("codegen", f"cannot align {src} to {dst}")
        return f"{code}[..., {', '.join(':' if d in src else 'None' for d in dst)}]"

    def value(self, e: Expr) -> str:
        if e in self.leaves:
            return self.leaves[e]
        if e in self.names:
            return self.names[e]
        folded = _fold(e)
        if folded is not None:
            out = folded
            self.scalars = self.scalars | {out}
        elif isinstance(e, Var):
            if e.kind is Kind.DIM:
                out = f"float(sz[{e.name!r}])"
            elif e.kind is Kind.HEAD:
                out = "_heads"
            elif e.kind is Kind.HEADS:
                out = "float(H)"
            else:
                raise InternalError("codegen", f"no value for {e.kind.value} `{e.name}`")
        elif e.op is Op.RENAME:  # the same tensor, dims renamed
            out = self.value(e.args[0])
        else:
            out = self._apply(e)
        self.names[e] = out
        return out

    def _apply(self, e: Apply) -> str:
        op, dims, args = e.op, e.ty.dims, e.args
        if op is Op.EYE:
            return self._new(f"torch.eye(sz[{ir.base_dim(e.attr)!r}], dtype=_dtype, device=_device)")
        if op is Op.INDEX:
            base = self.value(args[0])
            return self._new(f"{base}.select({-len(args[0].ty.dims)}, {e.attr})")  # any leading dims
        if op is Op.EMBED:  # the adjoint of INDEX: `g` in row `attr` of a new first dim, zeros elsewhere
            g, n = self.value(args[0]), len(args[0].ty.dims)
            return self._new(f"torch.stack([{g} if _i == {e.attr} else torch.zeros_like({g}) "
                             f"for _i in range(sz[{ir.base_dim(dims[0])!r}])], dim={-1 - n})")
        vals = [self.value(a) for a in args]
        if op in _UNARY:
            return self._new(_UNARY[op].format(vals[0]))
        if op in (Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.POW, Op.MAX, Op.MIN, Op.COMPLEX):
            a, b = (self.align(v, x.ty.dims, dims) for v, x in zip(vals, args, strict=True))
            if op is Op.MAX:
                return self._new(f"_maximum({a}, {b})")
            if op is Op.MIN:
                return self._new(f"_minimum({a}, {b})")
            if op is Op.COMPLEX:
                return self._new(f"_complex({a}, {b})")
            return self._new(f"{a} {op.value} {b}")
        if op in (Op.MATMUL, Op.OUTER, Op.TENSORDOT):
            return self._new(f"_einsum({product_subscripts(e)!r}, {vals[0]}, {vals[1]})")
        if op is Op.DIAG:
            return self._new(f"torch.diag_embed({vals[0]})")
        if op is Op.TRANSPOSE:
            return self._new(f"{vals[0]}.transpose(-1, -2)")
        src = args[0].ty.dims
        if op in (Op.SUM, Op.AMAX):
            if not src:
                return vals[0]
            axes = tuple(a - len(src) for a in reduced_axes(e))
            return self._new(f"{vals[0]}.{'sum' if op is Op.SUM else 'amax'}(dim={axes})")
        if op is Op.NORM:
            axes = tuple(range(-len(src), 0))
            return self._new(f"{vals[0]}.abs().square().sum(dim={axes}).sqrt()" if src else f"{vals[0]}.abs()")
        if op is Op.NORMALIZE:
            return self._new(f"{vals[0]} / {vals[0]}.abs().square().sum(dim=-1, keepdim=True).sqrt()")
        raise InternalError("codegen", f"no torch form for {op.value}")
