"""signs: structural sign rules decide the usual exponents without sympy, soundly (sympy agrees where they say
<= 0), and a bundled spec compiles without importing sympy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from recurgen import ir
from recurgen.analysis.signs import NONNEG, NONPOS, nonpositive, sign
from recurgen.analysis.symbolic import real_part_nonpositive
from recurgen.frontend import from_text
from tests.analysis.test_numerics import HEADER


def _rhs(expr: str) -> tuple[ir.Expr, ir.Spec]:
    """The IR of `expr` (elementwise over K) in HEADER's spec, read off an output that computes it."""
    spec = from_text(HEADER + f"update S = outer(k, v) + S\noutput o: [K] = ({expr}) + S @ v\n", "w.rec")
    value = spec.outputs[0].value
    assert isinstance(value, ir.Apply)
    return value.args[0], spec


@pytest.mark.parametrize(("expr", "want"), [
    ("-softplus(g)", NONPOS), ("logsigmoid(g)", NONPOS), ("n * p", NONPOS), ("A - p", NONPOS), ("-exp(g)", NONPOS),
    ("g - max(g, f)", NONPOS), ("min(g, n)", NONPOS), ("p * exp(g)", NONNEG), ("max(g, p)", NONNEG),
    ("g", None), ("g - p", None), ("n + g", None), ("n * g", None), ("log(p)", None),
])
def test_rules(expr: str, want: int | None) -> None:
    e, spec = _rhs(expr)
    assert sign(e, spec) == want


@pytest.mark.parametrize("expr", ["-softplus(g)", "logsigmoid(g) + n", "n * p", "A - p", "g - max(g, f)",
                                  "-exp(g) * p", "min(g, n) + A"])
def test_sound_where_sympy_can_tell(expr: str) -> None:
    e, spec = _rhs(expr)
    assert nonpositive(e, spec)
    assert real_part_nonpositive(e, spec)


def test_a_compile_does_not_import_sympy() -> None:
    code = ("import sys, recurgen\nfrom recurgen import pipeline\nfrom recurgen.frontend import load_source, resolve\n"
            "for name in ('gated_delta_rule', 'mlstm', 'lru'):\n"
            "    src = resolve(name)\n    spec, _ = load_source(src)\n    pipeline.generate(src, spec)\n"
            "assert 'sympy' not in sys.modules, 'sympy was imported'\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
