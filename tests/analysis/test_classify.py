"""Classification of the bundled specs, of alternative spellings, and rejection of non-affine updates."""

from __future__ import annotations

import pytest

from recurgen import ir
from recurgen.analysis import Axis, ChunkMode, GateOrder, Side, TransitionKind, analyze
from recurgen.analysis.chunk import walked_states
from recurgen.analysis.pretty import PLAIN, pretty
from recurgen.codegen.step import build_adjoint, build_step
from recurgen.errors import Severity, SpecError
from recurgen.frontend import from_text, load_spec
from recurgen.resources import bundled_spec_names

K = TransitionKind

# name -> per state: (kind, axis, time-invariant, steps per token)
EXPECTED: dict[str, tuple[tuple[TransitionKind, Axis | None, bool, int], ...]] = {
    "linear_attn": ((K.IDENTITY, None, True, 1),),
    "retention": ((K.SCALAR, None, True, 1),),
    "simple_gla": ((K.SCALAR, None, False, 1),),
    "mamba2": ((K.SCALAR, None, False, 1),),
    "gla": ((K.DIAGONAL, Axis.ROWS, False, 1),),
    "hgrn2": ((K.DIAGONAL, Axis.ROWS, False, 1),),
    "rwkv6": ((K.DIAGONAL, Axis.ROWS, False, 1),),
    "hgrn": ((K.DIAGONAL, Axis.ELEMENTWISE, False, 1),),
    "mamba": ((K.DIAGONAL, Axis.ELEMENTWISE, False, 1),),
    "longhorn": ((K.DIAGONAL, Axis.ELEMENTWISE, False, 1),),
    "rwkv7": ((K.DPLR, None, False, 1),),
    "delta_rule": ((K.HOUSEHOLDER, None, False, 1),),
    "gated_delta_rule": ((K.HOUSEHOLDER, None, False, 1),),
    "delta_product": ((K.HOUSEHOLDER, None, False, 2),),
    "kda": ((K.HOUSEHOLDER, None, False, 1),),
    "mlstm": ((K.SCALAR, None, False, 1), (K.SCALAR, None, False, 1), (K.RUNNING_MAX, None, False, 1)),
    "lru": ((K.COMPLEX_DIAGONAL, Axis.ELEMENTWISE, True, 1),),
    "s5": ((K.COMPLEX_DIAGONAL, Axis.ELEMENTWISE, True, 1),),
    "s4d": ((K.COMPLEX_DIAGONAL, Axis.ELEMENTWISE, True, 1),),
    "gateloop": ((K.COMPLEX_DIAGONAL, Axis.ROWS, False, 1),),
    "comba": ((K.DPLR, None, False, 1),),
    # h reads the hidden state carrying prev(B) prev(x)ᵀ: coupled, so a joint (dense) block
    "mamba3": ((K.COMPLEX_DIAGONAL, Axis.ROWS, False, 1), (K.SCALAR, None, True, 1)),
    "rwkv5": ((K.DIAGONAL, Axis.ROWS, True, 1),),
    "hawk": ((K.DIAGONAL, Axis.ELEMENTWISE, False, 1),),
    "mingru": ((K.DIAGONAL, Axis.ELEMENTWISE, False, 1),),
    "gsa": ((K.DIAGONAL, Axis.COLUMNS, False, 1), (K.DIAGONAL, Axis.ROWS, False, 1)),
    "based": ((K.IDENTITY, None, True, 1),) * 6,  # S0, S1, S2 ([K, K, V]) and the normaliser's z0, z1, z2
    # the oscillator's 2x2 block per channel, `sum(M * h, X)` with h: [X, P]: a dense transition of the one state
    "linoss": ((K.DENSE, None, True, 1),),
}


def test_every_bundled_spec_has_an_expectation() -> None:
    assert set(EXPECTED) == set(bundled_spec_names())


COUPLED: set[str] = set()  # bundled specs with coupled states: recurrent only (mamba3's h reads a memoryless state)
DENSE = {"linoss"}  # bundled specs with a dense transition of one state (a block per channel): recurrent only


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_classification(name: str) -> None:
    a = analyze(load_spec(name)[0])
    got = tuple((t.kind, t.axis, t.time_invariant, t.steps) for t in a.transitions)
    assert got == EXPECTED[name]
    coupled = name in COUPLED
    for t in a.transitions:
        # GSA's slot keys hk: [K, M] decay per slot, on their last dim: S diag(α), a right-side transition
        assert t.side is (Side.RIGHT if (name, t.state) == ("gsa", "hk") else Side.LEFT)
        if t.coupled:  # the evidence names the state it reads
            assert coupled, name
            assert t.evidence.startswith(f"{t.state}'s update reads "), t.evidence
        else:
            assert t.evidence.startswith(f"{t.state} ")
    assert a.recurrent_only == (coupled or name in DENSE)


def test_a_memoryless_state_is_read_as_an_input_term() -> None:
    """mamba3's h reads the hidden `prev(...)` state (it reads no state itself): not coupled, b_t holds the read."""
    a = analyze(load_spec("mamba3")[0])
    h = a.state("h").transition
    assert (h.coupled, h.shifted) == ((), ("_prev_B_re_B_im_x",))
    assert h.offset is not None
    assert "_prev_B_re_B_im_x" in ir.uses(h.offset, {ir.Kind.STATE})


def _var(name: str, dims: tuple[str, ...] = ()) -> ir.Var:
    return ir.Var(name, ir.Kind.INPUT, ir.Type(dims))


def _exp(x: ir.Expr) -> ir.Apply:
    return ir.Apply(ir.Op.EXP, (x,), x.ty)


def test_log_decays_stay_in_log_space() -> None:
    gla = analyze(load_spec("gla")[0]).transitions[0]
    assert gla.decay is not None
    assert gla.decay.coef == _exp(_var("g", ("K",)))
    assert gla.decay.log == _var("g", ("K",))
    assert gla.decay.logspace
    assert gla.evidence == "S is multiplied row-wise by exp(g_t), g_t: [K]"
    mlstm = analyze(load_spec("mlstm")[0]).transitions[0]
    assert mlstm.decay is not None
    assert mlstm.decay.logspace  # the stabilised forget gate f' = exp(log f + m_{t-1} − m_t)
    assert pretty(mlstm.decay.log, PLAIN) == "logsigmoid(fg) + m − max(logsigmoid(fg) + m, ig)"
    assert mlstm.driven_by == ("m",)


def test_householder_pieces() -> None:
    k, beta, g = _var("k", ("K",)), _var("beta"), _var("g")
    delta = analyze(load_spec("delta_rule")[0]).transitions[0]
    assert delta.householder is not None
    assert (delta.householder.alpha, delta.householder.beta, delta.householder.key) == (None, beta, k)
    gated = analyze(load_spec("gated_delta_rule")[0]).transitions[0]
    h = gated.householder
    assert h is not None
    assert h.alpha is not None
    assert (h.order, h.beta, h.key, h.alpha.coef, h.alpha.log) == (GateOrder.SCALAR, beta, k, _exp(g), g)
    kda = analyze(load_spec("kda")[0]).transitions[0]
    h = kda.householder
    assert h is not None
    assert h.alpha is not None
    assert (h.order, h.beta, h.key) == (GateOrder.RIGHT, beta, k)
    assert h.alpha.log == _var("g", ("K",))
    assert "the rank-1 term is beta_t · k_t (k_t ⊙ exp(g_t))ᵀ" in kda.evidence
    prod = analyze(load_spec("delta_product")[0]).transitions[0]
    assert prod.loop is not None
    assert prod.loop.size == 2
    assert prod.householder is not None
    assert prod.householder.key.op is ir.Op.INDEX


def test_dplr_and_b_t_factors() -> None:
    t = analyze(load_spec("rwkv7")[0]).transitions[0]
    assert t.lowrank is not None
    assert (t.lowrank.u, t.lowrank.w) == (_var("b", ("K",)), _var("a", ("K",)))
    assert t.lowrank.diag.log == _var("w", ("K",))
    assert t.offset_terms is not None
    assert len(t.offset_terms) == 1
    term = t.offset_terms[0]
    assert (term.coef, term.left, term.right) == (None, _var("k", ("K",)), _var("v", ("V",)))
    c, n, _ = analyze(load_spec("mlstm")[0]).transitions
    assert c.offset_terms is not None
    assert pretty(c.offset_terms[0].coef, PLAIN) == "exp(ig − max(logsigmoid(fg) + m, ig))"
    assert n.offset_terms is None
    assert n.offset is not None


def test_mlstm_readout_is_normalised() -> None:
    a = analyze(load_spec("mlstm")[0])
    (r,) = a.readouts
    assert not r.linear
    assert [(x.state, x.prev) for x in r.reads] == [("C", False), ("n", False), ("m", False)]
    assert r.description.endswith("with P1 = q_tᵀ C_t, P2 = q_tᵀ n_t, P3 = −m_t")  # −m: the floor exp(−m_t)


def test_rwkv6_reads_the_previous_state() -> None:
    (r,) = analyze(load_spec("rwkv6")[0]).readouts
    assert r.linear
    assert [(x.state, x.prev) for x in r.reads] == [("S", True)]
    assert r.offset is not None  # the bonus term


HEADER = """recurrence alt
input  q: [K], k: [K] normalized, v: [V], g: [K] logdecay, a: [] logdecay, beta: [] unit, f: [], w: [K] logdecay
input  b: [K], c: [K]
param  M: [K, K]
state  S: [K, V]
"""


def alt(update: str, extra: str = "") -> ir.Spec:
    return from_text(HEADER + extra + f"update S = {update}\noutput o: [V] = q @ S\n", "alt.rec")


def pieces(spec: ir.Spec) -> tuple[object, ...]:
    t = analyze(spec).transitions[0]
    h = t.householder
    return (t.kind, t.axis, t.side, t.decay.coef if t.decay else None,
            (h.order, h.beta, h.key, h.alpha.coef if h.alpha else None) if h else None,
            (t.lowrank.u, t.lowrank.w) if t.lowrank else None, t.offset)


SAME = [
    ("delta rule", "(I - beta * outer(k, k)) @ S + beta * outer(k, v)",
     ["S - beta * outer(k, k @ S) + beta * outer(k, v)",
      "S - outer(beta * k, k @ S) + beta * outer(k, v)",
      "S + beta * (outer(k, v) - outer(k, k @ S))",
      "I @ S - beta * (outer(k, k) @ S) + beta * outer(k, v)",
      "(I - outer(k, k) * beta) @ S + beta * outer(k, v)"]),
    ("GLA", "exp(g) * S + outer(k, v)",
     ["diag(exp(g)) @ S + outer(k, v)", "S * exp(g) + outer(k, v)"]),
    ("gated delta rule", "exp(a) * (I - beta * outer(k, k)) @ S + beta * outer(k, v)",
     ["exp(a) * S - exp(a) * beta * outer(k, k @ S) + beta * outer(k, v)",
      "(I - beta * outer(k, k)) @ (exp(a) * S) + beta * outer(k, v)"]),
    ("KDA", "(I - beta * outer(k, k)) @ (exp(g) * S) + beta * outer(k, v)",
     ["exp(g) * S - beta * outer(k, (k * exp(g)) @ S) + beta * outer(k, v)",
      "(I - beta * outer(k, k)) @ diag(exp(g)) @ S + beta * outer(k, v)"]),
    ("RWKV7", "exp(w) * S + outer(b, c @ S) + outer(k, v)",
     ["diag(exp(w)) @ S + outer(b, c) @ S + outer(k, v)", "(diag(exp(w)) + outer(b, c)) @ S + outer(k, v)"]),
]


@pytest.mark.parametrize(("what", "canonical", "spellings"), SAME, ids=[s[0] for s in SAME])
def test_alternative_spellings_classify_the_same(what: str, canonical: str, spellings: list[str]) -> None:
    want = pieces(alt(canonical))
    for s in spellings:
        assert pieces(alt(s)) == want, s


@pytest.mark.parametrize(("update", "kind", "axis", "side"), [
    ("S + outer(k, v)", K.IDENTITY, None, Side.LEFT),
    ("sigmoid(f) * S + outer(k, v)", K.SCALAR, None, Side.LEFT),
    ("0.9 * S + outer(k, v)", K.SCALAR, None, Side.LEFT),
    ("S * exp(-softplus(v)) + outer(k, v)", K.DIAGONAL, Axis.COLUMNS, Side.RIGHT),
    ("exp(g) * S * exp(-softplus(v)) + outer(k, v)", K.DIAGONAL, Axis.ELEMENTWISE, Side.LEFT),
    ("S @ (I - beta * outer(v, v)) + outer(k, v)", K.HOUSEHOLDER, None, Side.RIGHT),
    ("diag(exp(g)) @ (I - beta * outer(k, k)) @ S + outer(k, v)", K.HOUSEHOLDER, None, Side.LEFT),
    ("M @ S + outer(k, v)", K.DENSE, None, Side.LEFT),
    ("S + outer(k, k @ S) + outer(q, q @ S)", K.DENSE, None, Side.LEFT),
    ("exp(g) * S + S @ (I - outer(v, v))", K.DENSE, None, Side.LEFT),
    ("outer(k, k @ S) + outer(k, v)", K.DENSE, None, Side.LEFT),
    # Comba: the gate does not factor out of the rank-1 term, so no reflection (its β would be β/α)
    ("(exp(a) * I - beta * outer(k, k)) @ S + beta * outer(k, v)", K.DPLR, None, Side.LEFT),
])
def test_other_forms(update: str, kind: TransitionKind, axis: Axis | None, side: Side) -> None:
    t = analyze(alt(update)).transitions[0]
    assert (t.kind, t.axis, t.side) == (kind, axis, side), t.evidence


def test_comba_is_diagonal_plus_rank_1_without_a_division() -> None:
    t = analyze(alt("(exp(a) * I - beta * outer(k, k)) @ S + beta * outer(k, v)")).transitions[0]
    assert t.lowrank is not None
    assert t.decay is not None
    assert pretty(t.decay.coef, PLAIN) == "exp(a)"
    assert (pretty(t.lowrank.u, PLAIN), pretty(t.lowrank.w, PLAIN)) == ("−(beta · k)", "k")


def test_scalar_state_and_state_that_reads_no_state() -> None:
    """Issue 16: both crashed the analysis with an IndexError."""
    spec = from_text("""recurrence la
input q: [K], k: [K], v: [V], x: [V]
state S: [K, V], z: [], h: [V]
update S = S + outer(k, v)
update z = z + 1
update h = 2 * x
output o: [V] = (q @ S) / z + h
""")
    a = analyze(spec)
    s, z, h = a.transitions
    assert (s.kind, z.kind, h.kind) == (K.IDENTITY, K.IDENTITY, K.SCALAR)
    assert h.decay is not None
    assert h.decay.coef == ir.Const(0.0)
    assert h.linear.ty.dims == ("V",)  # A_t = 0 keeps the state's type
    assert a.state("h").chunk.lines[0].startswith("no recurrence (A_t = 0): h_t = 2 · x_t, every token at once")


def test_gate_order_of_a_left_gate() -> None:
    t = analyze(alt("diag(exp(g)) @ (I - beta * outer(k, k)) @ S + outer(k, v)")).transitions[0]
    assert t.householder is not None
    assert t.householder.order is GateOrder.LEFT


def test_rwkv7_in_its_paper_layout_is_dplr_from_the_right() -> None:
    spec = from_text("""recurrence r7
input r: [K], w: [K] logdecay, k: [K], v: [V], a: [K], b: [K]
state S: [V, K]
update S = S @ (diag(exp(w)) + outer(a, b)) + outer(v, k)
output o: [V] = S @ r
""")
    t = analyze(spec).transitions[0]
    assert (t.kind, t.side) == (K.DPLR, Side.RIGHT)
    assert t.lowrank is not None
    assert (t.lowrank.u, t.lowrank.w) == (_var("a", ("K",)), _var("b", ("K",)))


COUPLED_SPEC = """recurrence coupled
input q: [K], k: [K], v: [V], g: [] logdecay
state S: [K, V], z: [K]
update S = exp(g) * S + outer(z, v)
update z = exp(g) * z + k
output o: [V] = q @ S
"""  # S reads z: the two states evolve jointly


def test_coupled_states_are_recurrent_only() -> None:
    spec = from_text(COUPLED_SPEC)
    a = analyze(spec)
    s, z = a.transitions
    assert (s.kind, s.coupled, z.kind, z.coupled) == (K.DENSE, ("z",), K.SCALAR, ())
    assert "coupled" in s.evidence
    assert a.recurrent_only
    assert a.state("S").chunk.lines == ("the update of `S` reads `z`, so they evolve jointly (coupled states): one "
                                        "block transition over [S, z], e.g. a 2×2 rotation or a momentum, which no "
                                        "chunk family has a form for; recurrent mode only",)
    # z's adjoint receives S's cotangent through S's update.
    dz = dict(build_adjoint(build_step(spec)).prev_states)["z"]  # the kernels' adjoint, which explain prints
    assert "∂S" in ir.uses(dz, {ir.Kind.INPUT})


# (update, (line, col, end_col) of the underline, words in the message)
NOT_AFFINE = [
    ("S * S + outer(k, v)", (6, 12, 17), "multiplies two values"),
    ("exp(S) + outer(k, v)", (6, 12, 18), "`exp(...)`"),
    ("tanh(exp(g) * S) + outer(k, v)", (6, 12, 28), "`tanh(...)`"),
    ("S / S + outer(k, v)", (6, 16, 17), "denominator"),
    ("outer(k, v) / (1 + S)", (6, 27, 32), "denominator"),
    ("outer(k, v) + exp(g) * sigmoid(S)", (6, 35, 45), "`sigmoid(...)`"),
    ("S + outer(k, (k @ S) * (k @ S))", (6, 25, 42), "multiplies two values"),
    ("S ** 2 + outer(k, v)", (6, 12, 18), "a power"),
    ("max(S, 0) + outer(k, v)", (6, 12, 21), "`max(...)`"),
    ("outer(k, abs(k @ S))", (6, 21, 31), "`abs(...)`"),
]


@pytest.mark.parametrize(("update", "where", "words"), NOT_AFFINE, ids=[c[0] for c in NOT_AFFINE])
def test_non_affine_updates_are_rejected_with_a_span(update: str, where: tuple[int, int, int], words: str) -> None:
    spec = alt(update)
    with pytest.raises(SpecError) as info:
        analyze(spec)
    (d,) = info.value.diagnostics
    assert d.severity is Severity.ERROR
    assert (d.span.line, d.span.col, d.span.end_col) == where
    assert words in d.message
    assert "not affine" in d.message
    assert "S_t = A_t S_{t-1} + b_t" in d.hint
    text = info.value.render()
    assert text.startswith("alt.rec:6:")
    assert "^" in text


def test_every_non_affine_update_is_reported() -> None:
    spec = from_text("""recurrence two
input k: [K], v: [V]
state S: [K, V], z: [K]
update S = S * S + outer(k, v)
update z = exp(z) + k
output o: [V] = k @ S
""")
    with pytest.raises(SpecError) as info:
        analyze(spec)
    assert [d.span.line for d in info.value.diagnostics] == [4, 5]


def test_a_dense_state_no_other_state_reads_leaves_the_others_chunked() -> None:
    """Issue 16: one state without a chunk form walks; the states it does not read keep their chunk form."""
    spec = from_text("""recurrence mixed
input q: [K], k: [K], v: [V], g: [K] logdecay, x: [D], y: [D]
param M: [D, D]
state S: [K, V], h: [D], p: [D], z: [D]
update S = exp(g) * S + outer(k, v)
update h = M @ h + p
update p = 0.5 * p + x
update z = 0.9 * z + y
output o: [V] = q @ S
output u: [D] = h + z
""")
    a = analyze(spec)
    # h is dense and reads p: both walk; S and z are read by no walked state
    assert walked_states(a.states) == ("h", "p")
    assert [s.state for s in a.states if s.chunk.mode is not ChunkMode.NONE] == ["S", "p", "z"]


def test_coupled_states_walk_together() -> None:
    spec = from_text(COUPLED_SPEC)
    assert walked_states(analyze(spec).states) == ("S", "z")
