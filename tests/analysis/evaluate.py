"""A tiny evaluator of IR expressions on named-dim tensors, for checking derived expressions numerically.

Independent of recurgen.oracle on purpose: the analysis builds new expressions (decays, Householder
matrices, adjoints, with hole placeholders) and the tests evaluate them against the spec's own
expressions for one (batch, head, token), with no batch dims.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from recurgen import ir
from recurgen.ir import Kind, Op

Val = tuple[torch.Tensor, tuple[str, ...]]

_UNARY = {
    Op.NEG: torch.neg, Op.EXP: torch.exp, Op.LOG: torch.log, Op.SIGMOID: torch.sigmoid,
    Op.LOGSIGMOID: F.logsigmoid, Op.SOFTPLUS: F.softplus, Op.SILU: F.silu, Op.SQRT: torch.sqrt,
    Op.ABS: torch.abs, Op.TANH: torch.tanh, Op.SIN: torch.sin, Op.COS: torch.cos, Op.RELU: torch.relu,
    Op.RE: torch.real, Op.IM: torch.imag,
    Op.CONJ: torch.conj,
}
_BINARY = {
    Op.ADD: torch.add, Op.SUB: torch.sub, Op.MUL: torch.mul, Op.DIV: torch.div, Op.POW: torch.pow,
    Op.MAX: torch.maximum, Op.MIN: torch.minimum,
}


def _align(v: Val, target: tuple[str, ...]) -> torch.Tensor:
    x, dims = v
    perm = [dims.index(d) for d in target if d in dims]
    x = x.permute(*perm) if perm else x
    shape, it = [], iter(x.shape)
    for d in target:
        shape.append(next(it) if d in dims else 1)
    return x.reshape(shape)


def _to(v: Val, dims: tuple[str, ...]) -> Val:
    """Permute a value to the dim order its IR type declares (same set of dims)."""
    x, have = v
    if have == dims or set(have) != set(dims):
        return v
    return x.permute(*[have.index(d) for d in dims]), dims


def _promote(*xs: torch.Tensor) -> list[torch.Tensor]:
    if any(x.is_complex() for x in xs):
        return [x if x.is_complex() else x.to(torch.complex128) for x in xs]
    return list(xs)


def evaluate(e: ir.Expr, env: Mapping[str, torch.Tensor | int], sizes: Mapping[str, int]) -> Val:
    """Evaluate `e`; `env` maps var names (and the hole `□`, loop vars) to values."""
    if isinstance(e, ir.Const):
        dt = torch.complex128 if isinstance(e.value, complex) else torch.float64
        return torch.tensor(e.value, dtype=dt), ()
    if isinstance(e, ir.Var):
        if e.kind is Kind.DIM:
            return torch.tensor(float(sizes[e.name]), dtype=torch.float64), ()
        val = env[e.name]
        assert isinstance(val, torch.Tensor)
        return val, e.ty.dims
    op, a = e.op, e.args
    if op is Op.EYE:
        return torch.eye(sizes[e.attr], dtype=torch.float64), e.ty.dims
    if op is Op.INDEX:
        x, dims = evaluate(a[0], env, sizes)
        idx = a[1]
        pos = int(env[idx.name]) if isinstance(idx, ir.Var) else int(e.attr)
        return x[pos], dims[1:]
    if op in _BINARY or op is Op.COMPLEX:
        va, vb = evaluate(a[0], env, sizes), evaluate(a[1], env, sizes)
        if va[1] == vb[1] or not va[1] or not vb[1]:  # square matrices repeat a dim name: no alignment
            union = va[1] or vb[1]
            x, y = va[0], vb[0]
        else:
            union = va[1] + tuple(d for d in vb[1] if d not in va[1])
            x, y = _align(va, union), _align(vb, union)
        if op is Op.COMPLEX:
            x, y = torch.broadcast_tensors(x, y)
            return _to((torch.complex(x, y), union), e.ty.dims)
        x, y = _promote(x, y)
        return _to((_BINARY[op](x, y), union), e.ty.dims)
    if op in _UNARY:
        x, dims = evaluate(a[0], env, sizes)
        return _UNARY[op](x), dims
    vals = [evaluate(x, env, sizes) for x in a]
    if op is Op.MATMUL:
        (x, dx), (y, dy) = vals
        x, y = _promote(x, y)
        lhs = "ab"[: len(dx)] if len(dx) == 2 else "b"
        rhs = "bc" if len(dy) == 2 else "b"
        return torch.einsum(f"{lhs},{rhs}->{lhs[:-1] + rhs[1:]}", x, y), dx[:-1] + dy[1:]
    if op is Op.OUTER:
        (x, dx), (y, dy) = vals
        x, y = _promote(x, y)
        return torch.outer(x, y), dx + dy
    if op is Op.DIAG:
        return torch.diag(vals[0][0]), e.ty.dims
    if op is Op.TRANSPOSE:
        return vals[0][0].T, vals[0][1][::-1]
    if op is Op.SUM:
        x, dims = vals[0]
        if e.attr:
            return x.sum(dims.index(e.attr)), tuple(d for d in dims if d != e.attr)
        return x.sum(), ()
    if op is Op.NORM:
        return vals[0][0].abs().square().sum().sqrt(), ()
    if op is Op.NORMALIZE:
        x = vals[0][0]
        return x / x.abs().square().sum().sqrt(), vals[0][1]
    raise NotImplementedError(op)


def sample(t: ir.Tensor, sizes: Mapping[str, int], gen: torch.Generator) -> torch.Tensor:
    """A value inside the tensor's declared domain."""
    shape = [sizes[d] for d in t.ty.dims]
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    d = t.domain
    if d.logspace or (d.hi <= 0 and d.lo == -math.inf):
        x = -(u + 0.05)
    elif d.lo >= 0 and d.hi == math.inf:
        x = u + 0.05
    elif math.isfinite(d.lo) and math.isfinite(d.hi):
        x = d.lo + (d.hi - d.lo) * (0.05 + 0.9 * u)
    else:
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if d.normalized:
        x = x / x.square().sum(-1, keepdim=True).sqrt()
    if t.ty.complex:
        x = torch.complex(x, torch.randn(shape, generator=gen, dtype=torch.float64))
    return x


def environment(spec: ir.Spec, sizes: Mapping[str, int], seed: int = 0) -> dict[str, torch.Tensor | int]:
    """Random inputs and params, evaluated consts (head 0) and options at their defaults."""
    gen = torch.Generator().manual_seed(seed)
    env: dict[str, torch.Tensor | int] = {}
    for t in (*spec.inputs, *spec.params):
        env[t.name] = sample(t, sizes, gen)
    consts_env = {**env, "head": torch.tensor(0.0, dtype=torch.float64),
                  "H": torch.tensor(1.0, dtype=torch.float64)}
    for b in (*spec.consts, *spec.options):
        env[b.name] = evaluate(b.value, consts_env, sizes)[0]
        consts_env[b.name] = env[b.name]
    return env


def inner(x: torch.Tensor, y: torch.Tensor) -> float:
    """Re Σ conj(x) y: the real inner product PyTorch's complex gradients are adjoint for."""
    if x.is_complex() or y.is_complex():
        return float((x.to(torch.complex128).conj() * y.to(torch.complex128)).sum().real)
    return float((x * y).sum())
