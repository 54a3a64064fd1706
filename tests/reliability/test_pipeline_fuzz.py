"""Fuzzing the whole compiler: generated and mutated specs through parse, check, analysis and rendering.

tests/frontend/test_fuzz.py fuzzes the front end; these reuse its strategies and go on through
`recurgen.pipeline` (analyse, plan, render, tidy). Anything may happen except an
exception other than SpecError, a hang (each example runs under `TIME_LIMIT_S`), or generated code that
names a payload identifier outside strings and comments. Small budget by default, large under `-m slow`.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings

from tests.frontend.test_fuzz import BUNDLED, NO_MEMORY, PINNED, SCALAR_STATE, mutated_specs, typed_specs

from ._pipeline import code_names, compile_untrusted

MARKERS = frozenset({"__import__", "system", "eval", "exec", "subprocess", "popen", "breakpoint"})


def _through_the_pipeline(text: str) -> bool:
    """True when a module came out (its code already parsed by `tidy`), False for a diagnostic."""
    result = compile_untrusted(text, "fuzz.rec")
    if result is None:
        return False
    _, gen = result
    assert not code_names(gen.source) & MARKERS
    return True


@settings(max_examples=8)
@given(typed_specs())
@example(SCALAR_STATE)  # IndexError in normalize.collapse (issue 16)
@example(NO_MEMORY)  # IndexError in chunk.roles (issue 16)
def test_typed_specs_compile_or_get_a_diagnostic(text: str) -> None:
    _through_the_pipeline(text)


@settings(max_examples=10)
@given(mutated_specs())
@example(PINNED[6][1])  # the let-doubling hang, now through analysis too
@example(BUNDLED[0].replace('"', '"\'\'\' + __import__(\'os\').system(\'x\') + \'\'\'', 1))
def test_mutated_specs_compile_or_get_a_diagnostic(text: str) -> None:
    _through_the_pipeline(text)


@pytest.mark.slow
@settings(max_examples=400)
@given(typed_specs())
def test_typed_specs_through_the_pipeline_many(text: str) -> None:
    _through_the_pipeline(text)


@pytest.mark.slow
@settings(max_examples=1500)
@given(mutated_specs())
def test_mutated_specs_through_the_pipeline_many(text: str) -> None:
    _through_the_pipeline(text)
