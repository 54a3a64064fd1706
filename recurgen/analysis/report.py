"""report: the `recurgen explain` text and the stable dump of an Analysis (`dump(analysis)`).

Both are deterministic: names in declaration order, sympy's canonical printing, no timestamps; the
only hash is the spec text's own sha256 (it changes exactly when the spec does).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .. import ir
from . import exprs as X
from .classify import applied, transition_matrix
from .pretty import OUTPUT, PLAIN, UPDATE, Style, pretty
from .result import Analysis, StateAnalysis, Transition, TransitionKind

_W = 14  # width of the left label column


def _line(label: str, text: str, indent: int = 0) -> str:
    return f"{' ' * indent}{label:<{_W - indent}}{text}".rstrip()


def _shape(lead: tuple[str, ...], t: ir.Tensor) -> str:
    return "[" + ",".join((*lead, *t.ty.dims)) + "]" + (" complex" if t.ty.complex else "")


def _domain(d: ir.Domain) -> str:
    if d == ir.Domain(hi=0.0, hi_open=False, logspace=True):
        return "logdecay"
    return str(d)


def _tensors(ts: tuple[ir.Tensor, ...], lead: tuple[str, ...]) -> str:
    """`q, k: [B,T,H,K]   v: [B,T,H,V]   g: [B,T,H,K] logdecay` (neighbours with equal types grouped)."""
    groups: list[tuple[list[str], str]] = []
    for t in ts:
        desc = _shape(lead, t) + (f" {_domain(t.domain)}" if _domain(t.domain) else "")
        if t.default is not None:  # an optional input or param
            desc += f" = {t.default:g}"
        if groups and groups[-1][1] == desc:
            groups[-1][0].append(t.name)
        else:
            groups.append(([t.name], desc))
    return "   ".join(f"{', '.join(names)}: {desc}" for names, desc in groups)


def _update_text(u: ir.Update) -> str:
    if u.loop is not None:
        st = Style(loop=u.loop.var)
        return (f"{u.state} ← {pretty(u.value, st)}   for {u.loop.var} = 0..{u.loop.size - 1} "
                f"({u.loop.size} steps per token, from {u.state}_{{t-1}} to {u.state}_t)")
    return f"{u.state}_t = {pretty(u.value, UPDATE)}"


def normal_form(t: Transition) -> str:
    """`S_t = A_t S_{t-1} + b_t` with A_t printed in its class's form."""
    st = Style(loop=t.loop.var) if t.loop else UPDATE
    s = t.state
    prev = s if t.loop else f"{s}_{{t-1}}"
    lhs = f"{s} ←" if t.loop else f"{s}_t ="
    if t.running_max is not None:
        shift = f"{pretty(t.running_max.shift, st)} + " if t.running_max.shift is not None else ""
        return f"{lhs} max({shift}{prev}, {pretty(t.running_max.floor, st)})"
    m = transition_matrix(t)
    hole = X.hole(t.linear.ty)
    if m is not None:
        a = pretty(applied(t, m, hole), st).replace("□", prev)
    else:
        a = pretty(t.linear, st).replace("□", prev)
        for c, part in t.cross:
            a += f" + {pretty(part, st).replace('□', f'{c}_{{t-1}}')}"
    b = f" + {pretty(t.offset, st)}" if t.offset is not None else ""
    return f"{lhs} {a}{b}"


def _transition_lines(sa: StateAnalysis, spec: ir.Spec) -> list[str]:
    t = sa.transition
    dep = "input-dependent" if t.input_dependent else "time-invariant"
    out = [_line("transition", f"{t.state}: {t.label()}, {dep}"
                  + (f", reads the running max {', '.join(t.driven_by)}" if t.driven_by else "")
                  + (f", reads the memoryless {', '.join(t.shifted)} (its formula one token back: an input term)"
                     if t.shifted else "")),
           _line("evidence", t.evidence, 2),
           _line("form", normal_form(t), 2)]
    st = Style(loop=t.loop.var) if t.loop else UPDATE
    if t.decay is not None and t.kind is not TransitionKind.IDENTITY:
        log = pretty(t.decay.log, st) if t.decay.log is not None else "none (no closed form)"
        space = "" if t.decay.logspace else "   (not written as exp(...): its log is taken)"
        name = "gate log" if t.kind is TransitionKind.HOUSEHOLDER else "log-decay"
        out.append(_line(name, log + space, 2))
    if t.householder is not None:
        h = t.householder
        out.append(_line("householder", f"β = {pretty(h.beta, st)}, k = {pretty(h.key, st)}, gate: "
                         + ("none (α = 1)" if h.alpha is None else f"{pretty(h.alpha.coef, st)} ({h.order.value})"), 2))
    if t.lowrank is not None:
        out.append(_line("low rank", f"A_t = diag(d_t) + μ_t ν_tᵀ with μ_t = {pretty(t.lowrank.u, st)}, "
                         f"ν_t = {pretty(t.lowrank.w, st)}", 2))
    if t.offset_terms:
        terms = "  +  ".join(f"{pretty(o.coef, st) + ' · ' if o.coef is not None else ''}"
                             f"outer({pretty(o.left, st)}, {pretty(o.right, st)})" for o in t.offset_terms)
        out.append(_line("b_t", terms, 2))
    op = sa.operator
    out.append(_line("operator", f"{op.formula}   [{op.verification.split(' (')[0]}]"))
    out.append(_line("element", op.element, 2))
    ch = sa.chunk
    out.append(_line("chunk form", f"{ch.mode.value}: {ch.lines[0]}"))
    out += [_line("", x) for x in ch.lines[1:]]
    return out


def explain(a: Analysis, path: str | None = None, backward: Sequence[str] = ()) -> str:
    """The `recurgen explain` report; `backward` is its backward section, one line each (derived where the kernels
    derive theirs: `recurgen.explain`)."""
    spec = a.spec
    sha = hashlib.sha256(spec.source.encode("utf-8")).hexdigest()[:8]
    desc = f'   "{spec.description}"' if spec.description else ""
    out = [f"spec {spec.name} ({path or spec.path}, sha256 {sha}){desc}"]
    fixed = [d for d in spec.dims if d.size is not None]
    if fixed:
        out.append(_line("dims", "   ".join(f"{d.name} = {d.size}" for d in fixed), 2))
    heads = ("H",) if spec.heads else ()  # `layout [B, T]`: the call's tensors have no head axis
    out.append(_line("inputs", _tensors(spec.inputs, ("B", "T", *heads)), 2))
    if spec.params:
        out.append(_line("params", _tensors(spec.params, heads), 2))
    for c in spec.consts:
        out.append(_line("const", f"{c.name} = {pretty(c.value, PLAIN)}   (per head)", 2))
    out.append(_line("state", _tensors(spec.states, ("B", *heads)), 2))
    for u in spec.updates:
        out.append(_line("update", _update_text(u), 2))
    options = "   ".join(f"{o.name} = {pretty(o.value, PLAIN)}" for o in spec.options if not ir.is_hidden(o.name))
    for i, o in enumerate(spec.outputs):
        tail = f"          {options}" if options and i == 0 else ""
        out.append(_line("output", f"{o.name}_t = {pretty(o.value, OUTPUT)}{tail}", 2))
    for sa in a.states:
        out += _transition_lines(sa, spec)
    for r in a.readouts:
        out.append(_line("readout", f"{r.output}: {r.description}"))
    out += [_line("backward" if i == 0 else "", x) for i, x in enumerate(backward)]
    if a.diagnostics:
        for i, d in enumerate(a.diagnostics):
            out.append(_line("warnings" if i == 0 else "", f"line {d.span.line}: {d.message}"))
    else:
        out.append(_line("warnings", "none"))
    return "\n".join(out) + "\n"


def summary(a: Analysis) -> str:
    """One line for `recurgen list`: the class of each state."""
    return ", ".join(f"{t.label()}" if len(a.states) == 1 else f"{t.state}: {t.label()}" for t in a.transitions)


def dump(a: Analysis) -> str:
    """A stable, complete text dump (the analysis stage's `--emit` output)."""
    lines = [f"analysis of {a.spec.name}"]
    for sa in a.states:
        t = sa.transition
        lines.append(f"state {t.state}: kind={t.kind.name} side={t.side.value} "
                     f"axis={t.axis.value if t.axis else '-'} steps={t.steps} input_dependent={t.input_dependent}"
                     + (f" coupled={','.join(t.coupled)}" if t.coupled else ""))
        lines.append(f"  linear      {pretty(t.linear)}")
        lines.append(f"  offset      {pretty(t.offset) if t.offset is not None else '0'}")
        if t.decay is not None:
            log = pretty(t.decay.log) if t.decay.log is not None else "-"
            lines.append(f"  decay       {pretty(t.decay.coef)}   log={log}   logspace={t.decay.logspace}")
        if t.householder is not None:
            h = t.householder
            lines.append(f"  householder beta={pretty(h.beta)} key={pretty(h.key)} order={h.order.value}")
        if t.lowrank is not None:
            lines.append(f"  lowrank     u={pretty(t.lowrank.u)} w={pretty(t.lowrank.w)}")
        lines.append(f"  evidence    {t.evidence}")
        lines.append(f"  operator    {sa.operator.form.value}: {sa.operator.formula} [{sa.operator.verification}]")
        lines.append(f"  chunk       {sa.chunk.mode.value}")
    for r in a.readouts:
        lines.append(f"output {r.output}: linear={r.linear} reads="
                     + ",".join(f"{x.state}{'(prev)' if x.prev else ''}" for x in r.reads))
    for d in a.diagnostics:
        lines.append(f"{d.severity.value} {d.span.line}:{d.span.col} {d.message}")
    return "\n".join(lines) + "\n"

