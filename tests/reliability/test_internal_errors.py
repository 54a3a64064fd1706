"""`recurgen.load`/`compile` end in a compiled recurrence, a SpecError, or `recurgen.InternalError` naming the
spec: never a bare Python exception from inside the compiler (issue 16)."""

from __future__ import annotations

import pytest

import recurgen
from recurgen import api

SPEC = """recurrence internal_probe
input q: [K], k: [K], v: [V]
state S: [K, V]
update S = S + outer(k, v)
output o: [V] = q @ S
"""


def _boom(*args: object, **kwargs: object) -> None:
    raise IndexError("tuple index out of range")


@pytest.mark.parametrize("stage", ["load_source", "render_module"])
def test_a_bug_in_a_stage_is_an_internal_error_with_the_spec_path(stage: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, stage, _boom)
    monkeypatch.setattr(api, "_by_hash", {})
    with pytest.raises(recurgen.InternalError) as info:
        recurgen.compile(SPEC, "probe.rec")
    err = info.value
    assert err.spec == "probe.rec"
    assert "probe.rec" in str(err)
    assert "IndexError" in str(err)
    assert isinstance(err.__cause__, IndexError)


def test_an_internal_error_gets_the_spec_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def raise_internal(*args: object, **kwargs: object) -> None:
        raise recurgen.InternalError("codegen", "no tile for state `S`")

    monkeypatch.setattr(api, "render_module", raise_internal)
    monkeypatch.setattr(api, "_by_hash", {})
    with pytest.raises(recurgen.InternalError) as info:
        recurgen.compile(SPEC, "probe.rec")
    assert (info.value.stage, info.value.spec) == ("codegen", "probe.rec")
    assert "while compiling probe.rec" in str(info.value)


def test_spec_errors_pass_through() -> None:
    with pytest.raises(recurgen.SpecError):
        recurgen.compile(SPEC.replace("outer(k, v)", "outer(k, w)"), "bad.rec")
