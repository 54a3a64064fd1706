"""parse: spec text -> syntax.Module (Lark LALR with positions; Lark errors become diagnostics)."""

from __future__ import annotations

import functools

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import syntax as S
from .errors import Diagnostic, Severity, Span, SpecError
from .resources import grammar_text

MAX_SPEC_BYTES = 256 * 1024  # a spec is ten lines; anything this large is not one
MAX_NESTING = 64  # deeper expressions are rejected before Lark's recursion could overflow

_TOKEN_NAMES = {
    "NAME": "a name", "NUMBER": "a number", "INT": "an integer", "IMAG": "an imaginary number",
    "STRING": 'a "description"', "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`",
    "COMMA": "`,`", "COLON": "`:`", "EQUAL": "`=`", "PLUS": "`+`", "MINUS": "`-`", "STAR": "`*`",
    "SLASH": "`/`", "AT": "`@`", "DOUBLESTAR": "`**`", "DOT": "`.`", "$END": "end of file",
}
_KEYWORDS = ("recurrence", "input", "param", "const", "option", "dim", "state", "let", "update",
             "output", "api", "for", "in", "real", "complex")


@functools.cache
def _parser() -> Lark:
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True)


def _describe(token_type: str) -> str:
    if token_type in _TOKEN_NAMES:
        return _TOKEN_NAMES[token_type]
    low = token_type.lower()
    if low in _KEYWORDS:
        return f"`{low}`"
    return token_type


def _syntax_hint(err: UnexpectedInput, text: str) -> str:
    tok = getattr(err, "token", None)
    value = str(tok) if tok is not None else ""
    expected = set(getattr(err, "expected", ()) or getattr(err, "allowed", ()) or ())
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        if ch == "'":
            return 'descriptions are written in double quotes: "..."'
        if ch in "^":
            return "powers are written `**`"
        if ch == "=" and text[err.pos_in_stream : err.pos_in_stream + 2] == "==":
            return "there is no comparison operator in the language"
        return "only names, numbers, `+ - * / @ **`, brackets, `,`, `:`, `=`, `.` and `#` comments are allowed"
    if "COLON" in expected:
        return "declare a tensor with a colon and a shape: `name: [K, V]`"
    if value == ":" and "EQUAL" in expected:
        return "bind a value with `=`; shapes follow `:` only in declarations"
    if tok is not None and tok.type == "NAME" and "LSQB" in expected:
        return "shapes are written in brackets: `[K]`, `[K, V]`, or `[]` for a scalar"
    if tok is not None and tok.type == "$END":
        return "the file ends in the middle of a statement; is a bracket or an expression missing?"
    if "RECURRENCE" in expected:
        return 'every spec starts with `recurrence NAME "description"`'
    if "RPAR" in expected or "RSQB" in expected:
        return "check that every bracket is closed"
    return "each statement starts with one of `input`, `param`, `const`, `option`, `dim`, `state`, `let`, " \
           "`update`, `output`"


def _syntax_error(err: UnexpectedInput, text: str, path: str) -> Diagnostic:
    line, col = max(err.line, 1), max(err.column, 1)
    width = 1
    tok = getattr(err, "token", None)
    if isinstance(err, UnexpectedEOF) or (tok is not None and tok.type == "$END"):
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
        msg = "unexpected end of file"
    elif isinstance(err, UnexpectedCharacters):
        msg = f"unexpected character `{text[err.pos_in_stream]}`"
    else:
        assert isinstance(err, UnexpectedToken)
        width = len(str(err.token)) or 1
        expected = sorted({_describe(t) for t in err.expected if not t.startswith("__")})
        shown = ", ".join(expected[:8]) + (", ..." if len(expected) > 8 else "")
        msg = f"unexpected `{err.token}`; expected {shown}"
    return Diagnostic(Severity.ERROR, msg, Span.point(path, line, col, width), _syntax_hint(err, text))


def _nesting_depth(text: str) -> int:
    depth = best = 0
    for ch in text:
        if ch in "([":
            depth += 1
            best = max(best, depth)
        elif ch in ")]":
            depth -= 1
    return best


def parse_spec(text: str, path: str = "<spec>") -> S.Module:
    """Parse spec text into the surface tree.

    Raises:
        SpecError: with one diagnostic for the first syntax error.
    """
    if len(text.encode("utf-8", "replace")) > MAX_SPEC_BYTES:
        raise SpecError([Diagnostic(Severity.ERROR, f"spec is larger than {MAX_SPEC_BYTES} bytes",
                                    Span.point(path, 1, 1), "a spec describes one recurrence in a few lines")], text)
    if _nesting_depth(text) > MAX_NESTING:
        line = next((i + 1 for i, ln in enumerate(text.splitlines()) if ln.count("(") + ln.count("[") > 8), 1)
        raise SpecError([Diagnostic(Severity.ERROR, f"brackets nested deeper than {MAX_NESTING} levels",
                                    Span.point(path, line, 1), "use `let` to name sub-expressions")], text)
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as err:
        raise SpecError([_syntax_error(err, text, path)], text) from None
    try:
        module = _ToSyntax(path).transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, SpecError):
            raise SpecError(err.orig_exc.diagnostics, text) from None
        raise
    return S.Module(module.header, module.statements, path, text)


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

    def _bin(op: str):  # type: ignore[misc]  # noqa: N805  (factory used at class creation)
        def method(self, meta, lhs, rhs):  # type: ignore[no-untyped-def]
            return S.BinOp(op, lhs, rhs, _span(meta, self.path))
        return method

    add, sub, mul, div, matmul, pow = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("@"), _bin("**")  # noqa: A003

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

    def _interval(lo_open: bool, hi_open: bool):  # type: ignore[misc]  # noqa: N805
        def method(self, meta, lo, hi):  # type: ignore[no-untyped-def]
            return S.Interval(lo, hi, lo_open, hi_open, _span(meta, self.path))
        return method

    open_open, open_closed = _interval(True, True), _interval(True, False)
    closed_open, closed_closed = _interval(False, True), _interval(False, False)

    def tensor_decl(self, meta, name, shape, *annotations):  # type: ignore[no-untyped-def]
        return S.TensorDecl(self._ident(name), shape, tuple(annotations), _span(meta, self.path))

    def header(self, meta, name, desc):  # type: ignore[no-untyped-def]
        text = str(desc)[1:-1] if desc is not None else ""
        return S.Header(self._ident(name), text, _span(meta, self.path))

    def _decl(kind: str):  # type: ignore[misc]  # noqa: N805
        def method(self, meta, *items):  # type: ignore[no-untyped-def]
            return S.Decl(kind, tuple(items), _span(meta, self.path))
        return method

    input_decl, param_decl, state_decl = _decl("input"), _decl("param"), _decl("state")

    def _bind(kind: str):  # type: ignore[misc]  # noqa: N805
        def method(self, meta, name, value):  # type: ignore[no-untyped-def]
            return S.Bind(kind, self._ident(name), value, _span(meta, self.path))
        return method

    const_decl, option_decl, let_stmt = _bind("const"), _bind("option"), _bind("let")

    def dim_decl(self, meta, name, size):  # type: ignore[no-untyped-def]
        return S.DimDecl(self._ident(name), int(size), _span(meta, self.path))

    def loop(self, meta, var, dim):  # type: ignore[no-untyped-def]
        return S.Loop(self._ident(var), self._ident(dim), _span(meta, self.path))

    def update_stmt(self, meta, target, value, loop):  # type: ignore[no-untyped-def]
        return S.Update(self._ident(target), value, loop, _span(meta, self.path))

    def output_stmt(self, meta, name, shape, value):  # type: ignore[no-untyped-def]
        return S.Output(self._ident(name), shape, value, _span(meta, self.path))

    def api_stmt(self, meta, name, *args):  # type: ignore[no-untyped-def]
        return S.Api(self._ident(name), tuple(self._ident(a) for a in args if a is not None),
                     _span(meta, self.path))

    def start(self, meta, header, *statements):  # type: ignore[no-untyped-def]
        return S.Module(header, tuple(statements), self.path, "")
