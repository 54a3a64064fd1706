"""Golden diagnostics: each `<case>.rec` here is a malformed spec, `<case>.err` its exact rendered error.

`pytest --update-golden tests/errors` rewrites the `.err` files; review the diff like code. Besides the
exact text, every case is checked for the properties editors and CI rely on (after Triton's
`test_compile_errors.py`): a `path:line:col: error:` header per diagnostic, a caret line under the
source, diagnostics in source order, and no internal frame or recurgen source path leaking out.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from recurgen.errors import SpecError
from recurgen.frontend import from_text

HERE = Path(__file__).parent
CASES = sorted(HERE.glob("*.rec"))
# Diagnostics name the file as a user would pass it: relative to the repository root.
DISPLAY_DIR = "tests/errors"
HEADER = re.compile(r"^(?P<path>[^\s:]+\.rec):(?P<line>\d+):(?P<col>\d+): error: \S", re.MULTILINE)
CARET = re.compile(r"^ *\| *\^+$", re.MULTILINE)
INTERNAL = re.compile(r"Traceback|File \"|recurgen/\w+\.py|site-packages|AssertionError|KeyError|TypeError")


def _render(case: Path) -> tuple[SpecError, str]:
    text = case.read_text(encoding="utf-8")
    with pytest.raises(SpecError) as info:
        from_text(text, f"{DISPLAY_DIR}/{case.name}")
    return info.value, info.value.render() + "\n"


def test_enough_cases() -> None:
    assert len(CASES) >= 30


def test_every_golden_has_a_case() -> None:
    stale = [p.name for p in HERE.glob("*.err") if not p.with_suffix(".rec").exists()]
    assert not stale, f"golden files without a .rec case: {stale}"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_golden(case: Path, update_golden: bool) -> None:
    _, rendered = _render(case)
    golden = case.with_suffix(".err")
    if update_golden:
        golden.write_text(rendered, encoding="utf-8")
        return
    assert golden.exists(), f"no golden for {case.name}: run `pytest --update-golden {DISPLAY_DIR}`"
    assert rendered == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_shape_of_diagnostics(case: Path) -> None:
    err, rendered = _render(case)
    headers = list(HEADER.finditer(rendered))
    assert len(headers) == len(err.diagnostics) >= 1
    lines = case.read_text(encoding="utf-8").split("\n")
    for m, diag in zip(headers, err.diagnostics, strict=True):
        assert m["path"] == f"{DISPLAY_DIR}/{case.name}"
        line, col = int(m["line"]), int(m["col"])
        assert (line, col) == (diag.span.line, diag.span.col)
        assert 1 <= line <= len(lines), "line outside the file"
        assert 1 <= col <= len(lines[line - 1]) + 1, "column outside the line"
    assert len(CARET.findall(rendered)) == len(err.diagnostics)
    positions = [(d.span.line, d.span.col) for d in err.diagnostics]
    assert positions == sorted(positions)
    assert not INTERNAL.search(rendered), rendered
    assert rendered.rstrip().endswith(f"in {DISPLAY_DIR}/{case.name}")


def test_several_errors_are_all_reported() -> None:
    err, _ = _render(HERE / "multiple_errors.rec")
    assert len(err.diagnostics) >= 4
    assert len({d.span.line for d in err.diagnostics}) >= 4


@pytest.mark.parametrize(("case", "underlined"), [
    ("shape_mismatch_add", "scale * (q @ S) + k"),
    ("shape_mismatch_mul_outer", "k * v"),
    ("shape_mismatch_matmul", "v @ S"),
    ("unknown_name", "betta"),
    ("unknown_function", "outr"),
    ("complex_sigmoid", "sigmoid(complex(g, theta))"),
    ("index_out_of_range", "2"),
    ("prev_in_update", "prev(S)"),
    ("head_outside_const", "head"),
    ("interval_reversed", "(1, 0)"),
    ("annotation_unknown", "logdecy"),
    ("unicode_cyrillic_lookalike", "gаte"),
    ("duplicate_name", "q"),
    ("state_never_updated", "n"),
])
def test_spans_point_at_the_culprit(case: str, underlined: str) -> None:
    """The underline covers exactly the sub-expression at fault, not the statement around it."""
    err, _ = _render(HERE / f"{case}.rec")
    sp = err.diagnostics[0].span
    line = (HERE / f"{case}.rec").read_text(encoding="utf-8").split("\n")[sp.line - 1]
    assert sp.end_line == sp.line
    assert line[sp.col - 1 : sp.end_col - 1] == underlined
