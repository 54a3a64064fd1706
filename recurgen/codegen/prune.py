"""prune: drop the assignments of a generated module that nothing reads.

The printers emit every value a step could need (each input's load, every intermediate of the derived math);
a given kernel often reads only some of them: delta_product's recurrent kernels load `k`, `v`, `beta` per
token and then use their per-product slices, the complex specs' backward computes a real part nobody reads.
Triton's compiler would delete them on a GPU, but the interpreter executes every line, and a reader of the
generated module should not have to wonder what they are for.

Only single-name assignments whose value is pure (arithmetic, subscripts, and calls of `tl.*`/`torch.*`
functions that neither store nor act in place) are removed, repeatedly, until every remaining name is read;
a tuple assignment of pure values keeps its read names and writes `_` for the others.
"""

from __future__ import annotations

import ast
from collections import Counter

# calls with effects (or whose result is not all they do): never dropped
_EFFECTS = ("store", "atomic", "debug_barrier", "device_print", "device_assert", "static_print", "launch")


def prune_unused(source: str) -> str:
    """`source` without its dead pure assignments (the text is otherwise untouched, line for line)."""
    lines = source.splitlines()
    edits = [e for fn in _functions(ast.parse(source).body) for e in _dead(fn, lines)]
    for first, last, replacement in sorted(edits, reverse=True):
        lines[first - 1:last] = replacement
    return "\n".join(lines) + "\n" if edits else source


def _functions(body: list[ast.stmt]) -> list[ast.FunctionDef]:
    """Every function defined by a statement of `body`, nested ones too (statements only: an expression holds
    no `def`, so the walk skips them)."""
    out: list[ast.FunctionDef] = []
    todo = list(body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef):
            out.append(node)
        for field in ("body", "orelse", "finalbody", "handlers"):
            todo += [s for s in getattr(node, field, ()) if isinstance(s, ast.stmt | ast.ExceptHandler)]
    return out


def _dead(fn: ast.FunctionDef, lines: list[str]) -> list[tuple[int, int, list[str]]]:
    """(first line, last line, replacement lines) of `fn`'s dead assignments (its nested functions are visited
    on their own). Dropping one can leave the values it read unread: repeated until nothing changes, on counts
    of the names read (each statement's own counted once), so the tree is walked once."""
    blocks = _blocks(fn)
    candidates = [s for block in blocks for s in block if _candidate(s)]
    if not candidates:
        return []
    chosen = {id(s) for s in candidates}
    reads = _reads(fn)
    dropped: set[int] = set()  # id() of the statements removed so far
    while True:
        read = {n for n, c in reads.items() if c > 0}
        more = [s for s in candidates if id(s) not in dropped and _drops(_edit(s, read, lines))]
        if not more:
            break
        for s in more:
            dropped.add(id(s))
            reads.subtract(_reads(s))
    edits: list[tuple[int, int, list[str]]] = []
    for block in blocks:
        gone = [s for s in block if id(s) in dropped]
        for stmt in gone:
            # a block must keep one statement: the last removed one becomes `pass` if nothing else is left
            keep = [" " * stmt.col_offset + "pass"] if stmt is gone[-1] and len(gone) == len(block) else []
            edits.append((stmt.lineno, stmt.end_lineno or stmt.lineno, keep))
        edits += [e for s in block if id(s) in chosen and id(s) not in dropped
                  and (e := _edit(s, read, lines)) is not None]
    return edits


def _drops(edit: tuple[int, int, list[str]] | None) -> bool:
    return edit is not None and not edit[2]


def _reads(node: ast.AST) -> Counter[str]:
    """How often `node` (with the functions nested in it) may read each name: loads and deletes, augmented
    assignments, and global or nonlocal names (their assignment is an effect)."""
    read: Counter[str] = Counter()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            if not isinstance(n.ctx, ast.Store):
                read[n.id] += 1
        elif isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name):
            read[n.target.id] += 1
        elif isinstance(n, ast.Global | ast.Nonlocal):
            read.update(n.names)
    return read


def _blocks(fn: ast.FunctionDef) -> list[list[ast.stmt]]:
    """Every statement list of `fn`'s own body (not of the functions nested in it: they are visited alone)."""
    out: list[list[ast.stmt]] = []
    todo: list[ast.AST] = [fn]
    while todo:
        node = todo.pop()
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                out.append(block)
                todo += [s for s in block if not isinstance(s, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]
        if isinstance(node, ast.Try):
            todo += node.handlers
    return out


def _candidate(stmt: ast.stmt) -> bool:
    """An assignment this stage may drop or narrow: one target, a pure value."""
    return isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and _pure(stmt.value)


def _edit(stmt: ast.stmt, read: set[str], lines: list[str]) -> tuple[int, int, list[str]] | None:
    """None to keep `stmt` (a candidate); else its line range and the text replacing it ([] to delete)."""
    if not isinstance(stmt, ast.Assign):
        return None
    target = stmt.targets[0]
    first, last = stmt.lineno, stmt.end_lineno or stmt.lineno
    if isinstance(target, ast.Name):
        return None if target.id in read else (first, last, [])
    if not (isinstance(target, ast.Tuple) and all(isinstance(e, ast.Name) for e in target.elts)):
        return None
    names = [e.id for e in target.elts]  # type: ignore[attr-defined]
    if all(n in read or n == "_" for n in names) or first != last:
        return None
    if not any(n in read for n in names):
        return (first, last, [])
    line = lines[first - 1]
    return (first, last, [line[: target.col_offset] + ", ".join(n if n in read else "_" for n in names)
                          + line[target.end_col_offset or 0:]])


def _pure(value: ast.expr) -> bool:
    """No call in `value` can have an effect: module functions of tl/torch/math that neither store nor act in
    place, tensor methods that only compute, and a few builtins."""
    for node in ast.walk(value):
        if isinstance(node, (ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)):
            return False
        if isinstance(node, ast.Call) and not _pure_call(node.func):
            return False
    return True


def _pure_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in _BUILTINS
    if not isinstance(func, ast.Attribute) or func.attr.endswith("_") or any(e in func.attr for e in _EFFECTS):
        return False
    return _module(func.value) is not None or func.attr in _METHODS


def _module(node: ast.expr) -> str | None:
    """`tl`, `torch` or `math` when `node` names that module or one of its submodules (`torch.nn.functional`)."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) and node.id in ("tl", "torch", "math") else None


_BUILTINS = frozenset({"float", "int", "abs", "min", "max", "len", "bool", "range", "tuple", "list"})
# tensor methods that only compute a value
_METHODS = frozenset({"to", "contiguous", "float", "reshape", "view", "expand", "transpose", "unsqueeze", "squeeze",
                      "sum", "clone", "conj", "abs", "exp", "log", "real", "imag", "numel", "dim", "size", "flip",
                      "new_zeros", "new_empty", "new_ones", "cumsum", "select", "detach", "split", "chunk", "permute",
                      "matmul", "sqrt", "sigmoid", "tanh", "mean", "amax", "max", "min", "trans", "item"})
