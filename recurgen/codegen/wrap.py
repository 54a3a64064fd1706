"""wrap: fold the generated module's long lines, so every line stays within the width.

Printed pointer arithmetic and derived expressions can run to hundreds of characters. A line longer than the
width is broken after a comma, or before a `+`, `-` or `*`, inside an open bracket (Python joins such lines),
each piece aligned one column right of the bracket it continues (or, when that bracket is too far right, eight
columns in from the line's indent, as a hanging continuation). A trailing comment that would not fit moves to
its own line above the statement. Comment lines (the derived math) fold at spaces. Strings are never broken;
a line with no break point is left as it is.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass

_OPEN, _CLOSE = "([{", ")]}"
_FSTRING_START = getattr(tokenize, "FSTRING_START", -1)
_FSTRING_END = getattr(tokenize, "FSTRING_END", -1)
_BINARY = frozenset({"+", "-", "*"})


@dataclass(frozen=True)
class _Break:
    pos: int  # where the next piece starts (original column)
    bracket: int  # original column of the innermost open bracket, or -1 for one opened on an earlier line
    keep: int  # where the current piece ends (before the trailing space of a comma)
    subscript: bool  # inside [...]: a break there (`m[:,` / `None]`) reads badly, so it is the last resort
    depth: int  # brackets around it: the shallowest break that leaves a well-filled line reads best


def wrap_long_lines(source: str, width: int = 120) -> str:
    lines = source.splitlines()
    long = [row for row, line in enumerate(lines, 1) if len(line) > width]
    by_row: dict[int, list[tokenize.TokenInfo]] = {}
    depth_at: dict[int, int] = {}  # bracket depth at the start of each row
    multi: set[int] = set()
    # only the statements holding a long line are tokenized (a statement starts outside any bracket)
    tree = ast.parse(source) if long else None
    done: set[int] = set()
    for row in long:
        if row in done or tree is None:
            continue
        span = _enclosing(tree.body, row)
        if span is None:
            continue
        first, last = span
        done.update(range(first, last + 1))
        depth = 0
        text = "\n".join(lines[first - 1:last]) + "\n"
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.ENDMARKER:
                break
            r0, r1 = tok.start[0] + first - 1, tok.end[0] + first - 1
            depth_at.setdefault(r0, depth)
            if r0 != r1:
                multi.update(range(r0, r1 + 1))
            else:
                by_row.setdefault(r0, []).append(tok)
            if tok.type == tokenize.OP and tok.string in _OPEN:
                depth += 1
            elif tok.type == tokenize.OP and tok.string in _CLOSE:
                depth -= 1
    out: list[str] = []
    for row, line in enumerate(lines, 1):
        if len(line) <= width or row in multi:
            out.append(line)
        elif line.lstrip().startswith("#"):
            out += _wrap_comment(line, width)
        else:
            out += _wrap(line, by_row.get(row, []), depth_at.get(row, 0), width)
    return "\n".join(out) + "\n"


def _enclosing(body: list[ast.stmt], row: int) -> tuple[int, int] | None:
    """The rows of the smallest piece of a statement that holds `row` and tokenizes alone: a simple statement,
    or a compound statement's header (decorators included). None: `row` is outside every statement."""
    for s in body:
        decorators = getattr(s, "decorator_list", None) or []
        first = min([s.lineno, *(d.lineno for d in decorators)])
        last = s.end_lineno or s.lineno
        if not first <= row <= last:
            continue
        inner = getattr(s, "body", None)
        if not (isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt)):
            return first, last
        if row < inner[0].lineno:
            return first, inner[0].lineno - 1
        for block in (inner, getattr(s, "orelse", []), getattr(s, "finalbody", []),
                      *([h] for h in getattr(s, "handlers", []))):
            found = _enclosing(block, row)  # an except handler is walked as a one-statement block
            if found is not None:
                return found
        return first, last  # an `else:`/`except ...:` line: the whole statement
    return None


def _wrap_comment(line: str, width: int) -> list[str]:
    """A comment line folded at spaces; the pieces after the first hang four columns deeper."""
    body = line.lstrip()[1:]
    lead = line[: len(line) - len(line.lstrip())] + "#" + body[: len(body) - len(body.lstrip())]
    hang = lead + "    "
    out, rest, prefix = [], body.lstrip(), lead
    while len(prefix) + len(rest) > width:
        cut = rest.rfind(" ", 0, width - len(prefix) + 1)
        if cut <= 0:
            break
        out.append(prefix + rest[:cut].rstrip())
        rest, prefix = rest[cut:].lstrip(), hang
    return [*out, prefix + rest]


def _wrap(line: str, toks: list[tokenize.TokenInfo], depth: int, width: int) -> list[str]:
    indent = len(line) - len(line.lstrip())
    comment = next((t for t in toks if t.type == tokenize.COMMENT), None)
    code_end = comment.start[1] if comment else len(line)
    code = line[:code_end].rstrip()
    breaks = _breaks(toks, code_end, depth)
    pieces: list[tuple[int, int]] = []  # (original start, display column) of each piece
    start, col = 0, 0
    while True:
        shown = col + len(code) - start
        if shown <= width:
            break
        fits = [b for b in breaks if b.pos > start and col + (b.keep - start) <= width
                and _cont(b, pieces, start, col, indent) < col + (b.pos - start)]
        choice = _best(fits, start, col, width)
        if choice is None:
            break
        pieces.append((start, col))
        start, col = choice.pos, _cont(choice, pieces, start, col, indent)
        breaks = [b for b in breaks if b.pos > start]
    pieces.append((start, col))
    ends = [p for p, _ in pieces[1:]] + [len(code)]
    text = [code[s:e].rstrip() if i == 0 else " " * c + code[s:e].strip()
            for i, ((s, c), e) in enumerate(zip(pieces, ends, strict=True))]
    if comment is not None:
        if len(text[-1]) + 2 + len(comment.string) <= width:
            text[-1] += "  " + comment.string
        else:
            text.insert(0, " " * indent + comment.string)
    return text


def _best(fits: list[_Break], start: int, col: int, width: int) -> _Break | None:
    """The shallowest break (outside subscripts if possible) among those filling at least half the line; the
    rightmost of equals."""
    if not fits:
        return None
    full = [b for b in fits if col + (b.keep - start) >= (col + width) / 2] or fits
    plain = [b for b in full if not b.subscript] or full
    least = min(b.depth for b in plain)
    return [b for b in plain if b.depth == least][-1]


def _cont(b: _Break, pieces: list[tuple[int, int]], start: int, col: int, indent: int) -> int:
    """Display column the piece after break `b` starts at: one right of its bracket, else a hanging indent."""
    if b.bracket < 0:
        return indent + 8
    shown = col + (b.bracket - start) if b.bracket >= start else _shown(b.bracket, pieces)
    return shown + 1 if shown + 1 <= 80 else indent + 8


def _shown(pos: int, pieces: list[tuple[int, int]]) -> int:
    s, c = max((p for p in pieces if p[0] <= pos), key=lambda p: p[0])
    return c + (pos - s)


def _breaks(toks: list[tokenize.TokenInfo], code_end: int, depth: int) -> list[_Break]:
    """Every place the line may break: inside a bracket of this line, or of one still open from above."""
    stack: list[tuple[int, str]] = []
    outer = depth  # brackets opened on earlier lines and not yet closed on this one
    out: list[_Break] = []
    prev: tokenize.TokenInfo | None = None
    fstring = 0  # Python 3.12+ tokenizes f-strings into parts: never break inside one
    for tok in toks:
        if tok.start[1] >= code_end:
            break
        if tok.type == _FSTRING_START:
            fstring += 1
        elif tok.type == _FSTRING_END:
            fstring -= 1
        if fstring:
            prev = tok
            continue
        op = tok.string if tok.type == tokenize.OP else ""
        if op and op in _OPEN:
            stack.append((tok.start[1], op))
        elif op and op in _CLOSE:
            if stack:
                stack.pop()
            else:
                outer -= 1
        elif stack or outer > 0:
            bracket, sub = stack[-1] if stack else (-1, "(")
            if op == ",":
                out.append(_Break(tok.end[1] + 1, bracket, tok.end[1], sub == "[", len(stack) + outer))
            elif op in _BINARY and prev is not None and _operand_end(prev):
                out.append(_Break(tok.start[1], bracket, tok.start[1], sub == "[", len(stack) + outer))
        prev = tok
    return out


def _operand_end(tok: tokenize.TokenInfo) -> bool:
    """`tok` ends an operand (so a following `-`/`*` is binary, not a sign or an unpacking star)."""
    return tok.type in (tokenize.NAME, tokenize.NUMBER, tokenize.STRING) or tok.string in _CLOSE
