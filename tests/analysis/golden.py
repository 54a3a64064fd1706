"""Golden-file comparison: `pytest --update-golden` rewrites the files, otherwise a diff is shown."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def check_golden(relpath: str, actual: str, update: bool) -> None:
    """Compare `actual` with tests/golden/<relpath>; with `update`, write it instead."""
    path = GOLDEN / relpath
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no golden file {path}; run `pytest --update-golden` and review the new file")
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                            f"golden/{relpath}", "actual"))
        pytest.fail(f"output differs from golden/{relpath} (run `pytest --update-golden` if intended):\n{diff}")
