"""context: `ContextParallel`, the wrapper that splits a recurrence's time axis across ranks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .. import ir
from .. import signature as _signature
from ..api import Recurrence, load
from ..oracle import complex_dtype, infer_sizes
from .exchange import Exchange, pack, unpack
from .summary import (
    DTYPE,
    StatePlan,
    apply_transition,
    running_element,
    running_prev,
    running_terms,
    slice_transition,
    state_plans,
    ungroup,
)


# ---------------------------------------------------------------------------------------------
# the wrapper
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Call:
    """A call's tensors and options by spec name, as the IR evaluator wants them."""

    tensors: dict[str, torch.Tensor]  # every input and param, `[B, T, H, ...]` / `[H, ...]`
    options: dict[str, Any]  # by option name; None: the spec's default
    headless: bool  # a `layout [B, T]` spec called without a head axis (one was added to `tensors`)


def _renamed_call_args(spec: ir.Spec, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop `initial_state` / `output_final_state` given under a name the spec's `api` line gives them (mamba's
    `initial_states=`), so that the wrapper, which sets both on each run, sees them under their own names."""
    targets = ("initial_state", "output_final_state")
    return {p.target: kwargs.pop(p.public) for p in _signature.signature(spec)
            if p.kind == "call" and p.target in targets and p.public != p.target and p.public in kwargs}


def _bind(spec: ir.Spec, args: Sequence[Any], kwargs: dict[str, Any]) -> _Call:
    """Name the call's arguments the way the generated call does (its order, renamed and optional arguments)."""
    option_names = {o.name for o in spec.options}
    public = {p.public for p in _signature.signature(spec)}
    bound, _ = _signature.bind(spec, args, {k: v for k, v in kwargs.items() if k in public})
    tensors = {n: x for n, x in bound.items() if n not in option_names and x is not None}
    options = {n: bound.get(n) for n in option_names} | _signature.presence(spec, tensors)
    tensors, _, headless = _signature.add_heads(spec, tensors, None)
    tensors = _signature.fill_defaults(spec, tensors)
    missing = [n for n in spec.arg_order if not isinstance(tensors.get(n), torch.Tensor)]
    if missing:
        raise ValueError(f"{spec.name}: ContextParallel needs every input and param as a tensor; "
                         f"missing {', '.join(missing)}")
    return _Call(tensors, options, headless)


def _zeros_state(spec: ir.Spec, plan: StatePlan, call: _Call) -> torch.Tensor:
    """A zero state `[B, H, *dims]` for this call's sizes."""
    first = next(iter(call.tensors.values()))
    sizes = infer_sizes(spec, ungroup(spec, call.tensors))
    shape = (sizes.batch, sizes.heads, *(dict(sizes.dims)[d] for d in plan.dims))
    return torch.zeros(shape, dtype=complex_dtype(DTYPE) if plan.complex else DTYPE, device=first.device)


def _as_tuple(x: Any) -> tuple[Any, ...]:
    return x if isinstance(x, tuple) else (x,)


def _single(xs: Sequence[Any]) -> Any:
    return xs[0] if len(xs) == 1 else tuple(xs)


class ContextParallel(nn.Module):
    """Context parallelism for any spec: each rank of `group` holds a contiguous slice of the time axis.

    Call it like the wrapped recurrence, with this rank's slice of every input (`[B, T_r, H, ...]`, rank r
    holding tokens `[r·T/P, (r+1)·T/P)`; slices may differ in length) and the full params:

        o_r, final = cp(*inputs_and_params, scale=None, initial_state=None, output_final_state=False, **kw)

    Returns this rank's slice of the outputs, and with `output_final_state=True` the final state of the
    whole sequence on the last rank (None on the others). Arguments are those of the wrapped call (its
    order and names, optional tensors, a spec's headless `layout [B, T]`); give `initial_state` and
    `output_final_state` by keyword (under their own names or the ones the spec's `api` line gives them).
    Other keyword arguments (`backend=`, `mode=`, `checkpoint_every=`, options) go to the recurrence
    unchanged; `cu_seqlens` (packed sequences) is not supported.

    Contract (as with DDP, every rank takes part in every call):
      - B, H, the feature sizes, dtypes, params and keyword arguments agree across ranks;
      - `initial_state` is passed on rank 0 only (its gradient arrives there);
      - with grad enabled, every rank calls `backward` on a loss that depends on its outputs (the result
        always requires grad then, so that all ranks meet in the backward all-reduce); use `torch.no_grad()`
        for inference;
      - gradients of params (and of any tensor every rank holds a copy of) are this rank's partial sums:
        `cp.all_reduce_grads(params)` sums them over the group into the single-process gradient (DDP over
        the same group averages instead: scale the loss by P, or all-reduce yourself).

    A spec with running maxes (xLSTM's stabiliser `m`, whose sequence the other states' coefficients read)
    exchanges twice: first the running maxes' max-plus elements `(Σ a, max)`, folded into each rank's entering
    `m`; then, with every rank's true `m` sequence known, the other states' `(A, b)` as above.

    Cost: ranks r > 0 run their slice twice (from zero, then from the true entering state) and form A:
    nothing for the identity class, an elementwise product for decays, K×K matrices per token and a
    log-depth product of them for Householder/DPLR (O(T·K³) per head, more than the recurrence itself).

    Raises:
        ValueError: at construction, for a state with a dense or coupled transition (no closed form).
    """

    def __init__(self, module: Recurrence | str | Path, group: Any = None) -> None:
        super().__init__()
        self.rec = module if isinstance(module, Recurrence) else load(module)
        self.group = group
        self.plans = state_plans(self.rec.spec)

    def forward(self, *args: Any, initial_state: Any = None, output_final_state: bool = False,
                **kwargs: Any) -> tuple[Any, Any]:
        """`(this rank's outputs, the final state on the last rank or None)`; see the class docstring."""
        renamed = _renamed_call_args(self.rec.spec, kwargs)
        initial_state = renamed.get("initial_state", initial_state)
        output_final_state = bool(renamed.get("output_final_state", output_final_state))
        if kwargs.get("cu_seqlens") is not None:
            raise ValueError(f"{self.rec.name}: ContextParallel does not support `cu_seqlens` (packed sequences)")
        rank, world = dist.get_rank(self.group), dist.get_world_size(self.group)
        if initial_state is not None and rank != 0:
            raise ValueError(f"{self.rec.name}: ContextParallel takes `initial_state` on rank 0 only "
                             f"(got one on rank {rank})")
        if world == 1:
            return self.rec(*args, initial_state=initial_state, output_final_state=output_final_state, **kwargs)
        call = _bind(self.rec.spec, args, kwargs)
        device = call.tensors[self.rec.spec.inputs[0].name].device
        anchor = torch.zeros((), device=device, requires_grad=torch.is_grad_enabled())
        if rank == 0:
            return self._first(args, kwargs, call, initial_state, anchor)
        return self._later(args, kwargs, call, anchor, rank, output_final_state and rank == world - 1)

    def all_reduce_grads(self, tensors: Iterable[torch.Tensor]) -> None:
        """Sum `.grad` of tensors every rank holds a copy of (the spec's params) over the group, in place.

        Every rank must pass the same tensors, each with a gradient."""
        for t in tensors:
            if t.grad is None:
                raise ValueError(f"{self.rec.name}: all_reduce_grads: a tensor has no gradient")
            dist.all_reduce(t.grad, op=dist.ReduceOp.SUM, group=self.group)

    # -- steps --------------------------------------------------------------------------------
    def _layout(self, tensors: dict[str, torch.Tensor], running: bool = False) -> list[tuple[tuple[int, ...], bool]]:
        """(shape, complex) of each summary part, in exchange order: per state, A (unless identity) then b;
        for the running maxes (`running=True`), per running max its shift sum and its max.
        Computable on every rank from sizes alone, so rank 0 can send a placeholder for its A."""
        sizes = infer_sizes(self.rec.spec, ungroup(self.rec.spec, tensors))
        B, H, dims = sizes.batch, sizes.heads, dict(sizes.dims)
        layout = []
        for p in self.plans:
            shape = (B, H, *(dims[d] for d in p.dims))
            if running and p.form == "running_max":
                layout += [(shape, False), (shape, False)]
            elif not running and p.form != "running_max":
                if p.form != "identity":
                    layout.append(((B, H, *p.probe_shape(dims)), p.complex))
                layout.append((shape, p.complex))
        return layout

    @property
    def _has_running(self) -> bool:
        return any(p.form == "running_max" for p in self.plans)

    def _run(self, args: Sequence[Any], kwargs: dict[str, Any], call: _Call, initial_state: Any,
             output_final_state: bool) -> tuple[Any, list[torch.Tensor] | None]:
        """The wrapped recurrence on this rank's slice, `initial_state` as the caller gives it; the final
        states come back as a list in the `[B, H, ...]` layout the summaries use."""
        out, final = self.rec(*args, initial_state=initial_state, output_final_state=output_final_state, **kwargs)
        if final is None:
            return out, None
        # a `layout [B, T]` spec called without a head axis returns states without one
        return out, [s.unsqueeze(1) if call.headless else s for s in _as_tuple(final)]

    def _first(self, args: Sequence[Any], kwargs: dict[str, Any], call: _Call,
               initial_state: Any, anchor: torch.Tensor) -> tuple[Any, Any]:
        """Rank 0: one run from the caller's initial state; its final state is the state entering rank 1."""
        out, final = self._run(args, kwargs, call, initial_state, True)
        finals = dict(zip((p.name for p in self.plans), final or [], strict=True))
        if self._has_running:  # its final running maxes (the A slot is a placeholder)
            parts = [x for p in self.plans if p.form == "running_max" for x in (torch.zeros_like(finals[p.name]),
                                                                               finals[p.name])]
            _rows, anchor = Exchange.apply(self.group, anchor, pack(parts), anchor)
        parts: list[torch.Tensor] = []
        shapes = iter(self._layout(call.tensors))
        for p in self.plans:
            if p.form == "running_max":
                continue
            if p.form != "identity":  # rank 0's A is never used: a placeholder of the right size
                shape, cplx = next(shapes)
                parts.append(torch.zeros(shape, dtype=complex_dtype(DTYPE) if cplx else DTYPE, device=anchor.device))
            next(shapes)
            parts.append(finals[p.name])
        outs = _as_tuple(out)
        _rows, *outs = Exchange.apply(self.group, anchor, pack(parts), *outs)
        return _single(outs), None

    def _later(self, args: Sequence[Any], kwargs: dict[str, Any], call: _Call,
               anchor: torch.Tensor, rank: int, want_final: bool) -> tuple[Any, Any]:
        """Rank r > 0: summarise the slice, exchange, fold the ranks before, re-run from the true state."""
        spec = self.rec.spec
        entering: dict[str, torch.Tensor] = {}  # the running maxes entering this slice
        running: dict[str, torch.Tensor] = {}  # their m_{t-1} over this slice
        start: Any = None
        if self._has_running:
            terms = {p.name: running_terms(spec, p, call.tensors, call.options)
                     for p in self.plans if p.form == "running_max"}
            parts = [x.to(DTYPE) for a, b in terms.values() for x in running_element(a, b)]
            rows, anchor = Exchange.apply(self.group, anchor, pack(parts), anchor)
            layout = self._layout(call.tensors, running=True)
            gathered = [unpack(rows[j], layout) for j in range(rank)]
            for i, name in enumerate(terms):
                m = gathered[0][2 * i + 1]  # rank 0's final m, then m <- max(Σa_j + m, max_j)
                for element in gathered[1:]:
                    m = torch.maximum(element[2 * i] + m, element[2 * i + 1])
                entering[name] = m
                running[name] = running_prev(*terms[name], m)
            # the zero run starts from the true running maxes: the other states' coefficients read them
            start = [entering[p.name] if p.name in entering else _zeros_state(spec, p, call) for p in self.plans]
            start = _single([s.squeeze(1) for s in start] if call.headless else start)
        _, b = self._run(args, kwargs, call, start, True)
        parts = []
        for p, b_state in zip(self.plans, b or [], strict=True):
            if p.form == "running_max":
                continue
            a = slice_transition(spec, p, call.tensors, call.options, running)
            if a is not None:
                parts.append(a)
            parts.append(b_state)
        layout = self._layout(call.tensors)
        rows, = Exchange.apply(self.group, anchor, pack(parts))
        linear = iter(self._entering_state([unpack(rows[j], layout) for j in range(rank)]))
        state = [entering[p.name].to(DTYPE) if p.form == "running_max" else next(linear) for p in self.plans]
        if call.headless:
            state = [s.squeeze(1) for s in state]
        out, final = self._run(args, kwargs, call, _single(state), want_final)
        if final is not None and call.headless:
            final = [s.squeeze(1) for s in final]
        return out, None if final is None else _single(final)

    def _entering_state(self, elements: Sequence[list[torch.Tensor]]) -> list[torch.Tensor]:
        """The exclusive prefix of the states other than running maxes: rank 0's final state, then
        `s ← A_j s + b_j` for ranks j = 1 … r-1."""
        plans = [p for p in self.plans if p.form != "running_max"]

        def split(parts: list[torch.Tensor]) -> list[tuple[torch.Tensor | None, torch.Tensor]]:
            it = iter(parts)
            return [((next(it) if p.form != "identity" else None), next(it)) for p in plans]

        state = [b for _, b in split(elements[0])]
        for element in elements[1:]:
            state = [apply_transition(p, a, s) + b
                     for p, (a, b), s in zip(plans, split(element), state, strict=True)]
        return state
