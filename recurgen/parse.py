"""parse: spec text -> syntax.Module (Lark LALR with positions; Lark errors become diagnostics).

Three checks run around Lark, each because the alternative would be a worse message or a crash:
  * non-ASCII characters outside comments and the description are rejected first, by name (a
    Cyrillic `а` in `gаte` would otherwise surface as a baffling grammar error far from the cause);
  * a syntax error is translated into words, with the unclosed or mismatched bracket located;
  * the parse tree's depth is bounded before the (recursive) transformer and checker walk it, so
    `-----x` or a thousand-term sum is a diagnostic instead of a RecursionError.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import syntax as S
from .errors import Diagnostic, Severity, Span, SpecError, describe_char
from .resources import grammar_tables, grammar_text

MAX_SPEC_BYTES = 256 * 1024  # a spec is ten lines; anything this large is not one
MAX_EXPR_DEPTH = 64  # nested operations in one expression; real specs use fewer than 15
MAX_INT_DIGITS = 12  # longer integer literals are clamped (Python refuses to parse > 4300 digits)

_TOKEN_NAMES = {
    "NAME": "a name", "NUMBER": "a number", "INT": "an integer", "IMAG": "an imaginary number",
    "STRING": 'a "description"', "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`",
    "COMMA": "`,`", "COLON": "`:`", "EQUAL": "`=`", "PLUS": "`+`", "MINUS": "`-`", "STAR": "`*`",
    "SLASH": "`/`", "AT": "`@`", "DOUBLESTAR": "`**`", "DOT": "`.`", "$END": "end of file",
}
_STATEMENT_KEYWORDS = frozenset({"INPUT", "PARAM", "CONST", "OPTION", "DIM", "STATE", "LET", "UPDATE", "OUTPUT",
                                 "API", "LAYOUT"})
_KEYWORDS = frozenset({*_STATEMENT_KEYWORDS, "RECURRENCE", "FOR", "IN", "WHEN"})
_EXPR_START = frozenset({"NAME", "NUMBER", "IMAG", "LPAR", "MINUS", "PLUS"})
# What may follow a complete operand; LPAR (a call) and LSQB (an index) too.
_OPERATORS = frozenset({"PLUS", "MINUS", "STAR", "SLASH", "AT", "DOUBLESTAR", "DOT"})
_OPEN, _CLOSE = {"(": ")", "[": "]"}, {")": "(", "]": "["}
_STATEMENTS = "`input`, `param`, `state`, `const`, `option`, `dim`, `let`, `update`, `output`, `api`, `layout`"
_WORD = re.compile(r"\w+")
_CHAR_HINTS = {  # characters the lexer refuses, and what the writer probably meant
    "'": 'descriptions are written in double quotes: "..."',
    "^": "powers are written `**`",
    "\\": "no line continuation is needed: a statement may span lines until the next keyword",
    ";": "no `;` is needed: each statement starts with its keyword",
    "{": "group with `(...)`; shapes are written `[K, V]`",
    "}": "group with `(...)`; shapes are written `[K, V]`",
    "!": "there are no comparisons in the language",
    "<": "there are no comparisons in the language; bounds are written `in (0, 1]`",
    ">": "there are no comparisons in the language; bounds are written `in (0, 1]`",
    "%": "there is no modulo; comments start with `#`",
}

# Non-ASCII characters people paste from papers or type on another keyboard layout, and the ASCII
# they stand for. Fullwidth punctuation is handled by NFKC normalisation instead.
_LOOKALIKES = dict(zip("аеорсхуіјѕԁӏАВЕКМНОРСТХІЈЅΑΒΕΖΗΙΚΜΝΟΡΤΥΧνο", "aeopcxyijsdlABEKMHOPCTXIJSABEZHIKMNOPTYXvo",
                       strict=True))
_SYMBOL_HINTS = {
    "−": "write the ASCII minus `-`", "–": "write the ASCII minus `-`", "×": "products are written `*`",
    "·": "products are written `*`", "⋅": "products are written `*`", "∗": "products are written `*`",
    "⊙": "elementwise products are written `*`", "ᵀ": "a transpose is written `.T`",
    "“": 'descriptions are written in ASCII double quotes: "..."',
    "”": 'descriptions are written in ASCII double quotes: "..."',
    "‘": 'descriptions are written in ASCII double quotes: "..."',
    "’": 'descriptions are written in ASCII double quotes: "..."',
    "\u00a0": "a no-break space: retype it as a plain space", "\u200b": "an invisible zero-width space: delete it",
    "\ufeff": "an invisible zero-width space: delete it",
}


@functools.cache
def _parser() -> Lark:  # building the tables is most of a warm load: Lark keeps them (checked when read)
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True,
                cache=grammar_tables())


def parse_spec(text: str, path: str = "<spec>") -> S.Module:
    """Parse spec text into the surface tree.

    Raises:
        SpecError: with one diagnostic for the first syntax error (or one per non-ASCII name).
    """
    text = text.removeprefix("\ufeff")  # editors on Windows write a byte-order mark; it is not part of the spec
    if len(text.encode("utf-8", "replace")) > MAX_SPEC_BYTES:
        raise SpecError([Diagnostic(Severity.ERROR, f"spec is larger than {MAX_SPEC_BYTES} bytes",
                                    Span.point(path, 1, 1), "a spec describes one recurrence in a few lines")], text)
    non_ascii = _non_ascii(text, path)
    if non_ascii:
        raise SpecError(non_ascii, text)
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as err:
        raise SpecError([_syntax_error(err, text, path)], text) from None
    too_deep = _too_deep(tree, path)
    if too_deep is not None:
        raise SpecError([too_deep], text)
    try:
        module = _ToSyntax(path).transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, SpecError):
            raise SpecError(err.orig_exc.diagnostics, text) from None
        raise
    return S.Module(module.header, module.statements, path, text)


# --- lexical pre-checks ----------------------------------------------------------------------------
def _code_regions(line: str) -> list[tuple[int, int]]:
    """[start, end) ranges of a line outside comments and double-quoted strings."""
    regions, start, i = [], 0, 0
    while i < len(line):
        ch = line[i]
        if ch == "#":
            break
        if ch == '"':
            close = line.find('"', i + 1)
            if close < 0:  # an unclosed string is the parser's to report
                break
            regions.append((start, i))
            start = i = close + 1
            continue
        i += 1
    regions.append((start, i))
    return regions


def _non_ascii(text: str, path: str) -> list[Diagnostic]:
    """One diagnostic per word (or symbol) with a non-ASCII character outside comments and strings."""
    out: list[Diagnostic] = []
    for line_no, line in enumerate(text.split("\n"), 1):
        for start, end in _code_regions(line):
            i = start
            while i < end:
                if line[i].isascii():
                    i += 1
                    continue
                m = _WORD.match(line, i) if line[i].isalnum() else None
                word_end = m.end() if m else i + 1
                w0 = i
                while w0 > start and (line[w0 - 1].isalnum() or line[w0 - 1] == "_"):
                    w0 -= 1
                out.append(_non_ascii_diag(line[w0:word_end], line[i], Span(path, line_no, w0 + 1, line_no,
                                                                             word_end + 1)))
                i = word_end
    return out


def _non_ascii_diag(word: str, ch: str, span: Span) -> Diagnostic:
    if len(word) == 1 and not ch.isalnum():
        fixed = unicodedata.normalize("NFKC", ch)
        hint = _SYMBOL_HINTS.get(ch) or (f"write the ASCII `{fixed}`" if fixed.isascii() and fixed.strip() else
                                         "non-ASCII text may appear only in comments and the description")
        return Diagnostic(Severity.ERROR, f"non-ASCII character {describe_char(ch)}", span, hint)
    fixed = "".join(_ascii_spelling(c) for c in word)
    looks = _LOOKALIKES.get(ch)
    hint = (f"it looks like the ASCII `{looks}`; " if looks else "") + \
        (f"names are ASCII: write `{fixed}`" if fixed.isascii() else "names are ASCII letters, digits and `_`")
    return Diagnostic(Severity.ERROR, f"non-ASCII character {describe_char(ch)} in the name `{word}`", span, hint)


def _ascii_spelling(c: str) -> str:
    if c.isascii():
        return c
    if c in _LOOKALIKES:
        return _LOOKALIKES[c]
    name = unicodedata.name(c, "")
    if name.startswith("GREEK"):  # β -> beta; `lambda` is a Python keyword, so λ -> lam
        word = name.split()[-1].lower()
        return {"lamda": "lam"}.get(word, word)
    return unicodedata.normalize("NFKD", c).encode("ascii", "ignore").decode() or c


def _too_deep(tree: Tree, path: str) -> Diagnostic | None:  # type: ignore[type-arg]
    """The first node nested deeper than the limit (iteratively: the point is to avoid recursion)."""
    # Depth 0 is `start`, 1 a statement, 2 what the statement holds: the diagnostic underlines that.
    stack: list[tuple[Tree, int, Tree]] = [(tree, 0, tree)]  # type: ignore[type-arg]
    while stack:
        node, depth, top = stack.pop()
        if depth == 2:
            top = node
        if depth > MAX_EXPR_DEPTH + 2:
            return Diagnostic(Severity.ERROR, f"expression is too deep: more than {MAX_EXPR_DEPTH} nested operations",
                              Span.of(top.meta, path),
                              "a spec expression is a handful of operations; name parts with `let x = ...`")
        stack.extend((c, depth + 1, top) for c in reversed(node.children) if isinstance(c, Tree))
    return None


# --- syntax errors ---------------------------------------------------------------------------------
def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _open_brackets(text: str, end: int) -> list[int]:
    """Offsets of the brackets still open at `end` (comments and strings skipped)."""
    stack: list[int] = []
    line_start = 0
    for line in text[:end].split("\n"):
        for start, stop in _code_regions(line):
            for i in range(start, stop):
                ch = line[i]
                if ch in _OPEN:
                    stack.append(line_start + i)
                elif ch in _CLOSE and stack and text[stack[-1]] == _CLOSE[ch]:
                    stack.pop()
        line_start += len(line) + 1
    return stack


def _describe(token_type: str) -> str:
    if token_type in _TOKEN_NAMES:
        return _TOKEN_NAMES[token_type]
    return f"`{token_type.lower()}`" if token_type in _KEYWORDS else token_type


def _expected_text(expected: set[str]) -> str:
    """Lark's terminal set in words, grouped: 'an expression', 'an operator', 'a new statement'."""
    exp = {t for t in expected if not t.startswith("__")}
    groups: list[str] = []
    if exp >= _EXPR_START:
        groups.append("an expression")
        exp -= _EXPR_START
    if len(exp & _OPERATORS) >= 3:
        groups.append("an operator")
        exp -= _OPERATORS | {"LPAR", "LSQB"}
    if exp & _STATEMENT_KEYWORDS:
        groups.append("a new statement")
        exp -= _STATEMENT_KEYWORDS | {"$END"}
    words = sorted(_describe(t) for t in exp) + groups
    if not words:
        return "something else"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _syntax_error(err: UnexpectedInput, text: str, path: str) -> Diagnostic:
    if isinstance(err, UnexpectedCharacters):
        return _bad_character(err, text, path)
    tok: Token | None = getattr(err, "token", None)
    at_eof = isinstance(err, UnexpectedEOF) or tok is None or tok.type == "$END"
    pos = len(text) if at_eof or tok is None else (tok.start_pos or 0)
    expected = set(getattr(err, "expected", ()) or ())

    opened = _open_brackets(text, pos)
    value = "" if at_eof or tok is None else str(tok)
    closer_problem = _bracket_problem(text, path, opened, value, at_eof or (tok is not None and tok.type in
                                                                               _STATEMENT_KEYWORDS), pos)
    if closer_problem is not None:
        return closer_problem

    if at_eof and not text.strip():
        return Diagnostic(Severity.ERROR, "the spec is empty", Span.point(path, 1, 1),
                          'a spec starts with `recurrence NAME "description"`; see docs/language.md')
    if at_eof:
        content = text.rstrip()
        line, col = _line_col(text, len(content))
        return Diagnostic(Severity.ERROR, f"unexpected end of file; expected {_expected_text(expected)}",
                          Span.point(path, line, col),
                          "the file ends in the middle of a statement; is the end of an expression missing?")
    assert tok is not None
    prev = err.token_history[-1] if isinstance(err, UnexpectedToken) and err.token_history else None
    special = _special_syntax_error(tok, prev, expected, text, path)
    if special is not None:
        return special
    line, col = _line_col(text, pos)
    shown = value if len(value) <= 40 else value[:37] + "..."
    msg = f"unexpected `{shown}`; expected {_expected_text(expected)}"
    span = Span.point(path, line, col, len(value.split("\n")[0]))
    return Diagnostic(Severity.ERROR, msg, span, _token_hint(tok, prev, expected))


def _missing_keyword_hint(name: str) -> str:
    return (f"write `update {name} = ...` for a state, `let {name} = ...` for a named expression, "
            f"or `input {name}: [...]` for a declaration")


def _special_syntax_error(tok: Token, prev: Token | None, expected: set[str], text: str,
                          path: str) -> Diagnostic | None:
    """Mistakes common enough to deserve their own message rather than 'unexpected X; expected Y'."""
    pos = tok.start_pos or 0
    line_start = text.rfind("\n", 0, pos) + 1
    first = re.match(r"[ \t]*(\w+)[ \t]*[=:]", text[line_start:])
    if first and first.group(1).upper() not in _KEYWORDS and pos <= line_start + first.end():
        # `S = ...` on a line of its own: the keyword is missing (Lark reads `S` as an annotation or
        # as a stray name, so its own message would point at the `=`).
        name = first.group(1)
        line, col = _line_col(text, line_start + first.start(1))
        return Diagnostic(Severity.ERROR, f"the statement `{name} ...` does not start with a keyword",
                          Span.point(path, line, col, len(name)), _missing_keyword_hint(name))
    if tok.type == "NUMBER" and prev is not None and prev.type == "INT" and str(tok).startswith("."):
        line, col = _line_col(text, prev.start_pos or 0)
        return Diagnostic(Severity.ERROR, f"dimension size `{prev}{tok}` is not a whole number",
                          Span.point(path, line, col, len(prev) + len(tok)), "a fixed size is an integer: `dim J = 2`")
    if tok.type in {"NAME", "NUMBER", "IMAG", "LPAR"} and len(expected & _OPERATORS) >= 3 and prev is not None:
        line, col = _line_col(text, pos)
        span = Span.point(path, line, col, len(str(tok)))
        if text.count("\n", 0, pos) == text.count("\n", 0, prev.start_pos or 0):
            return Diagnostic(Severity.ERROR, f"unexpected `{tok}` after a complete expression", span,
                              "two values side by side: is an operator such as `*`, `+` or `@` missing between them?")
        return Diagnostic(Severity.ERROR, f"unexpected `{tok}` after a complete expression", span,
                          f"a new statement starts with a keyword: one of {_STATEMENTS}")
    return None


def _bracket_problem(text: str, path: str, opened: list[int], value: str, statement_over: bool,
                     pos: int) -> Diagnostic | None:
    """An unmatched closer, a closer of the wrong kind, or an opener left open when a statement ends."""
    if value in _CLOSE:
        line, col = _line_col(text, pos)
        if not opened:
            return Diagnostic(Severity.ERROR, f"unmatched `{value}`", Span.point(path, line, col),
                              f"there is no `{_CLOSE[value]}` for it to close; delete it or add the opening bracket")
        top = text[opened[-1]]
        if top != _CLOSE[value]:
            o_line, o_col = _line_col(text, opened[-1])
            return Diagnostic(Severity.ERROR, f"`{value}` does not match the `{top}` opened at line {o_line}, "
                              f"column {o_col}", Span.point(path, line, col), f"close it with `{_OPEN[top]}`")
    if statement_over and opened:
        o_line, o_col = _line_col(text, opened[-1])
        top = text[opened[-1]]
        where = "the end of the file" if pos >= len(text.rstrip()) else \
            f"the next statement (line {_line_col(text, pos)[0]})"
        return Diagnostic(Severity.ERROR, f"`{top}` is never closed", Span.point(path, o_line, o_col),
                          f"add `{_OPEN[top]}` before {where}")
    return None


def _token_hint(tok: Token, prev: Token | None, expected: set[str]) -> str:
    if tok.type in _KEYWORDS and "NAME" in expected:
        return f"`{tok}` is a keyword of the language and cannot be a name"
    if tok.type == "EQUAL" and prev is not None and prev.type == "EQUAL":
        return "there is no comparison in the language; bind a value with a single `=`"
    if tok.type == "STRING":
        return 'the description is one "double-quoted" string right after the recurrence name'
    if "RECURRENCE" in expected:
        return 'every spec starts with `recurrence NAME "description"`'
    if expected == {"COLON"}:
        return "declare a tensor with a colon and a shape: `name: [K, V]`"
    if tok.type == "COLON" and "EQUAL" in expected:
        return "bind a value with `=`; only declarations (`input`, `param`, `state`, `output`) take a `: [shape]`"
    if prev is not None and prev.type == "COLON" and "LSQB" in expected:
        return "shapes are written in brackets: `[K]`, `[K, V]`, or `[]` for a scalar"
    if tok.type == "NAME" and expected <= {"COMMA", "RSQB"}:
        return "separate dimension names with commas: `[K, V]`"
    if tok.type == "RSQB" and prev is not None and prev.type == "COMMA":
        return "a dimension name is missing after the `,`"
    if tok.type in ("RPAR", "COMMA") and expected >= _EXPR_START:
        return "an argument is missing"
    if expected & _STATEMENT_KEYWORDS:
        return f"each statement starts with one of {_STATEMENTS}"
    return "see docs/language.md for the grammar"


def _bad_character(err: UnexpectedCharacters, text: str, path: str) -> Diagnostic:
    pos = err.pos_in_stream
    ch = text[pos : pos + 1] or " "  # Lark always reports a character; the fallback is only defensive
    line, col = _line_col(text, pos)
    span = Span.point(path, line, col)
    msg = f"unexpected character {describe_char(ch)}"
    line_rest = text[pos:].split("\n")[0]
    if ch == '"' and '"' not in line_rest[1:]:
        return Diagnostic(Severity.ERROR, "unterminated description", span,
                          'a description is closed by `"` on the same line')
    hint = _CHAR_HINTS.get(ch) or ("an invisible control character: delete it" if not ch.isprintable() else
                             "allowed are names, numbers, `+ - * / @ **`, brackets, `, : = .`, "
                             '"descriptions" and `#` comments')
    return Diagnostic(Severity.ERROR, msg, span, hint)


# --- tree -> syntax ----------------------------------------------------------------------------------
def _span(meta: object, path: str) -> Span:
    return Span.of(meta, path)


def _tok_span(tok: Token, path: str) -> Span:
    return Span(path, tok.line or 1, tok.column or 1, tok.end_line or tok.line or 1,
                tok.end_column or (tok.column or 1) + len(tok))


@v_args(meta=True, inline=True)
class _ToSyntax(Transformer):  # type: ignore[type-arg]
    """One method per grammar alias, each returning a `syntax` node with its span."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def _ident(self, tok: Token) -> S.Ident:
        return S.Ident(str(tok), _tok_span(tok, self.path))

    # --- expressions -------------------------------------------------------------------------
    def number(self, meta, tok):  # type: ignore[no-untyped-def]
        return S.Number(float(tok), str(tok), _span(meta, self.path))

    def imag(self, meta, tok):  # type: ignore[no-untyped-def]
        return S.Number(complex(0.0, float(str(tok)[:-1])), str(tok), _span(meta, self.path))

    def name(self, meta, tok):  # type: ignore[no-untyped-def]
        return S.Name(str(tok), _span(meta, self.path))

    def call(self, meta, func, *args):  # type: ignore[no-untyped-def]
        real_args = tuple(a for a in args if a is not None)
        return S.Call(str(func), real_args, _span(meta, self.path), _tok_span(func, self.path))

    def _bin(op: str):  # type: ignore[misc]  (a factory run at class creation)
        def method(self, meta, lhs, rhs):  # type: ignore[no-untyped-def]
            return S.BinOp(op, lhs, rhs, _span(meta, self.path))
        return method

    add, sub, mul, div, matmul, pow = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("@"), _bin("**")

    def neg(self, meta, arg):  # type: ignore[no-untyped-def]
        return S.UnOp("-", arg, _span(meta, self.path))

    def pos(self, meta, arg):  # type: ignore[no-untyped-def]
        return S.UnOp("+", arg, _span(meta, self.path))

    def index(self, meta, base, idx):  # type: ignore[no-untyped-def]
        return S.Index(base, idx, _span(meta, self.path))

    def attr(self, meta, base, tok):  # type: ignore[no-untyped-def]
        return S.Attr(base, str(tok), _span(meta, self.path), _tok_span(tok, self.path))

    # --- declarations ------------------------------------------------------------------------
    def shape(self, meta, *names):  # type: ignore[no-untyped-def]
        return tuple(self._ident(n) for n in names if n is not None)

    def annot_word(self, meta, tok):  # type: ignore[no-untyped-def]
        return self._ident(tok)

    def annot_interval(self, meta, interval):  # type: ignore[no-untyped-def]
        return interval

    def _interval(lo_open: bool, hi_open: bool):  # type: ignore[misc]
        def method(self, meta, lo, hi):  # type: ignore[no-untyped-def]
            return S.Interval(lo, hi, lo_open, hi_open, _span(meta, self.path))
        return method

    open_open, open_closed = _interval(True, True), _interval(True, False)
    closed_open, closed_closed = _interval(False, True), _interval(False, False)

    def tensor_decl(self, meta, name, shape, *rest):  # type: ignore[no-untyped-def]
        *annotations, default, when = rest  # the optional `= value` and `when OPT` (None when absent)
        ident = self._ident(name)
        last = annotations[-1] if annotations else None
        if default is not None and isinstance(last, S.Ident) and last.span.line > ident.span.line:
            # `state S: [K, V]` then `S = ...` on the next line reads as an annotation `S` with a default: the
            # writer meant a new statement and left out its keyword
            raise SpecError([Diagnostic(Severity.ERROR, f"the statement `{last.name} ...` does not start with a "
                                        "keyword", last.span, _missing_keyword_hint(last.name))], "")
        return S.TensorDecl(ident, shape, tuple(annotations), _span(meta, self.path), default,
                            self._ident(when) if when is not None else None)

    def header(self, meta, name, desc):  # type: ignore[no-untyped-def]
        text = str(desc)[1:-1] if desc is not None else ""
        return S.Header(self._ident(name), text, _span(meta, self.path))

    def _decl(kind: str):  # type: ignore[misc]
        def method(self, meta, *items):  # type: ignore[no-untyped-def]
            return S.Decl(kind, tuple(items), _span(meta, self.path))
        return method

    input_decl, param_decl, state_decl = _decl("input"), _decl("param"), _decl("state")

    def _bind(kind: str):  # type: ignore[misc]
        def method(self, meta, name, value):  # type: ignore[no-untyped-def]
            return S.Bind(kind, self._ident(name), value, _span(meta, self.path))
        return method

    const_decl, option_decl, let_stmt = _bind("const"), _bind("option"), _bind("let")

    def dim_decl(self, meta, name, size):  # type: ignore[no-untyped-def]
        # Clamped, not parsed, when absurdly long: int() refuses more than 4300 digits, and the checker
        # rejects anything above its range anyway.
        value = int(size) if len(size) <= MAX_INT_DIGITS else 10**MAX_INT_DIGITS
        return S.DimDecl(self._ident(name), value, _span(meta, self.path))

    def loop(self, meta, var, dim):  # type: ignore[no-untyped-def]
        return S.Loop(self._ident(var), self._ident(dim), _span(meta, self.path))

    def update_stmt(self, meta, target, value, loop):  # type: ignore[no-untyped-def]
        return S.Update(self._ident(target), value, loop, _span(meta, self.path))

    def output_stmt(self, meta, name, shape, value):  # type: ignore[no-untyped-def]
        return S.Output(self._ident(name), shape, value, _span(meta, self.path))

    def api_arg(self, meta, public, target):  # type: ignore[no-untyped-def]
        pub = self._ident(public)
        return S.ApiArg(pub, self._ident(target) if target is not None else pub, _span(meta, self.path))

    def api_stmt(self, meta, name, *args):  # type: ignore[no-untyped-def]
        return S.Api(self._ident(name), tuple(a for a in args if a is not None), _span(meta, self.path))

    def layout_stmt(self, meta, shape):  # type: ignore[no-untyped-def]
        return S.Layout(shape, _span(meta, self.path))

    def start(self, meta, header, *statements):  # type: ignore[no-untyped-def]
        return S.Module(header, tuple(statements), self.path, "")
