"""parse: text -> syntax tree. Precedence, literals, positions, and what the lexer tolerates."""

from __future__ import annotations

import pytest

from recurgen import syntax as S
from recurgen.errors import SpecError
from recurgen.parse import MAX_EXPR_DEPTH, parse_spec

GLA = """recurrence gla "Gated Linear Attention"
input  q: [K], k: [K], v: [V], g: [K] logdecay
state  S: [K, V]
update S = exp(g) * S + outer(k, v)
output o: [V] = scale * (q @ S)
"""


def _expr(text: str) -> S.Expr:
    module = parse_spec(f"recurrence t\nlet x = {text}\n")
    bind = module.statements[0]
    assert isinstance(bind, S.Bind)
    return bind.value


def _show(e: S.Expr) -> str:
    """Fully parenthesised form, to compare trees without their spans."""
    if isinstance(e, S.Number):
        return e.text
    if isinstance(e, S.Name):
        return e.name
    if isinstance(e, S.BinOp):
        return f"({_show(e.lhs)} {e.op} {_show(e.rhs)})"
    if isinstance(e, S.UnOp):
        return f"({e.op}{_show(e.arg)})"
    if isinstance(e, S.Call):
        return f"{e.func}({', '.join(_show(a) for a in e.args)})"
    if isinstance(e, S.Index):
        return f"{_show(e.base)}[{_show(e.index)}]"
    assert isinstance(e, S.Attr)
    return f"{_show(e.base)}.{e.attr}"


@pytest.mark.parametrize(("text", "tree"), [
    ("a + b * c", "(a + (b * c))"),
    ("a - b - c", "((a - b) - c)"),  # left associative
    ("a / b * c", "((a / b) * c)"),
    ("a * b @ c", "((a * b) @ c)"),  # `*`, `/`, `@` share a level, left to right
    ("a @ b * c", "((a @ b) * c)"),
    ("a ** b ** c", "(a ** (b ** c))"),  # right associative
    ("-a ** 2", "(-(a ** 2))"),  # as in Python
    ("2 ** -x", "(2 ** (-x))"),
    ("-(a + b)", "(-(a + b))"),
    ("+a", "(+a)"),
    ("S.T @ q", "(S.T @ q)"),
    ("k[j] * v[0]", "(k[j] * v[0])"),
    ("exp(g) * S + outer(k, v)", "((exp(g) * S) + outer(k, v))"),
    ("sum(C * h, N)", "sum((C * h), N)"),
    ("f()", "f()"),
])
def test_precedence_and_associativity(text: str, tree: str) -> None:
    assert _show(_expr(text)) == tree


@pytest.mark.parametrize(("text", "value"), [
    ("2", 2.0), ("2.5", 2.5), (".5", 0.5), ("1e-3", 1e-3), ("1.5E2", 150.0),
    ("2j", 2j), ("1.5e1j", 15j), (".5j", 0.5j),
])
def test_number_literals(text: str, value: complex) -> None:
    e = _expr(text)
    assert isinstance(e, S.Number)
    assert e.value == value
    assert e.text == text
    assert isinstance(e.value, complex) == text.endswith("j")


def test_header_statements_and_spans() -> None:
    m = parse_spec(GLA, "gla.rec")
    assert (m.header.name.name, m.header.description) == ("gla", "Gated Linear Attention")
    assert [type(s).__name__ for s in m.statements] == ["Decl", "Decl", "Update", "Output"]
    decl = m.statements[0]
    assert isinstance(decl, S.Decl)
    assert [d.name.name for d in decl.items] == ["q", "k", "v", "g"]
    g = decl.items[3]
    assert [i.name for i in g.shape] == ["K"]
    assert [a.name for a in g.annotations] == ["logdecay"]
    assert (g.name.span.line, g.name.span.col, g.name.span.end_col) == (2, 32, 33)
    upd = m.statements[2]
    assert isinstance(upd, S.Update)
    assert upd.loop is None
    assert (upd.value.span.line, upd.value.span.col, upd.value.span.end_col) == (4, 12, 36)
    assert m.path == "gla.rec"
    assert m.source == GLA


def test_description_is_optional() -> None:
    assert parse_spec("recurrence t\n").header.description == ""


def test_structural_equality_ignores_positions() -> None:
    assert parse_spec(GLA) == parse_spec(GLA.replace("  ", " ").replace("\n", "\n\n"))


def test_statements_may_span_lines_and_carry_comments() -> None:
    text = GLA.replace("update S = exp(g) * S + outer(k, v)",
                       "update S = exp(g) * S   # decay the rows\n       + outer(k, v)  # write")
    assert parse_spec(text) == parse_spec(GLA)


@pytest.mark.parametrize("variant", [
    GLA.replace("\n", "\r\n"),  # Windows line ends
    "\ufeff" + GLA,  # a byte-order mark
    GLA.replace("  ", "\t"),
    GLA.replace("# ", "# ünïcödé and “quotes” in a comment "),
    GLA.replace("Gated Linear Attention", "Gated Linear Attention — Yang et al."),  # non-ASCII description
])
def test_tolerated_text(variant: str) -> None:
    parse_spec(variant)


def test_intervals_and_loops() -> None:
    m = parse_spec("recurrence t\ndim J = 2\ninput b: [J] in (0, 1], c: [] in [-inf, 0)\n"
                   "update S = S + b[j] for j in J\n")
    b = m.statements[1].items[0]  # type: ignore[union-attr]
    (iv,) = b.annotations
    assert isinstance(iv, S.Interval)
    assert (iv.lo_open, iv.hi_open) == (True, False)
    upd = m.statements[2]
    assert isinstance(upd, S.Update)
    assert upd.loop is not None
    assert (upd.loop.var.name, upd.loop.dim.name) == ("j", "J")


def test_api_line() -> None:
    m = parse_spec("recurrence t\napi chunk_t(q, k)\napi none()\n")
    api, empty = m.statements
    assert isinstance(api, S.Api)
    assert [a.name for a in api.args] == ["q", "k"]
    assert isinstance(empty, S.Api)
    assert empty.args == ()


def test_huge_dimension_size_is_clamped_not_crashed() -> None:
    m = parse_spec(f"recurrence t\ndim J = {'9' * 5000}\n")
    assert isinstance(m.statements[0], S.DimDecl)
    assert m.statements[0].size >= 10**12


def _one_error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "x.rec")
    assert len(info.value.diagnostics) >= 1
    return info.value.diagnostics[0].message


def test_depth_limit_is_a_diagnostic() -> None:
    ok = "-" * (MAX_EXPR_DEPTH - 1) + "x"
    parse_spec(f"recurrence t\nlet y = {ok}\n")
    for deep in ["-" * 5000 + "x", " + ".join(["x"] * 3000), "x" + ".T" * 3000, "exp(" * 500 + "x" + ")" * 500]:
        assert "too deep" in _one_error(f"recurrence t\nlet y = {deep}\n")


def test_parentheses_alone_do_not_count_as_depth() -> None:
    parse_spec("recurrence t\nlet y = " + "(" * 2000 + "x" + ")" * 2000 + "\n")


def test_oversized_spec_is_rejected() -> None:
    assert "larger than" in _one_error("recurrence t\n" + "# pad\n" * 60000)


@pytest.mark.parametrize(("text", "words"), [
    ("recurrence t\nlet x = 1 ^ 2\n", "unexpected character `^`"),
    ("recurrence t\nlet x = (1\nlet y = 2\n", "`(` is never closed"),
    ("recurrence t\nlet x = 1)\n", "unmatched `)`"),
    ("recurrence t\nlet x = f(1]\n", "does not match"),
    ("recurrence t\nlet x = 1 2\n", "after a complete expression"),
    ("recurrence t\nx = 2\n", "does not start with a keyword"),
    ("recurrence t\nlet x = 1\x00\n", "U+0000"),
    ('recurrence t "abc\n', "unterminated description"),
    ("recurrence t\ninput gаte: [K]\n", "CYRILLIC SMALL LETTER A"),
    ("recurrence t\nlet x = 1 − 2\n", "MINUS SIGN"),
    ("", "the spec is empty"),
])
def test_syntax_messages(text: str, words: str) -> None:
    assert words in _one_error(text)


def test_non_ascii_names_are_reported_each() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec("recurrence t\ninput β: [], gаte: [K]\n")
    assert len(info.value.diagnostics) == 2
    assert "write `beta`" in info.value.diagnostics[0].hint
    assert "write `gate`" in info.value.diagnostics[1].hint
