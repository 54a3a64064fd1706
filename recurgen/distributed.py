"""distributed: context parallelism for any spec — the time axis split across the ranks of a process group.

    from recurgen.distributed import ContextParallel
    cp = ContextParallel(recurgen.load("gla"))        # torch.distributed already initialised
    o, final_state = cp(q, k, v, g, output_final_state=True)   # this rank's slice [B, T/P, H, ...]

Rank r holds tokens `[r·T/P, (r+1)·T/P)`. Every state update is affine, `S_t = A_t S_{t-1} + b_t`, so a slice
is summarised by one element `(A, b)`: `A` the product of its transitions, `b` its final state from zero.
Elements compose with the associative operator `(A₂, b₂) ∘ (A₁, b₁) = (A₂A₁, A₂b₁ + b₂)`, and the state
entering rank r is the exclusive prefix of the elements of ranks `0 … r-1` applied to the initial state.

One call does, per rank:
1. rank 0 runs its slice from the caller's initial state; its final state is already the state entering
   rank 1 (so rank 0 needs no `A`). Ranks r > 0 run their slice from zero (its final state is `b`) and form
   `A` in torch, differentiably, from the transition the analysis derived (`Transition.linear`, the update's
   linear part `L(□)`): nothing for the identity class, an elementwise decay `a_t = L_t(1)` for scalar,
   diagonal and complex-diagonal classes, a matrix `A_t = L_t(I)` for Householder and DPLR classes (on
   the state's first dim, or its last when the transition multiplies from the right), multiplied over the
   slice in a balanced tree (log depth, batched).
2. one all-gather exchanges the elements; each rank folds the ones before it (the exclusive scan).
3. ranks r > 0 re-run their slice from the true entering state (the kernels take `initial_state` and
   return its gradient), which makes outputs exact for every readout, normalised and `prev(S)` ones too.
Backward runs the same graph in reverse: the all-gather's backward is one all-reduce that hands each rank
the gradient of its own `(A, b)`, so gradients reach every rank's inputs and params and rank 0's initial
state. Only standard collectives are used (all_gather, all_reduce), so `gloo` (CPU) and `nccl` both work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from . import ir
from . import signature as _signature
from .analysis import analyze
from .analysis.exprs import HOLE
from .analysis.result import Axis, Side, Transition, TransitionKind
from .api import Recurrence, load
from .ir import Kind
from .oracle import Evaluator, Sizes, complex_dtype, infer_sizes

_ELEMENTWISE = (TransitionKind.SCALAR, TransitionKind.DIAGONAL, TransitionKind.COMPLEX_DIAGONAL)
_DTYPE = torch.float32  # summaries are exchanged in fp32, the precision of the kernels' final states


# ---------------------------------------------------------------------------------------------
# per-state plan: how A is probed from the transition's linear part and how it acts on the state
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _StatePlan:
    name: str
    dims: tuple[str, ...]
    complex: bool
    transition: Transition

    @property
    def form(self) -> str:
        """"identity" (A = I), "elementwise" (A multiplies the state) or "matrix" (A is n×n on one dim)."""
        kind = self.transition.kind
        if kind is TransitionKind.IDENTITY:
            return "identity"
        if kind is TransitionKind.RUNNING_MAX:
            return "running_max"
        return "elementwise" if kind in _ELEMENTWISE else "matrix"

    def probe_shape(self, dims: dict[str, int]) -> tuple[int, ...]:
        """The shape of `A`: an elementwise decay keeps only the state dims it varies along (a scalar decay
        is all ones, GLA's row-wise one `[K, 1]`), so A costs no more than it must; a matrix is `[n, n]`."""
        sizes = tuple(dims[d] for d in self.dims)
        t = self.transition
        if self.form == "matrix":
            n = self.acting_size(dims)
            return (n, n)
        if t.kind is TransitionKind.SCALAR:
            return tuple(1 for _ in sizes)
        if len(sizes) == 2 and t.axis is Axis.ROWS:
            return (sizes[0], 1)
        if len(sizes) == 2 and t.axis is Axis.COLUMNS:
            return (1, sizes[1])
        return sizes

    def acting_size(self, dims: dict[str, int]) -> int:
        """The size of the state dim a matrix transition multiplies: the first (LEFT) or last (RIGHT)."""
        return dims[self.dims[0] if self.transition.side is Side.LEFT else self.dims[-1]]


def _plans(spec: ir.Spec) -> tuple[_StatePlan, ...]:
    """One plan per state; ValueError for a state without a closed-form composition."""
    analysis = analyze(spec)
    plans = []
    for s in spec.states:
        t = analysis.state(s.name).transition
        if t.kind is TransitionKind.DENSE or t.coupled:
            why = f"is coupled with {', '.join(t.coupled)}" if t.coupled else "has a dense transition"
            raise ValueError(f"{spec.name}: context parallelism needs a closed-form composition of each state's "
                             f"transition; state `{s.name}` {why} (class {t.label()}). Supported classes: "
                             "identity, scalar, diagonal, complex diagonal, Householder, DPLR")
        if len(s.ty.dims) > 2:
            raise ValueError(f"{spec.name}: context parallelism supports vector and matrix states; "
                             f"state `{s.name}` has {len(s.ty.dims)} dims")
        plans.append(_StatePlan(s.name, s.ty.dims, s.ty.complex, t))
    return tuple(plans)


# ---------------------------------------------------------------------------------------------
# A over a slice: the linear part evaluated for every token at once, then a balanced-tree product
# ---------------------------------------------------------------------------------------------
def _ungroup(spec: ir.Spec, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Grouped heads (fewer heads than the state, dividing it) repeated to full heads, differentiably."""
    inputs = {t.name for t in spec.inputs}
    axis = {n: 2 if n in inputs else 0 for n in tensors}
    H = max(int(x.shape[axis[n]]) for n, x in tensors.items())
    return {n: (x.repeat_interleave(H // int(x.shape[axis[n]]), dim=axis[n]) if x.shape[axis[n]] != H else x)
            for n, x in tensors.items()}


class _Tokens:
    """An IR evaluator over every token of a slice at once: time is folded into the evaluator's batch dim
    (`[B, T, H, ...]` → `[B·T, H, ...]`), so one pass evaluates `L_t` for all t."""

    def __init__(self, spec: ir.Spec, tensors: dict[str, torch.Tensor], options: dict[str, Any],
                 repeat: int = 1, running: dict[str, torch.Tensor] | None = None) -> None:
        tensors = _ungroup(spec, tensors)
        sizes = infer_sizes(spec, tensors)
        self.B, self.T, self.H, self.dims = sizes.batch, sizes.time, sizes.heads, dict(sizes.dims)
        rows = self.B * self.T * repeat
        device = tensors[spec.inputs[0].name].device
        self.ev = Evaluator(spec, Sizes(rows, 1, self.H, self.dims), _DTYPE, device)
        cdtype = complex_dtype(_DTYPE)
        cast = {n: x.to(cdtype if x.is_complex() else _DTYPE) for n, x in tensors.items()}
        for t in spec.inputs:
            x = cast[t.name].flatten(0, 1)  # [B·T, H, ...]
            # `repeat` copies of each token, adjacent: one per basis vector of a vector state's probe
            self.ev.env[(t.name, Kind.INPUT)] = x.repeat_interleave(repeat, dim=0) if repeat > 1 else x
        for name, seq in (running or {}).items():  # m_{t-1} per token, read like an input
            x = seq.to(_DTYPE).flatten(0, 1)
            self.ev.env[(name, Kind.STATE)] = x.repeat_interleave(repeat, dim=0) if repeat > 1 else x
        for p in spec.params:
            self.ev.env[(p.name, Kind.PARAM)] = cast[p.name].unsqueeze(0)
        for c in spec.consts:
            self.ev.env[(c.name, Kind.CONST)] = self.ev.ev(c.value)
        for o in spec.options:
            given = options.get(o.name)
            self.ev.env[(o.name, Kind.OPTION)] = self.ev.ev(o.value) if given is None else \
                torch.as_tensor(given, dtype=_DTYPE, device=device).reshape(1, 1)

    def apply_linear(self, t: Transition, x: torch.Tensor) -> torch.Tensor:
        """`L_t(x)` for every token: the update's linear part applied once per transition step."""
        for j in range(t.steps):
            if t.loop is not None:
                self.ev.loop_index[t.loop.var] = j
            self.ev.env[(HOLE, Kind.STATE)] = x
            x = self.ev.ev(t.linear)
        return x


def _per_token(plan: _StatePlan, spec: ir.Spec, tensors: dict[str, torch.Tensor],
               options: dict[str, Any], running: dict[str, torch.Tensor]) -> torch.Tensor:
    """`A_t` for every token of the slice, `[B, T, H, *probe]` (`running`: each running max's m_{t-1})."""
    state_dtype = complex_dtype(_DTYPE) if plan.complex else _DTYPE
    if plan.form == "matrix" and len(plan.dims) == 1:
        return _per_token_vector_matrix(plan, spec, tensors, options, running)
    tok = _Tokens(spec, tensors, options, running=running)
    probe = plan.probe_shape(tok.dims)
    device = next(iter(tensors.values())).device
    if plan.form == "matrix":
        # L(X) = A X (LEFT) or X A (RIGHT), so L(I) = A. The identity sits in the state's slot with its
        # untouched dim resized to n: L never mixes along that dim, so the evaluation is shape-agnostic there.
        x = torch.eye(probe[0], dtype=state_dtype, device=device).reshape(1, 1, *probe)
    else:
        x = torch.ones((1, 1, *probe), dtype=state_dtype, device=device)  # a_t = L_t(1)
    a = tok.apply_linear(plan.transition, x).to(state_dtype)
    rows = tok.B * tok.T
    try:
        a = a.expand(rows, tok.H, *probe)
    except RuntimeError as err:
        raise ValueError(f"{spec.name}: state `{plan.name}`: its transition (class {plan.transition.label()}) "
                         f"evaluates to shape {list(a.shape[2:])}, not the expected {list(probe)}") from err
    return a.reshape(tok.B, tok.T, tok.H, *probe)


def _per_token_vector_matrix(plan: _StatePlan, spec: ir.Spec, tensors: dict[str, torch.Tensor],
                             options: dict[str, Any], running: dict[str, torch.Tensor]) -> torch.Tensor:
    """A matrix transition on a vector state `[n]`: the state has no spare dim to hold an identity, so each
    token is evaluated on the n basis vectors (copies in the batch dim) and the columns stacked."""
    state_dtype = complex_dtype(_DTYPE) if plan.complex else _DTYPE
    n = plan.acting_size(dict(infer_sizes(spec, _ungroup(spec, tensors)).dims))
    tok = _Tokens(spec, tensors, options, repeat=n, running=running)
    device = next(iter(tensors.values())).device
    basis = torch.eye(n, dtype=state_dtype, device=device).repeat(tok.B * tok.T, 1).unsqueeze(1)  # [B·T·n, 1, n]
    cols = tok.apply_linear(plan.transition, basis).to(state_dtype).expand(tok.B * tok.T * n, tok.H, n)
    # cols[(b, t, j), h, i] = A_t[i, j]
    return cols.reshape(tok.B, tok.T, n, tok.H, n).permute(0, 1, 3, 4, 2)


def _compose(plan: _StatePlan) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """`(later, earlier) -> A_later ∘ A_earlier` on batched A's."""
    if plan.form == "elementwise":
        return torch.mul
    if plan.transition.side is Side.RIGHT:  # S_t = S_{t-1} A_t: earlier factors sit on the left
        return lambda later, earlier: earlier @ later
    return lambda later, earlier: later @ earlier


def _identity_like(plan: _StatePlan, a: torch.Tensor) -> torch.Tensor:
    """The neutral A, shaped like one token of `a` `[B, 1, H, *probe]`."""
    shape = (a.shape[0], 1, *a.shape[2:])
    if plan.form == "elementwise":
        return torch.ones(shape, dtype=a.dtype, device=a.device)
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    return eye.expand(shape).clone()


def _tree_product(plan: _StatePlan, a: torch.Tensor) -> torch.Tensor:
    """`A_{T-1} ∘ … ∘ A_0` over the time dim of `a` `[B, T, H, *probe]`: pairs of neighbours in one batched
    op per level, so log2(T) levels and rounding that grows with log T, not T."""
    compose = _compose(plan)
    if a.shape[1] == 0:
        return _identity_like(plan, a)[:, 0]
    while a.shape[1] > 1:
        if a.shape[1] % 2:
            a = torch.cat([a, _identity_like(plan, a)], dim=1)  # a neutral last step keeps pairs aligned
        a = compose(a[:, 1::2], a[:, 0::2])
    return a[:, 0]


def _slice_transition(spec: ir.Spec, plan: _StatePlan, tensors: dict[str, torch.Tensor],
                      options: dict[str, Any], running: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """`A` of one state over the slice, `[B, H, *probe]` (None for the identity class)."""
    if plan.form == "identity":
        return None
    return _tree_product(plan, _per_token(plan, spec, tensors, options, running))


# ---------------------------------------------------------------------------------------------
# running maxes: m_t = max(a_t + m_{t-1}, b_t) composes in (max, +), and comes first
# ---------------------------------------------------------------------------------------------
def _running_terms(spec: ir.Spec, plan: _StatePlan, tensors: dict[str, torch.Tensor],
                   options: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(a_t, b_t) for every token of the slice, `[B, T, H, *dims]`, in float64."""
    rm = plan.transition.running_max
    assert rm is not None
    tok = _Tokens(spec, tensors, options)
    shape = (tok.B * tok.T, tok.H, *(tok.dims[d] for d in plan.dims))
    a = torch.zeros(shape, dtype=torch.float64) if rm.shift is None else tok.ev.ev(rm.shift).expand(shape)
    b = tok.ev.ev(rm.floor).expand(shape)
    return (a.to(torch.float64).reshape(tok.B, tok.T, *shape[1:]),
            b.to(torch.float64).reshape(tok.B, tok.T, *shape[1:]))


def _running_element(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The slice as one max-plus element (Σ a, m at its end from m = −inf)."""
    if a.shape[1] == 0:
        return a.sum(1), torch.full_like(a.sum(1), -torch.inf)
    A = a.cumsum(1)
    return A[:, -1], A[:, -1] + (b - A).amax(1)


def _running_prev(a: torch.Tensor, b: torch.Tensor, m0: torch.Tensor) -> torch.Tensor:
    """m_{t-1} for every token of the slice from the entering m0 `[B, H, *dims]`: m_t = A_t + max(m0, cummax(b − A))."""
    m0 = m0.to(torch.float64)
    if a.shape[1] == 0:
        return a
    A = a.cumsum(1)
    m = A + torch.maximum(m0.unsqueeze(1), (b - A).cummax(1).values)
    return torch.cat([m0.unsqueeze(1), m[:, :-1]], 1)


def _apply_transition(plan: _StatePlan, a: torch.Tensor | None, state: torch.Tensor) -> torch.Tensor:
    """`A · state` for a state `[B, H, *dims]`."""
    if a is None:
        return state
    if a.is_complex() != state.is_complex():
        a, state = (x.to(complex_dtype(_DTYPE)) for x in (a, state))
    if plan.form == "elementwise":
        return a * state
    if len(plan.dims) == 1:
        return torch.einsum("bhij,bhj->bhi", a, state)
    if plan.transition.side is Side.RIGHT:
        return torch.einsum("bhkv,bhvw->bhkw", state, a)
    return torch.einsum("bhij,bhjv->bhiv", a, state)


# ---------------------------------------------------------------------------------------------
# the exchange: one all-gather forward, one all-reduce backward
# ---------------------------------------------------------------------------------------------
class _Exchange(torch.autograd.Function):
    """All-gather of each rank's flat summary `[n]` into `[P, n]`; `passthrough` tensors come back unchanged.

    Backward: every rank's loss may depend on every rank's summary, so the gradient of rank r's summary is
    the sum over ranks of their gradient for row r — an all-reduce of `[P, n]`, row r kept. The
    passthrough puts this node on rank 0's backward path (rank 0 uses no gathered row, but its peers wait
    for its part of the all-reduce); the anchor makes the node exist on every rank whenever grad is on.
    """

    @staticmethod
    def forward(ctx: Any, group: Any, anchor: torch.Tensor, flat: torch.Tensor,
                *passthrough: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.group = group
        ctx.rank = dist.get_rank(group)
        world = dist.get_world_size(group)
        rows = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(rows, flat.contiguous(), group=group)
        return (torch.stack(rows), *(x.view_as(x) for x in passthrough))

    @staticmethod
    def backward(ctx: Any, grad_rows: torch.Tensor, *grad_pass: torch.Tensor) -> tuple[Any, ...]:
        total = grad_rows.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=ctx.group)
        return (None, None, total[ctx.rank], *grad_pass)


def _pack(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Tensors (real or complex) as one flat fp32 vector, differentiably."""
    flat = [(torch.view_as_real(p) if p.is_complex() else p).to(_DTYPE).reshape(-1) for p in parts]
    return torch.cat(flat) if flat else torch.zeros(0, dtype=_DTYPE)


def _unpack(flat: torch.Tensor, like: Sequence[tuple[tuple[int, ...], bool]]) -> list[torch.Tensor]:
    """The inverse of `_pack`, given each part's (shape, complex)."""
    out, at = [], 0
    for shape, cplx in like:
        n = int(torch.Size(shape).numel()) * (2 if cplx else 1)
        x = flat[at: at + n]
        at += n
        out.append(torch.view_as_complex(x.reshape(*shape, 2)) if cplx else x.reshape(shape))
    return out


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


def _zeros_state(spec: ir.Spec, plan: _StatePlan, call: _Call) -> torch.Tensor:
    """A zero state `[B, H, *dims]` for this call's sizes."""
    first = next(iter(call.tensors.values()))
    sizes = infer_sizes(spec, _ungroup(spec, call.tensors))
    shape = (sizes.batch, sizes.heads, *(dict(sizes.dims)[d] for d in plan.dims))
    return torch.zeros(shape, dtype=complex_dtype(_DTYPE) if plan.complex else _DTYPE, device=first.device)


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
        self.plans = _plans(self.rec.spec)

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
        sizes = infer_sizes(self.rec.spec, _ungroup(self.rec.spec, tensors))
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
            _rows, anchor = _Exchange.apply(self.group, anchor, _pack(parts), anchor)
        parts: list[torch.Tensor] = []
        shapes = iter(self._layout(call.tensors))
        for p in self.plans:
            if p.form == "running_max":
                continue
            if p.form != "identity":  # rank 0's A is never used: a placeholder of the right size
                shape, cplx = next(shapes)
                parts.append(torch.zeros(shape, dtype=complex_dtype(_DTYPE) if cplx else _DTYPE, device=anchor.device))
            next(shapes)
            parts.append(finals[p.name])
        outs = _as_tuple(out)
        _rows, *outs = _Exchange.apply(self.group, anchor, _pack(parts), *outs)
        return _single(outs), None

    def _later(self, args: Sequence[Any], kwargs: dict[str, Any], call: _Call,
               anchor: torch.Tensor, rank: int, want_final: bool) -> tuple[Any, Any]:
        """Rank r > 0: summarise the slice, exchange, fold the ranks before, re-run from the true state."""
        spec = self.rec.spec
        entering: dict[str, torch.Tensor] = {}  # the running maxes entering this slice
        running: dict[str, torch.Tensor] = {}  # their m_{t-1} over this slice
        start: Any = None
        if self._has_running:
            terms = {p.name: _running_terms(spec, p, call.tensors, call.options)
                     for p in self.plans if p.form == "running_max"}
            parts = [x.to(_DTYPE) for a, b in terms.values() for x in _running_element(a, b)]
            rows, anchor = _Exchange.apply(self.group, anchor, _pack(parts), anchor)
            layout = self._layout(call.tensors, running=True)
            gathered = [_unpack(rows[j], layout) for j in range(rank)]
            for i, name in enumerate(terms):
                m = gathered[0][2 * i + 1]  # rank 0's final m, then m <- max(Σa_j + m, max_j)
                for element in gathered[1:]:
                    m = torch.maximum(element[2 * i] + m, element[2 * i + 1])
                entering[name] = m
                running[name] = _running_prev(*terms[name], m)
            # the zero run starts from the true running maxes: the other states' coefficients read them
            start = [entering[p.name] if p.name in entering else _zeros_state(spec, p, call) for p in self.plans]
            start = _single([s.squeeze(1) for s in start] if call.headless else start)
        _, b = self._run(args, kwargs, call, start, True)
        parts = []
        for p, b_state in zip(self.plans, b or [], strict=True):
            if p.form == "running_max":
                continue
            a = _slice_transition(spec, p, call.tensors, call.options, running)
            if a is not None:
                parts.append(a)
            parts.append(b_state)
        layout = self._layout(call.tensors)
        rows, = _Exchange.apply(self.group, anchor, _pack(parts))
        linear = iter(self._entering_state([_unpack(rows[j], layout) for j in range(rank)]))
        state = [entering[p.name].to(_DTYPE) if p.form == "running_max" else next(linear) for p in self.plans]
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
            state = [_apply_transition(p, a, s) + b
                     for p, (a, b), s in zip(plans, split(element), state, strict=True)]
        return state
