"""oracle: the reference. Executes the IR literally, token by token, in float64 torch with autograd.

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
from .ir import Kind, Op, product_subscripts, reduced_axes

Value = torch.Tensor  # shape [B, H, *dims] (batch dims may be 1 for params and consts)
_N = 2  # number of leading batch dims: (batch, head)


@dataclass(frozen=True)
class Sizes:
    batch: int
    time: int
    heads: int
    dims: Mapping[str, int]


def _shape_text(names: tuple[str, ...] | list[str]) -> str:
    return f"[{', '.join(names)}]"


def _expected(spec: ir.Spec, t: ir.Tensor) -> list[str]:
    """The symbolic shape a caller passes for input or param `t`."""
    return [*(("B", "T", "H") if t in spec.inputs else ("H",)), *t.ty.dims]


def infer_sizes(spec: ir.Spec, tensors: Mapping[str, torch.Tensor]) -> Sizes:
    """Read B, T, H and every named dim from the arguments; ValueError naming the argument on conflict."""
    dims: dict[str, int] = {d.name: d.size for d in spec.dims if d.size is not None}
    origin: dict[str, str] = {d.name: "its `dim` line" for d in spec.dims if d.size is not None}
    first = spec.inputs[0]
    x0 = tensors[first.name]
    if x0.dim() != 3 + len(first.ty.dims):
        raise ValueError(f"{spec.name}: `{first.name}` must have shape {_shape_text(_expected(spec, first))}, "
                         f"got {list(x0.shape)}")
    B, T, H = x0.shape[:3]
    for t in (*spec.inputs, *spec.params):
        x = tensors[t.name]
        lead = (B, T, H) if t in spec.inputs else (H,)
        names = ("B", "T", "H") if t in spec.inputs else ("H",)
        expected = _expected(spec, t)
        if x.dim() != len(expected) or tuple(x.shape[: len(lead)]) != lead:
            raise ValueError(f"{spec.name}: `{t.name}` must have shape {_shape_text(expected)} with "
                             f"{', '.join(f'{n}={v}' for n, v in zip(names, lead, strict=True))} (from "
                             f"`{first.name}`), got {list(x.shape)}")
        for name, size in zip(t.ty.dims, x.shape[len(lead):], strict=True):
            if name in dims and dims[name] != size:
                raise ValueError(f"{spec.name}: `{t.name}` must have shape {_shape_text(expected)} with "
                                 f"{name}={dims[name]} (from {origin[name]}), got {list(x.shape)}")
            dims.setdefault(name, int(size))
            origin.setdefault(name, f"`{t.name}`")
    return Sizes(int(B), int(T), int(H), dims)


class Evaluator:
    """Evaluates IR expressions on torch tensors (the oracle; also context parallel's transition summaries)."""

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
        # by name; a repeated name (`I(E)` against [E, E, D]) by occurrence, in order
        seen = {d: [i for i, x in enumerate(dims) if x == d] for d in dims}
        perm = [(seen[d].pop(0) if len(seen[d]) > 1 else seen[d][0]) + _N for d in target if d in dims]
        x = x.permute(0, 1, *perm)
        shape = list(x.shape[:_N])
        it = iter(x.shape[_N:])
        for d in target:
            shape.append(next(it) if d in dims else 1)
        return x.reshape(shape)

    def size(self, dim: str) -> int:
        return self.sizes.dims[ir.base_dim(dim)]  # an alias of a repeated dim has its dim's size

    def ev(self, e: ir.Expr) -> Value:
        if isinstance(e, ir.Const):
            dt = complex_dtype(self.dtype) if isinstance(e.value, complex) else self.dtype
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
            n = self.size(e.attr)
            return torch.eye(n, dtype=self.dtype, device=self.device).reshape(1, 1, n, n)
        if op is Op.INDEX:
            base = self.ev(e.args[0])
            idx = e.args[1]
            pos = self.loop_index[idx.name] if isinstance(idx, ir.Var) else int(e.attr)
            return base[:, :, pos]
        args = [self.ev(a) for a in e.args]
        if op is Op.RENAME:  # the same values, dims renamed
            return args[0]
        if op in ir.ELEMENTWISE_BINARY:
            a = self.align(args[0], e.args[0].ty.dims, dims)
            b = self.align(args[1], e.args[1].ty.dims, dims)
            return _BINARY[op](a, b)
        if len(args) == 2 and args[0].is_complex() != args[1].is_complex():
            args = [a.to(complex_dtype(self.dtype)) for a in args]
        x = args[0]
        if op in ir.ELEMENTWISE_UNARY:
            return _UNARY[op](x)
        if op in (Op.MATMUL, Op.OUTER, Op.TENSORDOT):
            return torch.einsum(product_subscripts(e), x, args[1])
        if op is Op.DIAG:
            return torch.diag_embed(x)
        if op is Op.TRANSPOSE:
            return x.transpose(-1, -2)
        if op is Op.SUM:
            src = e.args[0].ty.dims
            return x.sum(dim=tuple(_N + i for i in reduced_axes(e))) if src else x
        if op is Op.AMAX:
            return x.amax(dim=tuple(_N + i for i in reduced_axes(e)))
        if op is Op.NORM:
            src = e.args[0].ty.dims
            return x.abs().square().sum(dim=tuple(range(_N, x.dim()))).sqrt() if src else x.abs()
        if op is Op.NORMALIZE:
            return x / x.abs().square().sum(dim=-1, keepdim=True).sqrt()
        # Internal ops (from the code generator's autodiff): evaluated too, so derived IR can be checked here.
        if op is Op.DIAGONAL:
            return torch.diagonal(x, dim1=-2, dim2=-1)
        if op is Op.EMBED:
            rows = [x if i == int(e.attr) else torch.zeros_like(x) for i in range(self.size(dims[0]))]
            return torch.stack(rows, dim=_N)
        if op is Op.BROADCAST:
            x = self.align(x, e.args[0].ty.dims, dims)
            return x.expand(*x.shape[:_N], *(self.size(d) for d in dims))
        raise AssertionError(op)


def _complex(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = torch.broadcast_tensors(a, b)
    return torch.complex(a, b)


_UNARY = {
    Op.NEG: torch.neg, Op.EXP: torch.exp, Op.LOG: torch.log, Op.SIGMOID: torch.sigmoid,
    Op.LOGSIGMOID: F.logsigmoid, Op.SOFTPLUS: F.softplus, Op.SILU: F.silu, Op.SQRT: torch.sqrt,
    Op.ABS: torch.abs, Op.TANH: torch.tanh, Op.SIN: torch.sin, Op.COS: torch.cos,
    Op.RELU: torch.relu, Op.RE: torch.real, Op.IM: torch.imag,
    Op.CONJ: torch.conj, Op.STEP: lambda x: (x >= 0).to(x.dtype), Op.SIGN: torch.sgn,
}
_BINARY = {
    Op.ADD: torch.add, Op.SUB: torch.sub, Op.MUL: torch.mul, Op.DIV: torch.div, Op.POW: torch.pow,
    Op.MAX: torch.maximum, Op.MIN: torch.minimum, Op.COMPLEX: _complex,
}


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype that pairs with a real compute dtype (half types have no usable complex twin)."""
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _state_shape(s: ir.Tensor, sizes: Sizes) -> tuple[int, ...]:
    return (sizes.batch, sizes.heads, *(sizes.dims[d] for d in s.ty.dims))


def _check_arguments(spec: ir.Spec, tensors: Mapping[str, torch.Tensor]) -> None:
    """Names, types and realness of the tensor arguments; shapes are checked by `infer_sizes`."""
    if not isinstance(tensors, Mapping):
        raise TypeError(f"{spec.name}: `tensors` must be a mapping from argument name to tensor, "
                        f"got {type(tensors).__name__}")
    declared = {t.name: t for t in (*spec.inputs, *spec.params)}
    missing = [n for n in spec.arg_order if n not in tensors]
    if missing:
        shapes = ", ".join(f"`{n}` {_shape_text(_expected(spec, declared[n]))}" for n in missing)
        raise ValueError(f"{spec.name}: missing argument(s) {shapes}")
    # A misspelt name would otherwise be ignored silently and reported as missing at best.
    unknown = [n for n in tensors if n not in declared]
    if unknown:
        raise ValueError(f"{spec.name}: unexpected argument(s) {', '.join(f'`{n}`' for n in unknown)}; "
                         f"the arguments are {', '.join(spec.arg_order)}")
    for n, t in declared.items():
        x = tensors[n]
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{spec.name}: `{n}` must be a torch.Tensor of shape "
                            f"{_shape_text(_expected(spec, t))}, got {type(x).__name__}")
        if x.is_complex() and not t.ty.complex:
            raise ValueError(f"{spec.name}: `{n}` must be real, got dtype {x.dtype}")


def _options(spec: ir.Spec, options: Mapping[str, float | torch.Tensor | None] | None, ev: Evaluator) -> None:
    given = dict(options or {})
    known = {o.name for o in spec.options}
    unknown = [n for n in given if n not in known]
    if unknown:
        raise ValueError(f"{spec.name}: unknown option(s) {', '.join(f'`{n}`' for n in unknown)}; "
                         f"the options are: {', '.join(sorted(known)) or 'none'}")
    for o in spec.options:
        val = given.get(o.name)
        if val is None:
            ev.env[(o.name, Kind.OPTION)] = ev.ev(o.value)
        elif isinstance(val, torch.Tensor):
            if val.numel() != 1 or val.is_complex():
                raise ValueError(f"{spec.name}: option `{o.name}` must be a real scalar, got a tensor of "
                                 f"shape {list(val.shape)} and dtype {val.dtype}")
            # A tensor keeps its autograd graph, so gradients w.r.t. an option can be checked too.
            ev.env[(o.name, Kind.OPTION)] = val.to(device=ev.device, dtype=ev.dtype).reshape(1, 1)
        else:
            ev.env[(o.name, Kind.OPTION)] = torch.tensor(float(val), dtype=ev.dtype, device=ev.device).reshape(1, 1)


def _initial_states(spec: ir.Spec, sizes: Sizes, initial_state: torch.Tensor | tuple[torch.Tensor | None, ...] | None,
                    dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    """One tensor per state, zeros where none is given; shapes are checked, never broadcast."""
    cdtype = complex_dtype(dtype)
    states = [torch.zeros(_state_shape(s, sizes), dtype=cdtype if s.ty.complex else dtype, device=device)
              for s in spec.states]
    if initial_state is None:
        return states
    given = (initial_state,) if isinstance(initial_state, torch.Tensor) else tuple(initial_state)
    if len(given) != len(states):
        shapes = ", ".join(f"`{s.name}` {_shape_text(['B', 'H', *s.ty.dims])}" for s in spec.states)
        raise ValueError(f"{spec.name}: `initial_state` needs {len(states)} tensor(s), one per state ({shapes}), "
                         f"got {len(given)}")
    out = []
    for s, g, zero in zip(spec.states, given, states, strict=True):
        if g is None:
            out.append(zero)
            continue
        expected = _shape_text(["B", "H", *s.ty.dims])
        if not isinstance(g, torch.Tensor):
            raise TypeError(f"{spec.name}: `initial_state` for state `{s.name}` must be a torch.Tensor of shape "
                            f"{expected}, got {type(g).__name__}")
        if tuple(g.shape) != zero.shape:
            sizes_text = ", ".join(f"{n}={v}" for n, v in zip(["B", "H", *s.ty.dims], zero.shape, strict=True))
            raise ValueError(f"{spec.name}: `initial_state` for state `{s.name}` must have shape {expected} with "
                             f"{sizes_text}, got {list(g.shape)}")
        if g.is_complex() and not s.ty.complex:
            raise ValueError(f"{spec.name}: `initial_state` for state `{s.name}` must be real, got dtype {g.dtype}")
        # A copy: with T = 0 the final state would otherwise alias the caller's tensor.
        out.append(g.to(device=device, dtype=zero.dtype).clone())
    return out


def run(spec: ir.Spec, tensors: Mapping[str, torch.Tensor], *,
        options: Mapping[str, float | torch.Tensor | None] | None = None,
        initial_state: torch.Tensor | tuple[torch.Tensor | None, ...] | None = None,
        dtype: torch.dtype = torch.float64) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Run the recurrence sequentially.

    Args:
        tensors: every input `[B, T, H, *shape]` and param `[H, *shape]`, by name.
        options: per-call scalars (e.g. `scale`), as numbers or one-element tensors (which keep their
            gradient); missing or None ones take the spec's default.
        initial_state: one tensor per state `[B, H, *shape]` (a tuple, in declaration order; an entry may be
            None for zeros), or None.
        dtype: the real compute dtype (complex states use its complex twin); float64 for the oracle, the
            kernels' dtype for a low-precision reference.
    Returns:
        (outputs by name `[B, T, H, *shape]`, final states by name `[B, H, *shape]`).
    Raises:
        ValueError: a missing or unexpected argument, a wrong shape (naming the argument and the shape it
            must have), a complex value for a real tensor, an unknown option.
        TypeError: an argument that is not a tensor.
    """
    _check_arguments(spec, tensors)
    sizes = infer_sizes(spec, tensors)
    device = tensors[spec.inputs[0].name].device
    ev = Evaluator(spec, sizes, dtype, device)
    cdtype = complex_dtype(dtype)
    cast = {n: t.to(device=device, dtype=cdtype if t.is_complex() else dtype) for n, t in tensors.items()}
    for p in spec.params:
        ev.env[(p.name, Kind.PARAM)] = cast[p.name].unsqueeze(0)
    for c in spec.consts:
        ev.env[(c.name, Kind.CONST)] = ev.ev(c.value)
    _options(spec, options, ev)
    states = _initial_states(spec, sizes, initial_state, dtype, device)
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
                               dtype=cdtype if spec_out.ty.complex else dtype, device=device))
               for (n, v), spec_out in zip(outs.items(), spec.outputs, strict=True)}
    return outputs, dict(zip(names, states, strict=True))
