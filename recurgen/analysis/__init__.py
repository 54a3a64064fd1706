"""analysis: ir.Spec -> Analysis (the only public entry is `analyze`).

For every state: the affine split `S_t = A_t S_{t-1} + b_t` (non-affine updates are spec errors with
a caret under the culprit), the transition class with its structured pieces (decay and log-decay,
Householder α/β/k, DPLR diag/u/w, b_t's outer-product factors), the associative operator (proved
with sympy by the tests: proofs.py), the chunked-parallel form; for the spec: how each output reads the
states and warnings about numerically dangerous forms. No gradient is derived here: the kernels' backward
(`codegen.step.build_adjoint`) is the only one, and `explain` prints it.

sympy is used here and nowhere else in recurgen (STYLE.md 3.4), and imported only when a sign the structural
rules (signs.py) cannot decide needs it: most specs compile without importing it. Results hold IR and strings.
"""

from __future__ import annotations

from dataclasses import replace

from .. import ir
from ..errors import Reporter
from ..ir import Kind
from . import exprs as X
from .affine import Affine, NotAffine, split, state_key
from .chunk import chunk_form
from .classify import classify, running_max_transition
from .numerics import check as numeric_warnings
from .operator import operator
from .readout import analyze_readout
from .result import (
    Analysis,
    AssocOp,
    Axis,
    ChunkForm,
    ChunkMode,
    Decay,
    GateOrder,
    Householder,
    LowRank,
    OperatorForm,
    OuterTerm,
    Readout,
    RunningMax,
    Side,
    StateAnalysis,
    StateRead,
    Transition,
    TransitionKind,
)
from .running_max import NotRunningMax, match

MAX_UPDATE_NODES = 2000  # the checker's bound on an expression after `let`s are inlined


def analyze(spec: ir.Spec) -> Analysis:
    """Classify every state's transition and derive the operator and chunk form.

    Raises:
        SpecError: an update is not affine in the states (or too large to analyse).
    """
    rep = Reporter(spec.source)
    running: dict[str, RunningMax] = {}
    broken: set[str] = set()  # meant as running maxes, already reported: no second error, here or where read
    for u in spec.updates:
        try:
            found = match(u)
        except NotRunningMax as e:
            rep.error(e.span, e.message, e.hint)
            broken.add(u.state)
            continue
        if found is not None:
            running[u.state] = found

    memoryless = _memoryless(spec, running, broken)

    def key(v: ir.Var) -> tuple[str, bool] | None:
        """Running maxes are read like inputs: their sequence is known before the other states'; so is a memoryless
        state's (`_prev_x`, what `prev(x)` of an input desugars to), whose S_(t-1) is its formula one token back."""
        if v.name in running or v.name in broken or (v.name in memoryless and v.kind is ir.Kind.STATE):
            return None
        return state_key(v)

    splits: dict[str, Affine] = {}
    for u in spec.updates:
        if X.size(u.value, MAX_UPDATE_NODES) > MAX_UPDATE_NODES:
            rep.error(u.span, f"the update of `{u.state}` is too large to analyse (more than {MAX_UPDATE_NODES} "
                      "nodes once `let`s are inlined)", "simplify the expression")
            continue
        if u.state in running or u.state in broken:
            continue
        try:
            splits[u.state] = split(u.value, key)
        except NotAffine as e:
            rep.error(e.span, e.message, e.hint)
    rep.raise_if_errors()
    by_state = {u.state: u for u in spec.updates}
    transitions = tuple(running_max_transition(spec, by_state[s.name], running[s.name]) if s.name in running else
                        _driven(classify(spec, by_state[s.name], splits[s.name]), by_state[s.name], running,
                                memoryless)
                        for s in spec.states)
    readouts = tuple(analyze_readout(spec, o) for o in spec.outputs)
    states = []
    for t in transitions:
        states.append(StateAnalysis(t, operator(t), chunk_form(t, readouts)))
    diags = sorted(numeric_warnings(spec, transitions), key=lambda d: (d.span.line, d.span.col))
    return Analysis(spec, tuple(states), readouts, tuple(diags))


def _memoryless(spec: ir.Spec, running: dict[str, RunningMax], broken: set[str]) -> frozenset[str]:
    """States whose update reads no state (`update u = outer(B, x)`): S_t = b_t, a formula of the token's inputs."""
    states = {Kind.STATE, Kind.PREV_STATE}
    return frozenset(u.state for u in spec.updates if u.loop is None and u.state not in running
                     and u.state not in broken and not ir.uses(u.value, states))


def _driven(t: Transition, update: ir.Update, running: dict[str, RunningMax], memoryless: frozenset[str]) -> Transition:
    """`t` with the running maxes its update reads (they act as inputs of its coefficients), and the memoryless
    states it reads (their previous value is an input term: the formula one token back)."""
    reads = [n.name for n in ir.walk(update.value) if isinstance(n, ir.Var) and n.name in running]
    shifted = [n.name for n in ir.walk(update.value) if isinstance(n, ir.Var) and n.kind is Kind.STATE
               and n.name in memoryless and n.name != t.state]
    if reads:
        t = replace(t, driven_by=tuple(dict.fromkeys(reads)))
    return replace(t, shifted=tuple(dict.fromkeys(shifted))) if shifted else t


__all__ = [
    "Analysis", "AssocOp", "Axis", "ChunkForm", "ChunkMode", "Decay", "GateOrder",
    "Householder", "LowRank", "OperatorForm", "OuterTerm", "Readout", "RunningMax", "Side", "StateAnalysis",
    "StateRead", "Transition", "TransitionKind", "analyze",
]
