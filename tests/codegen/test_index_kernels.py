"""Indexing of computed values through every kernel family that a spec gets: the generated kernels (forward,
backward, decode step) against the float64 oracle, with `recurgen verify`'s own search (few small examples).

Before issue #19 these specs passed `check` and crashed `compile` ("no derivative rule for index"); an input
read both whole and by slices (`th` and `th[0]` below) had its gradient rows overwritten by the slices'.
"""

from __future__ import annotations

import pytest

import recurgen
from recurgen import verify

SPECS = {
    # RoPE's even entries: a column of a [K, E] input (issue #19's first example), and a row of a product
    "columns": """recurrence columns "q.T[0] and (2 * q)[1]"
dim    E = 2
input  q: [K, E], k: [K], v: [V]
state  S: [K, V]
update S = S + outer(k, v)
output o: [V] = q.T[0] @ S + (2 * q.T)[1] @ S
""",
    # a state indexed in an output, a scalar row, a complex row; `th` read whole and sliced
    "mixed": """recurrence mixed "rows of states, scalars and complex values"
dim    J = 2
input  q: [K], k: [K], v: [V], a: [J], th: [J, K]
state  S: [J, V], C: [K, V] complex
update S = 0.9 * S + outer(sin(a) * 2, v)
update C = exp(complex(-exp(th[0]), th[1])) * C + (complex(th, 2 * th))[1] * outer(k, v)
output o: [V] = S[1] + (2 * a)[0] * S[0] + Re(q @ C)
""",
}


@pytest.mark.interpret
@pytest.mark.parametrize(("name", "mode"), [("columns", "recurrent"), ("mixed", "recurrent"), ("mixed", "step")])
def test_indexing_kernels_match_the_oracle(name: str, mode: str) -> None:
    rec = recurgen.compile(SPECS[name], f"{name}.rec")
    result = verify.verify_mode(rec, mode, examples=2, dtypes=("fp32",), lengths=(1, 5), seed=0)
    assert result.status == "pass", result
