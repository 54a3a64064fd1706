"""numerics: warnings about numerically dangerous transitions, each with a safe rewrite.

* an `exp(x)` in a transition whose argument is not provably <= 0 (real part, for complex decays):
  the decay may exceed 1 and the state blow up; declare the input `logdecay` or bound it;
* a decay read from an input or a param and not written in log space, in a class whose chunked form
  accumulates log-decays over a chunk (scalar, row/column diagonal, Householder gate, DPLR diagonal);
* an unbounded exponential gate in b_t (mLSTM's `exp(ig)`): the kernels compute it directly in fp32,
  so it overflows for large gates; reported so the reader knows.
Proofs use sympy with the domains' assumptions (symbolic.py); what sympy cannot prove is reported.
"""

from __future__ import annotations

from .. import ir
from ..errors import NOSPAN, Diagnostic, Severity
from ..ir import Kind, Op
from . import exprs as X
from .normalize import vec_factors
from .pretty import PLAIN, pretty
from .result import Axis, Transition, TransitionKind
from .signs import nonpositive

_LOG_CHUNKED = frozenset({TransitionKind.SCALAR, TransitionKind.DIAGONAL, TransitionKind.HOUSEHOLDER,
                          TransitionKind.DPLR})


def _nonpositive(e: ir.Expr, spec: ir.Spec) -> bool | None:
    """Whether Re(e) <= 0 is provable: by the structural rules (signs.py), else by sympy (None: too large)."""
    if nonpositive(e, spec):
        return True
    from .symbolic import real_part_nonpositive  # sympy: imported only for what the rules cannot decide

    return real_part_nonpositive(e, spec)


def _exps(e: ir.Expr) -> list[ir.Apply]:
    out: list[ir.Apply] = []
    for n in ir.walk(e):
        if isinstance(n, ir.Apply) and n.op is Op.EXP and n not in out:
            out.append(n)
    return out


def _decl_hint(x: ir.Expr) -> str:
    if isinstance(x, ir.Var) and x.kind in (Kind.INPUT, Kind.PARAM):
        return (f"declare it a log-decay (`{x.kind.value} {x.name}: [...] logdecay`) or bound it, e.g. "
                f"exp(-softplus({x.name})) or exp(logsigmoid({x.name}))")
    return "keep the exponent <= 0: build it from logdecay/negative inputs, -softplus(...) or logsigmoid(...)"


def check(spec: ir.Spec, transitions: tuple[Transition, ...]) -> tuple[Diagnostic, ...]:
    out: list[Diagnostic] = []
    for t in transitions:
        d = t.decay
        if d is not None and t.kind is not TransitionKind.DENSE:
            scalars, vecs = vec_factors(d.coef)
            factors = tuple(dict.fromkeys((*scalars, *vecs)))  # `cos(th) * cos(th)`: one warning
            # Only the decay's own factors: an exp inside an exponent (LRU's -exp(nu)) is not a decay.
            for node in (f for f in factors if isinstance(f, ir.Apply) and f.op is Op.EXP):
                if _nonpositive(node.args[0], spec) is False:
                    part = "the real part of " if node.ty.complex else ""
                    out.append(Diagnostic(
                        Severity.WARNING,
                        f"`{pretty(node, PLAIN)}` in the transition of `{t.state}` may exceed 1 and make the state "
                        f"blow up: {part}`{pretty(node.args[0], PLAIN)}` is not known to be <= 0",
                        node.span, _decl_hint(node.args[0])))
            if t.kind in _LOG_CHUNKED and t.axis is not Axis.ELEMENTWISE:
                for f in factors:
                    if not _linear_space(f):
                        continue
                    kind = "param" if not X.depends_on_inputs(f) else "input"
                    hint = (f"write exp(logsigmoid({pretty(f.args[0], PLAIN)})), or declare a `logdecay` {kind} g "
                            "and write exp(g)" if isinstance(f, ir.Apply) and f.op is Op.SIGMOID else
                            f"declare a `logdecay` {kind} g and write the decay as exp(g)")
                    out.append(Diagnostic(
                        Severity.WARNING,
                        f"the decay `{pretty(f, PLAIN)}` of `{t.state}` is not in log space: the chunked kernels "
                        "sum log-decays over a chunk, and log of a decay that underflows is -inf",
                        f.span if f.span != NOSPAN else t.span, hint))
    out += _input_gates(spec, transitions)
    return tuple(out)


def _linear_space(f: ir.Expr) -> bool:
    """A decay factor the chunked kernels must take the log of, token by token: one that reads an input or a
    param and is not `exp(...)`. One rule for both: a `unit` param underflows in fp16/bf16 like an input
    (Comba's `alpha` and RWKV-5's `w` get the same warning); consts and numbers are exact."""
    if isinstance(f, ir.Const) or (isinstance(f, ir.Apply) and f.op is Op.EXP):
        return False
    return any(isinstance(n, ir.Var) and n.kind in (Kind.INPUT, Kind.PARAM) for n in ir.walk(f))


def _input_gates(spec: ir.Spec, transitions: tuple[Transition, ...]) -> list[Diagnostic]:
    """Unbounded exponential gates in b_t, one warning per distinct gate (mLSTM: C and n share it)."""
    found: list[tuple[ir.Apply, list[str]]] = []
    for t in transitions:
        if t.offset is None:
            continue
        for node in _exps(t.offset):
            if not X.depends_on_inputs(node.args[0]) or _nonpositive(node.args[0], spec) is not False:
                continue
            for known, states in found:
                if known == node:
                    states.append(t.state)
                    break
            else:
                found.append((node, [t.state]))
    out = []
    for node, states in found:
        x = pretty(node.args[0], PLAIN)
        names = " and ".join(f"`{s}`" for s in states)
        out.append(Diagnostic(
            Severity.WARNING,
            f"`{pretty(node, PLAIN)}` in the input term of {names} is an unbounded exponential gate (expected for "
            "an exponential input gate)",
            node.span,
            f"the kernels compute this form in fp32: exact while exp({x}) and the state stay below ~1e38; keep "
            f"{x} moderate, or bound the gate (e.g. exp(logsigmoid({x})))"))
    return out

