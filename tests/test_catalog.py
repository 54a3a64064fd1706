"""docs/models.md is generated from the specs: it must be current."""

from __future__ import annotations

from pathlib import Path

from recurgen.catalog import render
from recurgen.resources import bundled_spec_names

DOC = Path(__file__).parent.parent / "docs" / "models.md"


def test_models_doc_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), "run `python -m recurgen.catalog` and commit docs/models.md"


def test_models_doc_lists_every_bundled_spec() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in bundled_spec_names():
        assert f"## {name}\n" in text
        assert f'recurgen.load("{name}")' in text
