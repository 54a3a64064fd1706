"""reference: the oracle. Executes the IR literally, token by token, in float64 torch with autograd.

It shares nothing with the generated code: every later test compares kernels against it.
Layout follows flash-linear-attention: inputs `[B, T, H, *shape]`, params `[H, *shape]`,
states `[B, H, *shape]`, outputs `[B, T, H, *shape]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import ir
from .ir import Kind, Op

Value = torch.Tensor  # shape [B, H, *dims] (batch dims may be 1 for params and consts)
_N = 2  # number of leading batch dims: (batch, head)


@dataclass(frozen=True)
class Sizes:
    batch: int
    time: int
    heads: int
    dims: Mapping[str, int]


def infer_sizes(spec: ir.Spec, tensors: Mapping[str, torch.Tensor]) -> Sizes:
    """Read B, T, H and every named dim from the arguments; ValueError naming the argument on conflict."""
    dims: dict[str, int] = {d.name: d.size for d in spec.dims if d.size is not None}
    origin: dict[str, str] = {d.name: "its `dim` line" for d in spec.dims if d.size is not None}
    first = spec.inputs[0]
    x0 = tensors[first.name]
    if x0.dim() != 3 + len(first.ty.dims):
        raise ValueError(f"{spec.name}: `{first.name}` must have shape [B, T, H, {', '.join(first.ty.dims)}]"
                         .replace(", ]", "]") + f", got {list(x0.shape)}")
    B, T, H = x0.shape[:3]
    for t in (*spec.inputs, *spec.params):
        x = tensors[t.name]
        lead = (B, T, H) if t in spec.inputs else (H,)
        names = ("B", "T", "H") if t in spec.inputs else ("H",)
        expected = [*names, *t.ty.dims]
        if x.dim() != len(expected) or tuple(x.shape[: len(lead)]) != lead:
            raise ValueError(f"{spec.name}: `{t.name}` must have shape [{', '.join(expected)}] with "
                             f"{', '.join(f'{n}={v}' for n, v in zip(names, lead, strict=True))} (from "
                             f"`{first.name}`), got {list(x.shape)}")
        for name, size in zip(t.ty.dims, x.shape[len(lead):], strict=True):
            if name in dims and dims[name] != size:
                raise ValueError(f"{spec.name}: `{t.name}` has {name}={size} but {name}={dims[name]} "
                                 f"from {origin[name]}")
            dims.setdefault(name, int(size))
            origin.setdefault(name, f"`{t.name}`")
    return Sizes(int(B), int(T), int(H), dims)


class _Eval:
    def __init__(self, spec: ir.Spec, sizes: Sizes, dtype: torch.dtype, device: torch.device) -> None:
        self.spec, self.sizes, self.dtype, self.device = spec, sizes, dtype, device
        self.env: dict[tuple[str, Kind], Value] = {}
        self.loop_index: dict[str, int] = {}

    def align(self, x: Value, dims: tuple[str, ...], target: tuple[str, ...]) -> Value:
        """Permute and unsqueeze x (named dims `dims`) so it broadcasts against `target`."""
        if dims == target or not target:
            return x
        if not dims:
            return x.reshape(*x.shape[:_N], *([1] * len(target)))
        perm = [dims.index(d) + _N for d in target if d in dims]
        x = x.permute(0, 1, *perm)
        shape = list(x.shape[:_N])
        it = iter(x.shape[_N:])
        for d in target:
            shape.append(next(it) if d in dims else 1)
        return x.reshape(shape)

    def ev(self, e: ir.Expr) -> Value:
        if isinstance(e, ir.Const):
            dt = torch.complex128 if isinstance(e.value, complex) else self.dtype
            return torch.tensor(e.value, dtype=dt, device=self.device).reshape(1, 1)
        if isinstance(e, ir.Var):
            return self.var(e)
        return self.apply(e)

    def var(self, e: ir.Var) -> Value:
        if e.kind is Kind.DIM:
            return torch.tensor(float(self.sizes.dims[e.name]), dtype=self.dtype, device=self.device).reshape(1, 1)
        if e.kind is Kind.HEAD:
            return torch.arange(self.sizes.heads, dtype=self.dtype, device=self.device).reshape(1, -1)
        if e.kind is Kind.HEADS:
            return torch.tensor(float(self.sizes.heads), dtype=self.dtype, device=self.device).reshape(1, 1)
        if e.kind is Kind.LOOP:
            raise AssertionError("loop variables only appear as indices")
        return self.env[(e.name, e.kind)]

    def apply(self, e: ir.Apply) -> Value:
        op, dims = e.op, e.ty.dims
        if op is Op.EYE:
            n = self.sizes.dims[e.attr]
            return torch.eye(n, dtype=self.dtype, device=self.device).reshape(1, 1, n, n)
        if op is Op.INDEX:
            base = self.ev(e.args[0])
            idx = e.args[1]
            pos = self.loop_index[idx.name] if isinstance(idx, ir.Var) else int(e.attr)
            return base[:, :, pos]
        args = [self.ev(a) for a in e.args]
        if op in ir.ELEMENTWISE_BINARY:
            a = self.align(args[0], e.args[0].ty.dims, dims)
            b = self.align(args[1], e.args[1].ty.dims, dims)
            return _BINARY[op](a, b)
        if len(args) == 2 and args[0].is_complex() != args[1].is_complex():
            args = [a.to(torch.complex128) for a in args]
        x = args[0]
        if op in ir.ELEMENTWISE_UNARY:
            return _UNARY[op](x)
        if op is Op.MATMUL:
            la, lb = len(e.args[0].ty.dims), len(e.args[1].ty.dims)
            lhs = "ab"[:la] if la == 2 else "b"
            rhs = "bc" if lb == 2 else "b"
            out = (lhs[:-1] + rhs[1:])
            return torch.einsum(f"...{lhs},...{rhs}->...{out}", x, args[1])
        if op is Op.OUTER:
            return torch.einsum("...a,...b->...ab", x, args[1])
        if op is Op.DIAG:
            return torch.diag_embed(x)
        if op is Op.TRANSPOSE:
            return x.transpose(-1, -2)
        if op is Op.SUM:
            src = e.args[0].ty.dims
            if e.attr:
                return x.sum(dim=_N + src.index(e.attr))
            return x.sum(dim=tuple(range(_N, x.dim()))) if src else x
        if op is Op.NORM:
            src = e.args[0].ty.dims
            return x.abs().square().sum(dim=tuple(range(_N, x.dim()))).sqrt() if src else x.abs()
        if op is Op.NORMALIZE:
            return x / x.abs().square().sum(dim=-1, keepdim=True).sqrt()
        raise AssertionError(op)


def _complex(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = torch.broadcast_tensors(a, b)
    return torch.complex(a, b)


_UNARY = {
    Op.NEG: torch.neg, Op.EXP: torch.exp, Op.LOG: torch.log, Op.SIGMOID: torch.sigmoid,
    Op.LOGSIGMOID: F.logsigmoid, Op.SOFTPLUS: F.softplus, Op.SILU: F.silu, Op.SQRT: torch.sqrt,
    Op.ABS: torch.abs, Op.TANH: torch.tanh, Op.RELU: torch.relu, Op.RE: torch.real, Op.IM: torch.imag,
    Op.CONJ: torch.conj,
}
_BINARY = {
    Op.ADD: torch.add, Op.SUB: torch.sub, Op.MUL: torch.mul, Op.DIV: torch.div, Op.POW: torch.pow,
    Op.MAX: torch.maximum, Op.MIN: torch.minimum, Op.COMPLEX: _complex,
}


def _state_zeros(spec: ir.Spec, sizes: Sizes, dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    out = []
    for s in spec.states:
        shape = (sizes.batch, sizes.heads, *(sizes.dims[d] for d in s.ty.dims))
        out.append(torch.zeros(shape, dtype=torch.complex128 if s.ty.complex else dtype, device=device))
    return out


def run(spec: ir.Spec, tensors: Mapping[str, torch.Tensor], *, options: Mapping[str, float] | None = None,
        initial_state: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
        dtype: torch.dtype = torch.float64) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Run the recurrence sequentially.

    Args:
        tensors: every input `[B, T, H, *shape]` and param `[H, *shape]`, by name.
        options: per-call scalars (e.g. `scale`); missing ones take the spec's default.
        initial_state: one tensor per state `[B, H, *shape]` (a tuple, in declaration order), or None.
    Returns:
        (outputs by name `[B, T, H, *shape]`, final states by name `[B, H, *shape]`).
    """
    missing = [n for n in spec.arg_order if n not in tensors]
    if missing:
        raise ValueError(f"{spec.name}: missing argument(s) {', '.join(missing)}")
    sizes = infer_sizes(spec, tensors)
    device = tensors[spec.inputs[0].name].device
    ev = _Eval(spec, sizes, dtype, device)
    cast = {n: (t.to(dtype) if not t.is_complex() else t.to(torch.complex128)) for n, t in tensors.items()}
    for p in spec.params:
        ev.env[(p.name, Kind.PARAM)] = cast[p.name].unsqueeze(0)
    for c in spec.consts:
        ev.env[(c.name, Kind.CONST)] = ev.ev(c.value)
    options = dict(options or {})
    for o in spec.options:
        val = options.get(o.name)
        ev.env[(o.name, Kind.OPTION)] = ev.ev(o.value) if val is None else \
            torch.tensor(float(val), dtype=dtype, device=device).reshape(1, 1)
    states = _state_zeros(spec, sizes, dtype, device)
    if initial_state is not None:
        given = (initial_state,) if isinstance(initial_state, torch.Tensor) else tuple(initial_state)
        if len(given) != len(states):
            raise ValueError(f"{spec.name}: `initial_state` needs {len(states)} tensors, got {len(given)}")
        states = [g.to(s.dtype) + s for g, s in zip(given, states, strict=True)]
    names = [s.name for s in spec.states]
    outs: dict[str, list[torch.Tensor]] = {o.name: [] for o in spec.outputs}
    for t in range(sizes.time):
        for i in spec.inputs:
            ev.env[(i.name, Kind.INPUT)] = cast[i.name][:, t]
        old = dict(zip(names, states, strict=True))
        for n, v in old.items():
            ev.env[(n, Kind.STATE)] = v
            ev.env[(n, Kind.PREV_STATE)] = v
        new = dict(old)
        for u in spec.updates:
            if u.loop is None:
                new[u.state] = ev.ev(u.value)
                continue
            running = old[u.state]
            for j in range(u.loop.size):
                ev.env[(u.state, Kind.STATE)] = running
                ev.loop_index[u.loop.var] = j
                running = ev.ev(u.value)
            ev.env[(u.state, Kind.STATE)] = old[u.state]
            new[u.state] = running
        states = [new[n] for n in names]
        for n, v in new.items():
            ev.env[(n, Kind.STATE)] = v
        for o in spec.outputs:
            val = ev.ev(o.value)
            full = (sizes.batch, sizes.heads, *(sizes.dims[d] for d in o.ty.dims))
            outs[o.name].append(val.expand(full))
    outputs = {n: (torch.stack(v, dim=1) if v else
                   torch.zeros(sizes.batch, 0, sizes.heads, *(sizes.dims[d] for d in spec_out.ty.dims),
                               dtype=dtype, device=device))
               for (n, v), spec_out in zip(outs.items(), spec.outputs, strict=True)}
    return outputs, dict(zip(names, states, strict=True))
