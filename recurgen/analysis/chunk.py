"""chunk: the chunked-parallel form of each transition class, as readable math with the spec's names.

A chunk holds BT consecutive tokens (rows i, j = 1..BT of Q, K, V); S₀ is the state entering it and
`b` the cumulative log-decay inside it. The forms (see MODELS.md, "Transition classes"):
  identity / scalar     O = (Q Kᵀ ⊙ D) V + diag(exp(b)) Q S₀,  D_ij = exp(b_i − b_j) for j ≤ i
  diagonal (row-wise)   per-channel b ∈ R^K, intra-chunk exp(b_i − b_j) re-centred inside sub-chunks
  Householder           WY/UT: T = (I + tril(diag(β) K Kᵀ, −1))⁻¹ diag(β), W = T K, U = T V
  diagonal + rank-1     generalised WY with a triangular solve for the rank-1 read-outs
  elementwise, complex  blocked associative scan over (a, X) pairs, carried across blocks
  dense, coupled        none: recurrent mode only
Rows of K and V are the factors of `b_t = coef · k vᵀ`; Q is the readout's query. When the readout
contracts the state's last dim (Mamba2's `h @ C`) the roles are read off the transposed state.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import exprs as X
from .pretty import BRACKET_SUMS, Style, pretty
from .result import Axis, ChunkForm, ChunkMode, GateOrder, Readout, Side, StateAnalysis, Transition, TransitionKind

_S = Style(time="s", state_time="s-1")  # inside cumulative sums
_MASK = "M_ij = 1 for j ≤ i, else 0                              (causal mask)"
_T = Style(time="t")


@dataclass(frozen=True, slots=True)
class _Roles:
    q: str
    k: str
    v: str
    key_dim: str  # the state dim the query contracts
    value_dim: str
    transposed: bool  # roles read off the transposed state
    exact: bool  # b_t is a single outer product and the readout a contraction: the names are real


def roles(t: Transition, readouts: tuple[Readout, ...]) -> _Roles:
    dims = t.linear.ty.dims
    read = next((r for ro in readouts for r in ro.reads if r.state == t.state and r.query is not None), None)
    contraction = read.contraction if read is not None else Side.LEFT
    q = pretty(read.query, _T) if read is not None and read.query is not None else "q_t"
    terms = t.offset_terms
    if not dims:  # a scalar state (a normaliser `z = z + 1`): no key or value dim
        return _Roles(q, pretty(t.offset, _T) if t.offset is not None else "b_t", "1", "", "", False, False)
    if len(dims) == 1:
        k = pretty(t.offset, _T) if t.offset is not None else "b_t"
        return _Roles(q, k, "1", dims[0], "", False, read is not None and t.offset is not None)
    transposed = contraction is Side.RIGHT
    if not terms or len(terms) != 1:
        return _Roles(q, "k_t", "v_t", dims[-1] if transposed else dims[0], dims[0] if transposed else dims[-1],
                      transposed, False)
    term = terms[0]
    key, val = (term.right, term.left) if transposed else (term.left, term.right)
    h = t.householder
    coef = term.coef
    if coef is not None and not (h is not None and coef == h.beta):
        key = X.mul(coef, key)
    return _Roles(q, pretty(key, _T), pretty(val, _T), dims[-1] if transposed else dims[0],
                  dims[0] if transposed else dims[-1], transposed, read is not None)


def _header(r: _Roles, beta: str = "") -> str:
    rows = f"rows of Q, K, V: {r.q}, {r.k}, {r.v}" + (f"; B = diag({beta})" if beta else "")
    if r.transposed:
        rows += "  (the state is stored transposed: the readout contracts its last dim)"
    if not r.exact:
        rows += "  (Q: the readout's query; K, V: the factors of b_t)"
    return rows


def chunk_form(t: Transition, readouts: tuple[Readout, ...]) -> ChunkForm:
    k = t.kind
    if k is TransitionKind.DENSE:
        return ChunkForm(ChunkMode.NONE, (f"{no_chunk_reason(t)}; recurrent mode only",))
    if k is TransitionKind.RUNNING_MAX:
        return ChunkForm(ChunkMode.PREFIX_MAX, _prefix_max(t))
    if X.is_zero(t.linear):  # reads no state: nothing to carry across tokens (and no log-decay: log 0)
        b = pretty(t.offset, _T) if t.offset is not None else "0"
        if t.loop is not None:
            return ChunkForm(ChunkMode.SCAN, (f"no recurrence (A_t = 0): {t.state}_t = {b}, per token, in parallel",))
        return ChunkForm(ChunkMode.SHIFT, (f"no recurrence (A_t = 0): {t.state}_t = {b}, every token at once; a "
                                           f"state that reads {t.state}_(t-1) takes it shifted by one token, the "
                                           "initial state first (an input term)",))
    r = roles(t, readouts)
    if t.shifted and len(t.offset_terms or ()) != 1 and t.decay is not None and len(t.linear.ty.dims) == 2 and \
            k in (TransitionKind.SCALAR, TransitionKind.DIAGONAL):  # b_t: this token's and the previous one's terms
        return ChunkForm(ChunkMode.SCAN, _scan(t, False))
    if k is TransitionKind.IDENTITY or k is TransitionKind.SCALAR:
        return ChunkForm(ChunkMode.MATMUL, _scalar(t, r))
    if t.axis is Axis.ELEMENTWISE or k is TransitionKind.COMPLEX_DIAGONAL:
        # complex decays, row-wise ones included, run the scan family: the matmul kernels are real
        prev = any(r.prev for ro in readouts for r in ro.reads if r.state == t.state)
        return ChunkForm(ChunkMode.SCAN, _scan(t, prev))
    if k in (TransitionKind.DIAGONAL, TransitionKind.COMPLEX_DIAGONAL):
        gate_dim = t.linear.ty.dims[0] if t.axis is Axis.ROWS else t.linear.ty.dims[-1]
        if gate_dim != r.key_dim:  # the matmul kernels gate the dim the query contracts
            return ChunkForm(ChunkMode.SCAN, _scan(t, False))
        return ChunkForm(ChunkMode.MATMUL, _diagonal(t, r))
    if k is TransitionKind.HOUSEHOLDER:
        return ChunkForm(ChunkMode.WY, _householder(t, r))
    return ChunkForm(ChunkMode.WY, _dplr(t, r))


def no_chunk_reason(t: Transition) -> str:
    """Why a dense or coupled transition has no chunk form (explain and the chunk plan say the same)."""
    if t.coupled:
        others = ", ".join(f"`{c}`" for c in t.coupled)
        return (f"the update of `{t.state}` reads {others}, so they evolve jointly (coupled states): one block "
                f"transition over [{t.state}, {', '.join(t.coupled)}], e.g. a 2×2 rotation or a momentum, which no "
                "chunk family has a form for")
    return f"`{t.state}` has a dense transition (no diagonal, Householder or diagonal-plus-rank-1 structure)"


def _log(t: Transition) -> str:
    d = t.decay
    if d is None:
        return "0"
    if d.log is not None:
        return pretty(d.log, _S, BRACKET_SUMS)
    return f"log({pretty(d.coef, _S)})"


def _scalar(t: Transition, r: _Roles) -> tuple[str, ...]:
    lines = [_header(r)]
    if t.kind is TransitionKind.IDENTITY:
        lines += [_MASK,
                  "O = (Q Kᵀ ⊙ M) V + Q S₀                                (intra-chunk + inter-chunk)",
                  "S_BT = S₀ + Kᵀ V                                       (state passed to the next chunk)"]
        return tuple(lines)
    lines += [f"b_i = Σ_{{s≤i}} {_log(t)}" + ("   (time-invariant: b_i = i · log-decay)" if t.time_invariant else
                                               "   (cumulative log-decay, one scalar per token)"),
              "D_ij = exp(b_i − b_j) for j ≤ i, else 0                 (decay mask; b_i − b_j ≤ 0 stays finite)",
              "O = (Q Kᵀ ⊙ D) V + diag(exp(b)) Q S₀                   (intra-chunk + inter-chunk)",
              "S_BT = exp(b_BT) S₀ + (diag(exp(b_BT − b)) K)ᵀ V        (state passed to the next chunk)"]
    return tuple(lines)


def _diagonal(t: Transition, r: _Roles) -> tuple[str, ...]:
    gate_dim = t.linear.ty.dims[0] if t.axis is Axis.ROWS else t.linear.ty.dims[-1]
    lines = [_header(r), f"b_i = Σ_{{s≤i}} {_log(t)} ∈ R^{gate_dim}   (per-channel cumulative log-decay)", _MASK,
             "O = ((Q ⊙ exp(b)) (K ⊙ exp(−b))ᵀ ⊙ M) V + (Q ⊙ exp(b)) S₀",
             "    exp(b_i − b_j) is formed per channel around a reference row of each sub-chunk",
             "    (e.g. 16 tokens), never as exp(−b_j) alone, which overflows for strong decays",
             f"S_BT = diag(exp(b_BT)) S₀ + (K ⊙ exp(b_BT − b))ᵀ V   (gate on the key dim {gate_dim})"]
    return tuple(lines)


def _scan(t: Transition, prev: bool) -> tuple[str, ...]:
    d = t.decay
    a = pretty(d.coef, _T) if d is not None else "a_t"
    b = pretty(t.offset, _T) if t.offset is not None else "0"
    over = f"[{', '.join(d.coef.ty.dims)}]" if d is not None and d.coef.ty.dims else "a scalar"
    why = (f"b_t adds the previous token's term ({', '.join(t.shifted)}) to this token's, not one outer product"
           if t.shifted and t.axis is not Axis.ELEMENTWISE and not t.linear.ty.complex else
           f"the decay differs per state element ({over})" if t.axis is Axis.ELEMENTWISE else
           f"the decay ({over}) is complex and the matmul kernels are real" if t.linear.ty.complex else
           f"the decay ({over}) is on the state dim the readout does not contract, and the matmul kernels gate "
           "the contracted one")
    # Same closed form as the operator: complex decays multiply (operator.py uses the DIAGONAL form).
    log = d is not None and d.log is not None and d.logspace and t.kind is not TransitionKind.COMPLEX_DIAGONAL
    op = ("(g2, X2) ∘ (g1, X1) = (g1 + g2, exp(g2) ⊙ X1 + X2) with g = log a" if log else
          "(a2, X2) ∘ (a1, X1) = (a2 ⊙ a1, a2 ⊙ X1 + X2)")
    cx = " (complex)" if t.kind is TransitionKind.COMPLEX_DIAGONAL else ""
    return (f"scan form: {why}, so there is no matmul chunking",
            f"elements (a_t, X_t) = ({a}, {b}){cx}",
            f"within a block of BT tokens: inclusive associative scan with {op}",
            "across blocks: S_t = A_(block start..t) ⊙ S_start + X_(block start..t), S_start carried block to block",
            "the readout is applied per token to S_t" + (f", and prev({t.state}) to S_(t-1): the scanned "
                                                         "states shifted by one token, the initial state first"
                                                         if prev else ""))


def _prefix_max(t: Transition) -> tuple[str, ...]:
    rm = t.running_max
    assert rm is not None
    m = t.state
    a = pretty(rm.shift, _T) if rm.shift is not None else "0"
    return (f"running max: elements (a_t, b_t) = ({a}, {pretty(rm.floor, _T)}), {m}_t = max(a_t + {m}_(t−1), b_t)",
            "A_t = Σ_{s≤t} a_s                                        (cumulative shift, one value per token)",
            f"{m}_t = A_t + max({m}₀, max_{{s≤t}} (b_s − A_s))              (a cumulative max over the sequence)",
            "in float64 (A_t grows like t), before the states that read it: they see the whole sequence")


def _householder(t: Transition, r: _Roles) -> tuple[str, ...]:
    h = t.householder
    assert h is not None
    beta = pretty(h.beta, _T)
    lines = [_header(r, beta)]
    if t.steps > 1:
        lines.append(f"{t.steps} Householder steps per token: a chunk unrolls BT · {t.steps} steps, each step a row")
    term = t.offset_terms[0] if t.offset_terms and len(t.offset_terms) == 1 else None
    if term is None or term.left != h.key or term.coef != h.beta:
        lines.append(f"b_t is not β_t k_t vᵀ with the Householder's β and k: V := b_t's values / {beta} (rescaled)")
    if h.alpha is None:
        lines += ["T = (I + tril(B K Kᵀ, −1))⁻¹ B                       (UT transform, forward substitution)",
                  "W = T K,  U = T V,  Ũ = U − W S₀                        (new values after the chunk's updates)",
                  "O = Q S₀ + (Q Kᵀ ⊙ M) Ũ,  M_ij = 1 for j ≤ i",
                  "S_BT = S₀ + Kᵀ Ũ"]
        return tuple(lines)
    log = pretty(h.alpha.log, _S, BRACKET_SUMS) if h.alpha.log is not None else f"log({pretty(h.alpha.coef, _S)})"
    if h.order is GateOrder.SCALAR:
        lines += [f"b_i = Σ_{{s≤i}} {log},  Γ_ij = exp(b_i − b_j) for j ≤ i   (scalar gate, cumulative)",
                  "T = (I + tril(B (K Kᵀ ⊙ Γ), −1))⁻¹ B",
                  "W = T (diag(exp(b)) K),  U = T V,  Ũ = U − W S₀",
                  "O = diag(exp(b)) Q S₀ + (Q Kᵀ ⊙ Γ) Ũ",
                  "S_BT = exp(b_BT) S₀ + (diag(exp(b_BT − b)) K)ᵀ Ũ"]
        return tuple(lines)
    lines += [f"b_i = Σ_{{s≤i}} {log} ∈ R^{r.key_dim}   (per-channel gate, cumulative)", _MASK,
              "T = (I + tril(B (K ⊙ exp(b)) (K ⊙ exp(−b))ᵀ, −1))⁻¹ B   (exp(b_i − b_j) re-centred per sub-chunk)",
              "W = T (K ⊙ exp(b)),  U = T V,  Ũ = U − W S₀",
              "O = (Q ⊙ exp(b)) S₀ + ((Q ⊙ exp(b)) (K ⊙ exp(−b))ᵀ ⊙ M) Ũ",
              "S_BT = diag(exp(b_BT)) S₀ + (K ⊙ exp(b_BT − b))ᵀ Ũ"]
    if h.order is GateOrder.LEFT:
        lines.append("(the gate multiplies after the reflection: shift b by one token in W and T)")
    return tuple(lines)


def _dplr(t: Transition, r: _Roles) -> tuple[str, ...]:
    lr = t.lowrank
    assert lr is not None
    u, w = pretty(lr.u, _T), pretty(lr.w, _T)
    # μ, ν name the rank-1 factors: RWKV7's own `w` is its log-decay and its `a`, `b` are ν, μ.
    return (_header(r),
            f"A_t = diag({pretty(lr.diag.coef, _T)}) + μ_t ν_tᵀ with μ_t = {u}, ν_t = {w}; rows of U, N: μ_t, ν_t",
            f"b_i = Σ_{{s≤i}} {_log(t)} ∈ R^{r.key_dim}   (per-channel cumulative log-decay)",
            "N̂ = N ⊙ exp(b_{i−1}),  Û = U ⊙ exp(−b),  K̂ = K ⊙ exp(−b)   (re-centred per sub-chunk)",
            "P = (I − tril(N̂ Ûᵀ, −1))⁻¹ (N̂ S₀ + tril(N̂ K̂ᵀ, −1) V)     (generalised WY: the rank-1 read-outs)",
            "O = (Q ⊙ exp(b)) S₀ + tril((Q ⊙ exp(b)) Ûᵀ) P + tril((Q ⊙ exp(b)) K̂ᵀ) V",
            "S_BT = diag(exp(b_BT)) (S₀ + Ûᵀ P + K̂ᵀ V)")



def walked_states(states: tuple[StateAnalysis, ...]) -> tuple[str, ...]:
    """The states chunk mode has to walk token by token; every other state can run its chunk form.

    A state without a chunk form is walked, and so is every state such a walk reads (the walk needs its
    value at each token, which a chunk form only yields through its readout). A state that reads another is
    coupled, has no chunk form (classify.py), and is walked itself. So one dense state no other state reads
    leaves the rest chunkable: a GLA state beside a dense `M @ h` can run its matmul kernels while `h` walks.
    (codegen/chunk_plan.py does not use this yet: one walked state still makes the whole spec recurrent-only.)
    """
    walked = {s.state for s in states if s.chunk.mode is ChunkMode.NONE}
    by_name = {s.state: s.transition for s in states}
    todo = list(walked)
    while todo:
        for read in by_name[todo.pop()].coupled:
            if read not in walked:
                walked.add(read)
                todo.append(read)
    return tuple(s.state for s in states if s.state in walked)
