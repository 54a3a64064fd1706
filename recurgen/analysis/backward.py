"""backward: the adjoint (reverse-time) recurrence of each state and the gradients of its gates.

For `S_t = A_t S_{t-1} + b_t` read out by `o_t = R(S_t)` (or `R(S_{t-1})` through `prev`):
    dS_{t-1} = A_tᵀ dS_t + Rᵀ(do_{t-1})   [+ Rᵀ(do_t) for `prev` reads] [+ terms from coupled states]
a reverse scan in the same class (Aᵀ of a Householder step is a Householder step, of a diagonal a
diagonal; complex decays are conjugated). `adjoint` is `A_tᵀ dS` as IR (the VJP of the update's
linear part); the class-specific text is what `explain` prints. The gradients of gate expressions
with respect to their inputs and params are derived with sympy (`gate_gradients`).
"""

from __future__ import annotations

from .. import ir
from ..errors import NOSPAN, Diagnostic, Severity, Span
from ..ir import Op
from . import exprs as X
from .classify import applied, transition_matrix
from .pretty import BRACKET_ALL, Style, pretty, shift
from .readout import cotangent, vjp
from .result import Axis, BackwardForm, GateGradient, GateOrder, Readout, Side, Transition, TransitionKind
from .symbolic import MAX_NODES, Failed, TooLarge, derivatives


def _style(t: Transition, time: str = "t") -> Style:
    return Style(time=time, loop=t.loop.var if t.loop else "")


def transposed(t: Transition) -> tuple[str, str]:
    """A_tᵀ applied to the cotangent dS_t, as text, and a note on the order of steps."""
    st = _style(t)
    ds = cotangent(t.state, t.linear.ty)
    m = transition_matrix(t, transpose=True)
    if m is None:  # DENSE: the VJP of the update's linear part is the adjoint
        adj = adjoint_expr(t)
        if adj is not None:
            return pretty(adj, st), ""
        d = pretty(ds, st)
        jac = f"(∂{t.state}_t/∂{t.state}_{{t-1}})ᵀ"
        return (f"{d} {jac}" if t.side is Side.RIGHT else f"{jac} {d}"), ""
    note = ""
    if t.steps > 1 and t.loop is not None:
        note = (f"   (the {t.steps} steps of a token in reverse order, {t.loop.var} = {t.steps - 1} down to 0, "
                "each with its running state)")
    return pretty(applied(t, m, ds), st), note


def adjoint_expr(t: Transition) -> ir.Expr | None:
    """A_tᵀ dS as IR: the VJP of the update's linear part at the cotangent var `dS`."""
    return vjp(t.linear, cotangent(t.state, t.linear.ty)) if not X.is_zero(t.linear) else X.ZERO


def _decay_cotangent(t: Transition) -> str:
    st = _style(t)
    s = t.state
    right = t.side is Side.RIGHT
    da = f"d{s}_t {s}_{{t-1}}ᵀ" if not right else f"{s}_{{t-1}}ᵀ d{s}_t"
    dec = t.decay
    k = t.kind
    if k is TransitionKind.IDENTITY:
        return "no gate"
    if k in (TransitionKind.SCALAR, TransitionKind.DIAGONAL, TransitionKind.COMPLEX_DIAGONAL) and dec is not None:
        a = pretty(dec.coef, st, BRACKET_ALL)
        log = pretty(dec.log, st) if dec.log is not None else f"log({pretty(dec.coef, st)})"
        cx = k is TransitionKind.COMPLEX_DIAGONAL
        prod = f"conj({s}_{{t-1}}) ⊙ d{s}_t" if cx else f"d{s}_t ⊙ {s}_{{t-1}}"
        if t.axis is None:
            inner = f"Σ({prod})"
        elif t.axis is Axis.ELEMENTWISE:
            extra = [d for d in t.linear.ty.dims if d not in dec.coef.ty.dims]
            inner = f"Σ_{','.join(extra)}({prod})" if extra else prod
        else:
            other = t.linear.ty.dims[1] if t.axis is Axis.ROWS else t.linear.ty.dims[0]
            inner = f"Σ_{other}({prod})"
        if not (dec.logspace and dec.log is not None):  # not a log-space gate: the decay's own cotangent
            return f"d[{pretty(dec.coef, st)}] = {inner}"
        a_c = f"conj({a})" if cx else a
        return f"d({log}) = {a_c} ⊙ {inner}" if dec.coef.ty.dims else f"d({log}) = {a_c} · {inner}"
    if k is TransitionKind.HOUSEHOLDER and t.householder is not None:
        h = t.householder
        b, key = pretty(h.beta, st), pretty(h.key, st)
        pre = f"with dA = {da}" + (" (per step, with the running state)" if t.steps > 1 else "") + ": "
        if h.alpha is None:
            return pre + f"d{b} = −{key}ᵀ dA {key};  d{key} = −{b} · (dA + dAᵀ) {key}"
        a = pretty(h.alpha.coef, st, BRACKET_ALL)
        if h.order is GateOrder.SCALAR:
            return pre + (f"d{b} = −{a} · {key}ᵀ dA {key};  d{key} = −{a} · {b} · (dA + dAᵀ) {key};  "
                          f"d({a}) = ⟨dA, I − {b} · {key} {key}ᵀ⟩")
        if h.order is GateOrder.RIGHT:  # A = H diag(α)
            return pre + (f"d({a}) = diag(H dA) with H = I − {b} · {key} {key}ᵀ;  d{b} = −{key}ᵀ dA ({a} ⊙ {key});"
                          f"  d{key} = −{b} · (dA ({a} ⊙ {key}) + {a} ⊙ (dAᵀ {key}))")
        return pre + (f"d({a}) = diag(dA H) with H = I − {b} · {key} {key}ᵀ;  d{b} = −({a} ⊙ {key})ᵀ dA {key};"
                      f"  d{key} = −{b} · (dAᵀ ({a} ⊙ {key}) + {a} ⊙ (dA {key}))")
    if k is TransitionKind.DPLR and t.lowrank is not None and dec is not None:
        lr = t.lowrank
        u, w = pretty(lr.u, st), pretty(lr.w, st)
        log = pretty(dec.log, st) if dec.log is not None else f"log({pretty(dec.coef, st)})"
        return (f"with dA = {da}: d({log}) = {pretty(dec.coef, st, BRACKET_ALL)} ⊙ diag(dA);  d[{u}] = dA {_atom(w)};  "
                f"d[{w}] = dAᵀ {_atom(u)}")
    return f"dA = {da} (autograd through the update)"


def _atom(text: str) -> str:
    return text if all(c.isalnum() or c in "_{},ᵀ" for c in text) else f"({text})"


def _input_cotangents(t: Transition) -> tuple[str, ...]:
    st = _style(t)
    ds = cotangent(t.state, t.linear.ty)
    out = []
    for term in t.offset_terms or ():
        l_cot = X.matmul(ds, term.right)
        r_cot = X.matmul(X.transpose(ds), term.left)
        if term.coef is not None:
            l_cot, r_cot = X.mul(term.coef, l_cot), X.mul(term.coef, r_cot)
        out.append(f"d[{pretty(term.left, st)}] = {pretty(l_cot, st)}")
        out.append(f"d[{pretty(term.right, st)}] = {pretty(r_cot, st)}")
    if t.offset is not None and t.offset_terms is None:
        out.append(f"d[{pretty(t.offset, st)}] = {pretty(ds, st)}")
    return tuple(out)


def backward(t: Transition, readouts: tuple[Readout, ...], others: tuple[Transition, ...]) -> BackwardForm:
    """The adjoint recurrence of `t.state`; `others` are the transitions of the other states."""
    if t.kind is TransitionKind.RUNNING_MAX:
        return _running_max_backward(t)
    s = t.state
    st = _style(t)
    first, note = transposed(t)
    terms = [first]
    for o in others:  # coupled: o's update reads s
        for name, part in o.cross:
            if name == s:
                g = vjp(part, cotangent(o.state, o.linear.ty))
                terms.append(pretty(g, st) if g is not None else f"(∂{o.state}_t/∂{s}_{{t-1}})ᵀ d{o.state}_t")
    for r in readouts:
        for rd in r.reads:
            if rd.state != s:
                continue
            time = "t" if rd.prev else shift("t", -1)
            g = rd.vjp
            terms.append(pretty(g, Style(time=time)) if g is not None else
                         f"(∂{r.output}/∂{s})ᵀ d{r.output}_{{{time}}}")
    lhs = f"d{s}_{{t-1}}"
    rec = f"{lhs} = " + " + ".join(terms) + note
    return BackwardForm(s, adjoint_expr(t), rec, _decay_cotangent(t), _input_cotangents(t))


def _running_max_backward(t: Transition) -> BackwardForm:
    """`m_t = max(a_t + m_{t-1}, b_t)`: the max routes the gradient to its larger argument."""
    rm = t.running_max
    assert rm is not None
    st, m = _style(t), t.state
    a = pretty(rm.shift, st) if rm.shift is not None else ""
    b = pretty(rm.floor, st)
    kept = f"1[{a + ' + ' if a else ''}{m}_{{t-1}} ≥ {b}]"
    rec = (f"d{m}_{{t-1}} = {kept} · d{m}_t + (the cotangents of {m}_{{t-1}} from the states that read it and from "
           "the readouts)")
    grads = (f"d[{a}] = {kept} · d{m}_t;  " if a else "") + f"d[{b}] = (1 − {kept}) · d{m}_t"
    return BackwardForm(m, None, rec, grads, ())


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
