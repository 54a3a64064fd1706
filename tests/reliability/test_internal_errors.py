"""`recurgen.load`/`compile` end in a compiled recurrence, a SpecError, or `recurgen.InternalError` naming the
spec: never a bare Python exception from inside the compiler (issue 16: an IndexError escaped the analysis)."""

from __future__ import annotations

import uuid

import pytest

import recurgen
import recurgen.analysis as analysis


def _spec() -> str:
    """A fresh spec text each time (a new description), so no cached module short-cuts the compiler."""
    return (f'recurrence internal_probe "{uuid.uuid4().hex}"\ninput q: [K], k: [K], v: [V]\nstate S: [K, V]\n'
            "update S = S + outer(k, v)\noutput o: [V] = q @ S\n")


def test_a_bug_in_the_analysis_is_an_internal_error_with_the_spec_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise IndexError("tuple index out of range")  # what chunk.roles raised on a scalar state

    monkeypatch.setattr(analysis, "chunk_form", boom)
    with pytest.raises(recurgen.InternalError) as info:
        recurgen.compile(_spec(), "probe.rec")
    err = info.value
    assert err.spec == "probe.rec"
    assert "probe.rec" in str(err)
    assert "IndexError" in str(err)
    assert isinstance(err.__cause__, IndexError)


def test_an_internal_error_gets_the_spec_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def raise_internal(*args: object, **kwargs: object) -> None:
        raise recurgen.InternalError("analyze", "no chunk form for state `S`")

    monkeypatch.setattr(analysis, "chunk_form", raise_internal)
    with pytest.raises(recurgen.InternalError) as info:
        recurgen.compile(_spec(), "probe.rec")
    assert (info.value.stage, info.value.spec) == ("analyze", "probe.rec")
    assert "while compiling probe.rec" in str(info.value)


def test_spec_errors_pass_through() -> None:
    with pytest.raises(recurgen.SpecError):
        recurgen.compile(_spec().replace("outer(k, v)", "outer(k, w)"), "bad.rec")
