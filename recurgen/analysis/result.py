"""result: the dataclasses the analysis stage hands to later stages (frozen, no sympy objects).

Structured pieces are IR expressions (`ir.Expr`), so the planner can print them with its own printers;
derived math meant for people (operator, chunk form) is plain text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .. import ir
from ..errors import NOSPAN, Diagnostic, Span

_POS = {"compare": False, "repr": False, "default": NOSPAN}


class TransitionKind(Enum):
    """The class of `A_t` in `S_t = A_t S_{t-1} + b_t` (see /work/shared/MODELS.md, "Transition classes")."""

    IDENTITY = "identity"  # A_t = I: linear attention
    SCALAR = "scalar"  # A_t = a_t I
    DIAGONAL = "diagonal"  # A_t = diag(a_t) on rows (GLA) or an elementwise decay (Mamba, HGRN)
    HOUSEHOLDER = "householder"  # A_t = α_t (I − β_t k_t k_tᵀ), possibly with a per-row gate, n steps per token
    DPLR = "dplr"  # A_t = diag(d_t) + u_t w_tᵀ: diagonal plus rank-1 (RWKV7)
    COMPLEX_DIAGONAL = "complex_diagonal"  # A_t = diag(λ_t), λ complex (LRU, S5, S4D, GateLoop)
    RUNNING_MAX = "running_max"  # m_t = max(a_t + m_{t-1}, b_t): affine in the max-plus semiring (xLSTM's stabiliser)
    DENSE = "dense"  # anything else that is linear, including coupled states: recurrent mode only


class Side(Enum):
    """Where the transition multiplies the state: `S_t = A_t S_{t-1}` (LEFT) or `S_{t-1} A_t` (RIGHT)."""

    LEFT = "left"
    RIGHT = "right"


class Axis(Enum):
    """How a diagonal decay covers a matrix state `[P, Q]` (vector states are always ELEMENTWISE)."""

    ROWS = "row-wise"  # a [P] decay on the first state dim: diag(a) S, chunkable with matmuls (GLA)
    COLUMNS = "column-wise"  # a [Q] decay on the last state dim: S diag(a)
    ELEMENTWISE = "elementwise"  # a decay per state element (Mamba, HGRN, Longhorn): scan form


class GateOrder(Enum):
    """Where a Householder step's gate sits in the matrix product `A_t`."""

    SCALAR = "scalar"  # α (I − β k kᵀ): a scalar gate commutes with the reflection
    LEFT = "left"  # diag(α) (I − β k kᵀ)
    RIGHT = "right"  # (I − β k kᵀ) diag(α): KDA, whose rank-1 term is β k (k ⊙ α)ᵀ


@dataclass(frozen=True, slots=True)
class Decay:
    """A diagonal (or scalar) decay `a_t`."""

    coef: ir.Expr  # a_t itself: a scalar, or per state element on the dims of `coef.ty`
    log: ir.Expr | None  # log a_t when it has a closed form: `x` for `exp(x)`, `logsigmoid(f)` for `sigmoid(f)`
    logspace: bool  # a_t is written `exp(x)`: the log is exact and cumulative sums of it are safe


@dataclass(frozen=True, slots=True)
class Householder:
    """One Householder step `α (I − β k kᵀ)` (the gate placed as `order` says)."""

    alpha: Decay | None  # the gate; None when α = 1 (DeltaNet)
    order: GateOrder
    beta: ir.Expr
    key: ir.Expr  # k (vector on the first dim of the side the transition acts on)


@dataclass(frozen=True, slots=True)
class LowRank:
    """`diag(d) + u wᵀ` (RWKV7's generalised delta rule)."""

    diag: Decay
    u: ir.Expr
    w: ir.Expr


@dataclass(frozen=True, slots=True)
class RunningMax:
    """`m_t = max(shift_t + m_{t-1}, floor_t)`: a running maximum, affine in the max-plus semiring.

    Other states may read `m` in their coefficients (xLSTM carries `C_t exp(-m_t)` this way): `m` reads only
    inputs, so its whole sequence is known before any other state's, and they stay affine in themselves.
    """

    shift: ir.Expr | None  # a_t (None: 0)
    floor: ir.Expr  # b_t


@dataclass(frozen=True, slots=True)
class OuterTerm:
    """One term `coef · outer(left, right)` of `b_t`."""

    coef: ir.Expr | None  # a scalar factor, or None for 1
    left: ir.Expr
    right: ir.Expr


@dataclass(frozen=True, slots=True)
class Transition:
    """The classified transition of one state."""

    state: str
    kind: TransitionKind
    side: Side
    axis: Axis | None  # DIAGONAL and COMPLEX_DIAGONAL: how the decay covers the state
    decay: Decay | None  # SCALAR, DIAGONAL, COMPLEX_DIAGONAL: a_t; HOUSEHOLDER: the gate α; DPLR: the diagonal
    householder: Householder | None  # HOUSEHOLDER: one step (the same in each of `steps`)
    lowrank: LowRank | None  # DPLR
    steps: int  # transition steps per token (`update ... for j in J`: the size of J)
    loop: ir.Loop | None
    linear: ir.Expr  # L(□) as written: the update with the state replaced by the hole `□`
    offset: ir.Expr | None  # b_t (None: zero)
    offset_terms: tuple[OuterTerm, ...] | None  # b_t as a sum of outer products, when it is one
    coupled: tuple[str, ...]  # other states this update reads (then kind is DENSE: recurrent only)
    cross: tuple[tuple[str, ir.Expr], ...]  # for each of `coupled`: its linear part, with the hole
    input_dependent: bool  # A_t reads an input (False: time-invariant)
    evidence: str  # why this class, in words: "S is multiplied row-wise by exp(g_t), g_t: [K]"
    span: Span = field(**_POS)
    running_max: RunningMax | None = None  # RUNNING_MAX: its shift and floor
    driven_by: tuple[str, ...] = ()  # running-max states that A_t or b_t read (known before this state)
    shifted: tuple[str, ...] = ()  # memoryless states b_t reads: M_(t-1) is M's formula one token back (an input)

    @property
    def time_invariant(self) -> bool:
        return not self.input_dependent

    @property
    def chunkable(self) -> bool:
        """Has a chunked-parallel form (otherwise only the step-by-step recurrent kernel exists)."""
        return self.kind is not TransitionKind.DENSE

    def label(self) -> str:
        """Short class name for listings: `DIAGONAL (row-wise)`, `HOUSEHOLDER ×2 per token`."""
        text = self.kind.name
        if self.axis is not None:
            text += f" ({self.axis.value})"
        if self.kind is TransitionKind.HOUSEHOLDER and self.householder is not None:
            gate = self.householder
            text += " (α = 1)" if gate.alpha is None else \
                " (scalar gate)" if gate.order is GateOrder.SCALAR else " (per-channel gate)"
        if self.steps > 1:
            text += f" ×{self.steps} per token"
        if self.coupled:
            text += f" (coupled with {', '.join(self.coupled)})"
        return text


class OperatorForm(Enum):
    """The closed form of the associative operator on elements (A, X)."""

    ADDITIVE = "additive"  # A = I: X2 ∘ X1 = X1 + X2
    LOG_DIAGONAL = "log-diagonal"  # (g, X), A = diag(exp(g)): (g1 + g2, exp(g2) X1 + X2)
    DIAGONAL = "diagonal"  # (a, X), A = diag(a), a real or complex: (a2 a1, a2 X1 + X2)
    WY = "wy"  # (g, K, W, X), A = exp(g) (I − K Wᵀ): a WY product that grows by rank per step
    DIAG_LOW_RANK = "diag-low-rank"  # (l, U, V, X), A = diag(exp(l)) + U Vᵀ: generalised WY
    DENSE = "dense"  # (A, X): (A2 A1, A2 X1 + X2) with dense matrices
    MAX_PLUS = "max-plus"  # (a, b): m -> max(a + m, b); (a2, b2) ∘ (a1, b1) = (a1 + a2, max(a2 + b1, b2))


@dataclass(frozen=True, slots=True)
class AssocOp:
    """The associative operator `(A₂, b₂) ∘ (A₁, b₁) = (A₂ A₁, A₂ b₁ + b₂)` in the class's closed form."""

    form: OperatorForm
    element: str  # what an element holds: "(g, X): A = diag(exp(g)) on rows, X the accumulated b"
    formula: str  # "(g2, X2) ∘ (g1, X1) = (g1 + g2, diag(exp(g2)) X1 + X2)"
    verified: bool  # associativity (and the closed form's product) checked with sympy
    verification: str  # "associativity: verified symbolically (commutative symbols)"


class ChunkMode(Enum):
    MATMUL = "matmul"  # intra-chunk attention-like matmuls + state across chunks (identity/scalar/diag rows)
    WY = "wy"  # WY / UT representation (Householder), generalised WY (DPLR)
    SCAN = "scan"  # blocked associative scan (elementwise and complex diagonal decays)
    PREFIX_MAX = "prefix-max"  # a running max: cumulative sum and cumulative max, before the other states
    SHIFT = "shift"  # memoryless (A_t = 0): its formula for every token, read one token back as an input term
    NONE = "none"  # recurrent mode only


@dataclass(frozen=True, slots=True)
class ChunkForm:
    mode: ChunkMode
    lines: tuple[str, ...]  # readable math, one step per line


@dataclass(frozen=True, slots=True)
class StateRead:
    """One read of a state by an output: the state-linear sub-expression of the readout."""

    output: str
    state: str
    prev: bool  # reads S_{t-1} through `prev(S)`
    expr: ir.Expr  # the linear sub-expression, with the hole `□` for the state
    query: ir.Expr | None  # `q` when the read is a contraction `q @ □` (LEFT) or `□ @ q` (RIGHT), else None
    contraction: Side | None  # which state dim `query` contracts: LEFT = first, RIGHT = last


@dataclass(frozen=True, slots=True)
class Readout:
    output: str
    linear: bool  # affine in the states (False: e.g. mLSTM's normalised readout)
    reads: tuple[StateRead, ...]
    offset: ir.Expr | None  # the state-free part (RWKV6's bonus, Mamba's D ⊙ u skip), when linear
    description: str  # "linear: o_t = scale · q_tᵀ S_t" / "normalised: ..."


@dataclass(frozen=True, slots=True)
class StateAnalysis:
    transition: Transition
    operator: AssocOp
    chunk: ChunkForm

    @property
    def state(self) -> str:
        return self.transition.state

    @property
    def kind(self) -> TransitionKind:
        return self.transition.kind


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything `analyze(spec)` derives; `report.dump(analysis)` is a stable text dump."""

    spec: ir.Spec
    states: tuple[StateAnalysis, ...]  # one per state, in declaration order
    readouts: tuple[Readout, ...]  # one per output
    diagnostics: tuple[Diagnostic, ...]  # warnings (numerical dangers); errors raise SpecError instead

    def state(self, name: str) -> StateAnalysis:
        for s in self.states:
            if s.state == name:
                return s
        raise KeyError(name)

    @property
    def transitions(self) -> tuple[Transition, ...]:
        return tuple(s.transition for s in self.states)

    @property
    def kinds(self) -> tuple[TransitionKind, ...]:
        return tuple(s.kind for s in self.states)

    @property
    def recurrent_only(self) -> bool:
        """No chunked form exists for some state: only the recurrent kernel can be generated."""
        return any(not s.transition.chunkable for s in self.states)
