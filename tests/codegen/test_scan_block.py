"""The lift of per-token formulas over a block of tokens (recurgen/codegen/scan_block.py)."""

from __future__ import annotations

import pytest

from recurgen.codegen import build as b
from recurgen.codegen.scan_block import TOK, NoLift, lift
from recurgen.ir import Apply, Kind, Op, Type, Var

K, V = Var("k", Kind.INPUT, Type(("K",))), Var("v", Kind.INPUT, Type(("V",)))
A = Var("A", Kind.PARAM, Type(("K", "V")))
VARYING = frozenset({K, V})


def test_outer_and_contraction_become_products_and_sums() -> None:
    o = lift(b.outer(K, V), VARYING)
    assert (o.op, o.ty.dims) == (Op.MUL, (TOK, "K", "V"))
    m = lift(b.matmul(A, V), VARYING)  # [K, V] @ [V]: the param stays per head, the result per token
    assert (m.op, m.attr, m.ty.dims) == (Op.SUM, "V", (TOK, "K"))
    assert lift(b.mul(A, A), VARYING) == b.mul(A, A)  # nothing per token: unchanged (the kernel's prologue)
    s = lift(b.sum_all(b.outer(K, V)), VARYING)
    assert s.ty.dims == (TOK,)


def test_what_has_no_blocked_form_is_refused() -> None:
    with pytest.raises(NoLift):
        lift(b.transpose(b.outer(K, V)), VARYING)
    with pytest.raises(NoLift):
        lift(Apply(Op.OUTER, (K, K), Type(("K", "K"))), VARYING)
