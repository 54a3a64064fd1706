"""The `recurgen explain` report: the analysis' derived math, the backward the kernels run, then what chunk mode
generates from the analysis.

The backward is not derived here: it is `codegen.step.build_adjoint`, the reverse-mode pass over one token's
step that the recurrent kernels are printed from, shown with the analysis' pretty-printer. Sub-expressions the
adjoint uses more than once are named `τ1, τ2, ...` (the token's new state `S_t`) and printed once, so the
text stays as large as the DAG rather than as the tree it would unfold to.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from . import ir
from .analysis.pretty import UPDATE, pretty
from .analysis.report import _line, explain
from .analysis.result import Analysis
from .codegen.autodiff import is_leaf
from .codegen.chunk_plan import describe, plan_chunk
from .codegen.scan_block import plan_scan_block
from .codegen.step import build_adjoint, build_step

_MIN_NAMED = 4  # nodes in a shared sub-expression before it gets a name (`exp(g_t)` stays inline)


def explain_report(analysis: Analysis, path: str | None = None) -> str:
    plan = plan_chunk(analysis)
    lines = describe(plan, plan_scan_block(plan) is not None)
    return explain(analysis, path, backward_lines(analysis.spec)) + "".join(
        _line("chunk mode" if i == 0 else "", ln) + "\n" for i, ln in enumerate(lines))


def adjoint_equations(spec: ir.Spec) -> tuple[list[tuple[str, ir.Expr]], list[tuple[str, ir.Expr]]]:
    """(`∂X = e` for each state of the previous token, input, param and option; the shared sub-expressions
    `τi = e` they refer to, each defined before its first use), from the adjoint the kernels are printed from."""
    step = build_step(spec)
    adj = build_adjoint(step)
    eqs = [(f"∂{s}_{{t-1}}", g) for s, g in adj.prev_states]
    eqs += [(f"∂{pretty(leaf, UPDATE)}", g) for leaf, g in adj.inputs]
    eqs += [(f"∂{n}", g) for n, g in adj.params]
    eqs += [(f"∂{pretty(ir.Var(n, ir.Kind.OPTION, ir.SCALAR), UPDATE)}", g) for n, g in adj.options]
    uses: Counter[ir.Expr] = Counter(e for _, e in eqs)
    order: list[ir.Expr] = []  # children before parents
    seen: set[ir.Expr] = set()

    def visit(e: ir.Expr) -> None:
        if e in seen:
            return
        seen.add(e)
        if not is_leaf(e):
            for c in e.args:
                uses[c] += 1
                visit(c)
        order.append(e)

    for _, e in eqs:
        visit(e)
    shared = [e for e in order if uses[e] > 1 and not is_leaf(e) and _at_least(e, _MIN_NAMED)]
    # the token's new states read back (the inputs' cotangents read S_t) are named as the update line does
    states = {e: ir.Var(f"{s}_t", ir.Kind.CONST, e.ty) for s, e in step.new_states if not is_leaf(e)}
    shared = [e for e in shared if e not in states]
    names = {**states, **{e: ir.Var(f"τ{i + 1}", ir.Kind.CONST, e.ty) for i, e in enumerate(shared)}}
    memo: dict[ir.Expr, ir.Expr] = {}

    def named(e: ir.Expr, top: bool = False) -> ir.Expr:
        if not top and e in names:
            return names[e]
        if is_leaf(e):
            return e
        if e not in memo:
            memo[e] = replace(e, args=tuple(named(c) for c in e.args))
        return memo[e]

    return ([(lhs, named(e)) for lhs, e in eqs],
            [(names[e].name, named(e, top=True)) for e in shared])


def _at_least(e: ir.Expr, n: int) -> bool:
    """Whether `e` has at least `n` distinct nodes (stops counting there: a DAG may unfold to a huge tree)."""
    seen: set[ir.Expr] = set()
    stack = [e]
    while stack and len(seen) < n:
        x = stack.pop()
        if x not in seen:
            seen.add(x)
            stack.extend(ir.children(x))
    return len(seen) >= n


def backward_lines(spec: ir.Spec) -> list[str]:
    """The backward section of `explain`: one line per cotangent, then the shared sub-expressions."""
    eqs, where = adjoint_equations(spec)
    states = ", ".join(f"∂{s.name}_t" for s in spec.states)
    outputs = ", ".join(f"∂{o.name}_t" for o in spec.outputs)
    lines = [f"one token in reverse, as the recurrent kernels run it ({states} from the tokens after t, "
             f"{outputs} from the loss)"]
    lines += [f"{lhs} = {pretty(e, UPDATE)}" for lhs, e in eqs]
    lines += [f"{'where' if i == 0 else '     '} {name} = {pretty(e, UPDATE)}" for i, (name, e) in enumerate(where)]
    return lines
