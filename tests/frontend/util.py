"""Small helpers for front-end tests: build a spec from a body, find IR nodes by their source text."""

from __future__ import annotations

from collections.abc import Iterator

from recurgen import ir
from recurgen.errors import SpecError
from recurgen.frontend import from_text


def spec_of(body: str, name: str = "t") -> ir.Spec:
    """Check a spec made of a header and `body`."""
    return from_text(f'recurrence {name} "test"\n{body}', "test.rec")


def errors_of(body: str) -> list[str]:
    """The messages of the diagnostics a spec body is rejected with (fails if it is accepted)."""
    try:
        spec_of(body)
    except SpecError as err:
        return [d.message for d in err.diagnostics]
    raise AssertionError("the spec was accepted")


def span_text(spec: ir.Spec, span: object) -> str | None:
    line, col, end_line, end_col = (getattr(span, a) for a in ("line", "col", "end_line", "end_col"))
    if line != end_line:
        return None
    return spec.source.split("\n")[line - 1][col - 1 : end_col - 1]


def all_nodes(spec: ir.Spec) -> Iterator[ir.Expr]:
    roots = [*(u.value for u in spec.updates), *(o.value for o in spec.outputs),
             *(b.value for b in (*spec.consts, *spec.options))]
    for root in roots:
        yield from ir.walk(root)


def node(spec: ir.Spec, text: str) -> ir.Expr:
    """The first IR node whose span covers exactly `text` in the source."""
    for n in all_nodes(spec):
        if span_text(spec, n.span) == text:
            return n
    raise AssertionError(f"no node spans `{text}`")
