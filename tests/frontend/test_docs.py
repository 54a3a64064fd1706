"""docs/language.md stays true: its ```rec blocks are complete specs that check (and are classified as
their `# class:` comment claims), its ```rec-error blocks are rejected with the message they quote, and
its sample diagnostic is what the compiler prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from recurgen.errors import SpecError
from recurgen.frontend import from_text

DOC = Path(__file__).resolve().parents[2] / "docs" / "language.md"
TEXT = DOC.read_text(encoding="utf-8")
FENCE = re.compile(r"^```(rec|rec-error|text)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
BLOCKS = [(m.group(1), m.group(2), TEXT.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(TEXT)]


def _is_complete(text: str) -> bool:
    return any(line.startswith("recurrence") for line in text.splitlines() if not line.startswith("#"))


def _ids(blocks: list[tuple[str, str, int]]) -> list[str]:
    return [f"line{line}" for _, _, line in blocks]


SPECS = [b for b in BLOCKS if b[0] == "rec"]
ERRORS = [b for b in BLOCKS if b[0] == "rec-error"]


def test_the_doc_has_examples() -> None:
    assert len(SPECS) >= 15
    assert ERRORS
    incomplete = [line for _, text, line in SPECS if not _is_complete(text)]
    assert not incomplete, f"```rec blocks must be complete specs (use ```text for fragments): lines {incomplete}"


@pytest.mark.parametrize(("kind", "text", "line"), SPECS, ids=_ids(SPECS))
def test_complete_examples_check(kind: str, text: str, line: int) -> None:
    spec = from_text(text, f"docs/language.md:{line}")
    claim = re.search(r"^# class: (.+)$", text, re.MULTILINE)
    if claim is None:
        return
    from recurgen.analysis import analyze  # here, so a broken analysis fails only the class claims

    got = {s.transition.state: s.transition for s in analyze(spec).states}
    for part in claim.group(1).split(";"):
        state, kind_name, *axis = part.split()
        t = got[state]
        assert t.kind.value == kind_name, t.evidence
        if axis:
            assert t.axis is not None
            assert t.axis.value == axis[0], t.evidence


@pytest.mark.parametrize(("kind", "text", "line"), ERRORS, ids=_ids(ERRORS))
def test_rejected_examples_are_rejected(kind: str, text: str, line: int) -> None:
    expected = re.search(r"^# error: (.+)$", text, re.MULTILINE)
    assert expected is not None, "a rec-error block quotes its message in a `# error:` comment"
    from recurgen.analysis import analyze

    with pytest.raises(SpecError) as info:
        analyze(from_text(text, "doc.rec"))
    assert expected.group(1) in info.value.render()


def test_sample_diagnostic_is_what_the_compiler_prints() -> None:
    sample = next(text for kind, text, _ in BLOCKS if kind == "text" and text.startswith("specs/oops.rec:"))
    source = next(text for _, text, _ in ERRORS if "outer(k, v)" in text)
    with pytest.raises(SpecError) as info:
        from_text(source, "specs/oops.rec")
    assert info.value.render() + "\n" == sample
