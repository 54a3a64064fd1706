"""summary: one rank's slice of the time axis as an affine element `(A, b)` of each state's recurrence.

Per state a plan (how `A` is probed from the transition's linear part and how it acts on the state), `A` over a
slice (the linear part evaluated for every token at once, then a balanced-tree product), and the running
maxes' max-plus elements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .. import ir
from ..analysis import analyze
from ..analysis.exprs import HOLE
from ..analysis.result import Axis, Side, Transition, TransitionKind
from ..ir import Kind
from ..oracle import Evaluator, Sizes, complex_dtype, infer_sizes

_ELEMENTWISE = (TransitionKind.SCALAR, TransitionKind.DIAGONAL, TransitionKind.COMPLEX_DIAGONAL)
DTYPE = torch.float32  # summaries are exchanged in fp32, the precision of the kernels' final states


# ---------------------------------------------------------------------------------------------
# per-state plan: how A is probed from the transition's linear part and how it acts on the state
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatePlan:
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


def state_plans(spec: ir.Spec) -> tuple[StatePlan, ...]:
    """One plan per state; ValueError for a state without a closed-form composition."""
    analysis = analyze(spec)
    plans = []
    for s in spec.states:
        t = analysis.state(s.name).transition
        if t.kind is TransitionKind.DENSE or t.coupled or t.shifted:
            # a memoryless state read one token back (`prev(x)`) crosses the slice boundary outside (A, X)
            why = f"is coupled with {', '.join(t.coupled)}" if t.coupled else \
                f"reads the previous token's {', '.join(t.shifted)}" if t.shifted else "has a dense transition"
            raise ValueError(f"{spec.name}: context parallelism needs a closed-form composition of each state's "
                             f"transition; state `{s.name}` {why} (class {t.label()}). Supported classes: "
                             "identity, scalar, diagonal, complex diagonal, Householder, DPLR")
        if len(s.ty.dims) > 2:
            raise ValueError(f"{spec.name}: context parallelism supports vector and matrix states; "
                             f"state `{s.name}` has {len(s.ty.dims)} dims")
        plans.append(StatePlan(s.name, s.ty.dims, s.ty.complex, t))
    return tuple(plans)


# ---------------------------------------------------------------------------------------------
# A over a slice: the linear part evaluated for every token at once, then a balanced-tree product
# ---------------------------------------------------------------------------------------------
def ungroup(spec: ir.Spec, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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
        tensors = ungroup(spec, tensors)
        sizes = infer_sizes(spec, tensors)
        self.B, self.T, self.H, self.dims = sizes.batch, sizes.time, sizes.heads, dict(sizes.dims)
        rows = self.B * self.T * repeat
        device = tensors[spec.inputs[0].name].device
        self.ev = Evaluator(spec, Sizes(rows, 1, self.H, self.dims), DTYPE, device)
        cdtype = complex_dtype(DTYPE)
        cast = {n: x.to(cdtype if x.is_complex() else DTYPE) for n, x in tensors.items()}
        for t in spec.inputs:
            x = cast[t.name].flatten(0, 1)  # [B·T, H, ...]
            # `repeat` copies of each token, adjacent: one per basis vector of a vector state's probe
            self.ev.env[(t.name, Kind.INPUT)] = x.repeat_interleave(repeat, dim=0) if repeat > 1 else x
        for name, seq in (running or {}).items():  # m_{t-1} per token, read like an input
            x = seq.to(DTYPE).flatten(0, 1)
            self.ev.env[(name, Kind.STATE)] = x.repeat_interleave(repeat, dim=0) if repeat > 1 else x
        for p in spec.params:
            self.ev.env[(p.name, Kind.PARAM)] = cast[p.name].unsqueeze(0)
        for c in spec.consts:
            self.ev.env[(c.name, Kind.CONST)] = self.ev.ev(c.value)
        for o in spec.options:
            given = options.get(o.name)
            self.ev.env[(o.name, Kind.OPTION)] = self.ev.ev(o.value) if given is None else \
                torch.as_tensor(given, dtype=DTYPE, device=device).reshape(1, 1)

    def apply_linear(self, t: Transition, x: torch.Tensor) -> torch.Tensor:
        """`L_t(x)` for every token: the update's linear part applied once per transition step."""
        for j in range(t.steps):
            if t.loop is not None:
                self.ev.loop_index[t.loop.var] = j
            self.ev.env[(HOLE, Kind.STATE)] = x
            x = self.ev.ev(t.linear)
        return x


def _per_token(plan: StatePlan, spec: ir.Spec, tensors: dict[str, torch.Tensor],
               options: dict[str, Any], running: dict[str, torch.Tensor]) -> torch.Tensor:
    """`A_t` for every token of the slice, `[B, T, H, *probe]` (`running`: each running max's m_{t-1})."""
    state_dtype = complex_dtype(DTYPE) if plan.complex else DTYPE
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


def _per_token_vector_matrix(plan: StatePlan, spec: ir.Spec, tensors: dict[str, torch.Tensor],
                             options: dict[str, Any], running: dict[str, torch.Tensor]) -> torch.Tensor:
    """A matrix transition on a vector state `[n]`: the state has no spare dim to hold an identity, so each
    token is evaluated on the n basis vectors (copies in the batch dim) and the columns stacked."""
    state_dtype = complex_dtype(DTYPE) if plan.complex else DTYPE
    n = plan.acting_size(dict(infer_sizes(spec, ungroup(spec, tensors)).dims))
    tok = _Tokens(spec, tensors, options, repeat=n, running=running)
    device = next(iter(tensors.values())).device
    basis = torch.eye(n, dtype=state_dtype, device=device).repeat(tok.B * tok.T, 1).unsqueeze(1)  # [B·T·n, 1, n]
    cols = tok.apply_linear(plan.transition, basis).to(state_dtype).expand(tok.B * tok.T * n, tok.H, n)
    # cols[(b, t, j), h, i] = A_t[i, j]
    return cols.reshape(tok.B, tok.T, n, tok.H, n).permute(0, 1, 3, 4, 2)


def _compose(plan: StatePlan) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """`(later, earlier) -> A_later ∘ A_earlier` on batched A's."""
    if plan.form == "elementwise":
        return torch.mul
    if plan.transition.side is Side.RIGHT:  # S_t = S_{t-1} A_t: earlier factors sit on the left
        return lambda later, earlier: earlier @ later
    return lambda later, earlier: later @ earlier


def _identity_like(plan: StatePlan, a: torch.Tensor) -> torch.Tensor:
    """The neutral A, shaped like one token of `a` `[B, 1, H, *probe]`."""
    shape = (a.shape[0], 1, *a.shape[2:])
    if plan.form == "elementwise":
        return torch.ones(shape, dtype=a.dtype, device=a.device)
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    return eye.expand(shape).clone()


def _tree_product(plan: StatePlan, a: torch.Tensor) -> torch.Tensor:
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


def slice_transition(spec: ir.Spec, plan: StatePlan, tensors: dict[str, torch.Tensor],
                      options: dict[str, Any], running: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """`A` of one state over the slice, `[B, H, *probe]` (None for the identity class)."""
    if plan.form == "identity":
        return None
    return _tree_product(plan, _per_token(plan, spec, tensors, options, running))


# ---------------------------------------------------------------------------------------------
# running maxes: m_t = max(a_t + m_{t-1}, b_t) composes in (max, +), and comes first
# ---------------------------------------------------------------------------------------------
def running_terms(spec: ir.Spec, plan: StatePlan, tensors: dict[str, torch.Tensor],
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


def running_element(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The slice as one max-plus element (Σ a, m at its end from m = −inf)."""
    if a.shape[1] == 0:
        return a.sum(1), torch.full_like(a.sum(1), -torch.inf)
    A = a.cumsum(1)
    return A[:, -1], A[:, -1] + (b - A).amax(1)


def running_prev(a: torch.Tensor, b: torch.Tensor, m0: torch.Tensor) -> torch.Tensor:
    """m_{t-1} for every token of the slice from the entering m0 `[B, H, *dims]`: m_t = A_t + max(m0, cummax(b − A))."""
    m0 = m0.to(torch.float64)
    if a.shape[1] == 0:
        return a
    A = a.cumsum(1)
    m = A + torch.maximum(m0.unsqueeze(1), (b - A).cummax(1).values)
    return torch.cat([m0.unsqueeze(1), m[:, :-1]], 1)


def apply_transition(plan: StatePlan, a: torch.Tensor | None, state: torch.Tensor) -> torch.Tensor:
    """`A · state` for a state `[B, H, *dims]`."""
    if a is None:
        return state
    if a.is_complex() != state.is_complex():
        a, state = (x.to(complex_dtype(DTYPE)) for x in (a, state))
    if plan.form == "elementwise":
        return a * state
    if len(plan.dims) == 1:
        return torch.einsum("bhij,bhj->bhi", a, state)
    if plan.transition.side is Side.RIGHT:
        return torch.einsum("bhkv,bhvw->bhkw", state, a)
    return torch.einsum("bhij,bhjv->bhiv", a, state)
