"""split_dims: which state dims the two-sweep backward (codegen/sweeps.py) may split across programs, and how
many vectors of the split dim a sweep keeps live (its register pressure)."""

from __future__ import annotations

from .. import ir
from ..ir import Apply, Expr, Kind, Op, Var

_MIXING = (Op.NORM, Op.NORMALIZE, Op.DIAG, Op.EYE, Op.DIAGONAL, Op.TRANSPOSE, Op.MAX, Op.MIN, Op.AMAX,
           Op.TENSORDOT)


def _reduces_over(e: Expr, d: str, ops: tuple[Op, ...]) -> bool:
    for n in ir.walk(e):
        if isinstance(n, Apply) and n.op in ops:
            src = n.args[0].ty.dims if n.args else ()
            if n.op is Op.MATMUL:
                if src and src[-1] == d:
                    return True
            elif n.op is Op.SUM:
                if n.attr == d or (not n.attr and d in src):
                    return True
            elif d in src or d in n.ty.dims:
                return True
    return False


def _terms(e: Expr) -> list[Expr]:
    if isinstance(e, Apply) and e.op in (Op.ADD, Op.SUB):
        return _terms(e.args[0]) + _terms(e.args[1])
    if isinstance(e, Apply) and e.op is Op.NEG:
        return _terms(e.args[0])
    return [e]


def _per_tile(e: Expr, d: str, states: set[str]) -> bool:
    """Every additive term is a tile's part of a sum over `d`: it reads a state (or a state's cotangent, z or a)
    or it sums over `d`. A term of the outputs' cotangents alone would be counted once per tile."""
    def part(t: Expr) -> bool:
        return bool(ir.uses(t, {Kind.STATE})) or _reduces_over(t, d, (Op.SUM, Op.MATMUL)) or any(
            isinstance(n, Var) and n.name.startswith("∂") and n.name.lstrip("∂").removeprefix("z_")
            .removeprefix("a_") in states for n in ir.walk(t))
    return all(part(t) for t in _terms(e))


def _split_pressure(code: list[str], split: str | None) -> int:
    """How many statements of one sweep's step produce or load a vector of the split dim."""
    if split is None:
        return 0
    tag, load = f"# [{split}]", f"+ o_{split}, mask=m_{split}, other="
    return sum(line.endswith(tag) or (load in line and "tl.load(" in line) for line in "\n".join(code).splitlines())
