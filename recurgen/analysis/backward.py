"""backward: the sympy derivative of every gate expression with respect to its inputs and params
(`gate_gradients`, printed by `explain` and checked for size: a gate too large for sympy is a warning).

The adjoint recurrence itself is not derived here: the kernels' reverse-mode pass over one token's step
(`codegen.step.build_adjoint`) is the only backward, and `explain` prints that one.
"""

from __future__ import annotations

from .. import ir
from ..errors import NOSPAN, Diagnostic, Severity, Span
from ..ir import Op
from .result import GateGradient, Readout, Transition, TransitionKind
from .symbolic import MAX_NODES, Failed, TooLarge, derivatives


def gate_gradients(spec: ir.Spec, transitions: tuple[Transition, ...],
                   readouts: tuple[Readout, ...]) -> tuple[tuple[GateGradient, ...], tuple[Diagnostic, ...]]:
    """d gate / d leaf for every non-trivial gate expression, with sympy (deduplicated by text)."""
    gates: list[tuple[str, ir.Expr]] = []
    for t in transitions:
        s = t.state
        if t.decay is not None and t.kind is not TransitionKind.IDENTITY:
            gates.append((f"decay of {s}", t.decay.coef))
        if t.householder is not None:
            gates.append((f"beta of {s}", t.householder.beta))
        if t.lowrank is not None:
            gates += [(f"u of {s}", t.lowrank.u), (f"w of {s}", t.lowrank.w)]
        if t.offset_terms is not None:
            for term in t.offset_terms:
                if term.coef is not None:
                    gates.append((f"input gate of {s}", term.coef))
                gates += [(f"b_t factor of {s}", term.left), (f"b_t factor of {s}", term.right)]
        elif t.offset is not None:
            gates.append((f"b_t of {s}", t.offset))
    out: list[GateGradient] = []
    diags: list[Diagnostic] = []
    seen: set[str] = set()
    for label, e in gates:
        if _trivial(e):
            continue
        try:
            printed, ders = derivatives(e, spec)
        except TooLarge:
            diags.append(Diagnostic(Severity.WARNING, f"the {label} is too large for symbolic differentiation "
                                    f"(more than {MAX_NODES} nodes); its gradient is left to autograd",
                                    _span(e, transitions), "simplify the expression"))
            continue
        except Failed as err:
            diags.append(Diagnostic(Severity.WARNING, f"the {label} could not be differentiated symbolically "
                                    f"({err}); its gradient is left to autograd", _span(e, transitions)))
            continue
        if printed in seen:
            continue
        seen.add(printed)
        out += [GateGradient(label, printed, wrt, d) for wrt, d in ders]
    return tuple(out), tuple(diags)


def _trivial(e: ir.Expr) -> bool:
    if isinstance(e, (ir.Var, ir.Const)):
        return True
    return isinstance(e, ir.Apply) and e.op is Op.INDEX


def _span(e: ir.Expr, transitions: tuple[Transition, ...]) -> Span:
    if e.span != NOSPAN or not transitions:
        return e.span
    return transitions[0].span
