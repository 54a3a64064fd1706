"""The associative operator: symbolic verification, numeric associativity per class (hypothesis), and a
Hillis-Steele scan with the operator equal to the sequential recurrence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sympy as sp
import torch
from hypothesis import given
from hypothesis import strategies as st

from recurgen.analysis import OperatorForm, TransitionKind, analyze
from recurgen.analysis.operator import VERIFIED, apply, compose
from recurgen.analysis.proofs import associative, verify
from recurgen.frontend import load_spec
from recurgen.resources import bundled_spec_names

N, M = 3, 2  # state [N, M]
Element = tuple[Any, ...]


def _rand(gen: torch.Generator, *shape: int, complex_: bool = False) -> torch.Tensor:
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    return torch.complex(x, torch.randn(shape, generator=gen, dtype=torch.float64)) if complex_ else x


def _log(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return -torch.rand(shape, generator=gen, dtype=torch.float64)


# (form, element maker): each maker draws one per-token element from a generator.
CASES: dict[str, tuple[OperatorForm, Callable[[torch.Generator], Element]]] = {
    "identity": (OperatorForm.ADDITIVE, lambda g: (_rand(g, N, M),)),
    "scalar": (OperatorForm.LOG_DIAGONAL, lambda g: (_log(g), _rand(g, N, M))),
    "diagonal rows": (OperatorForm.LOG_DIAGONAL, lambda g: (_log(g, N, 1), _rand(g, N, M))),
    "diagonal elementwise": (OperatorForm.LOG_DIAGONAL, lambda g: (_log(g, N, M), _rand(g, N, M))),
    "complex diagonal": (OperatorForm.DIAGONAL,
                         lambda g: (0.9 * torch.exp(torch.complex(_log(g, N, 1), _rand(g, N, 1))),
                                    _rand(g, N, M, complex_=True))),
    "householder": (OperatorForm.WY, lambda g: _householder(g)),
    "kda": (OperatorForm.DIAG_LOW_RANK, lambda g: _kda(g)),
    "dplr": (OperatorForm.DIAG_LOW_RANK, lambda g: (_log(g, N), _rand(g, N, 1), _rand(g, N, 1), _rand(g, N, M))),
    "dense": (OperatorForm.DENSE, lambda g: (_rand(g, N, N) / N, _rand(g, N, M))),
}


def _householder(g: torch.Generator) -> Element:
    k = _rand(g, N, 1)
    k = k / k.norm()
    beta = torch.rand((), generator=g, dtype=torch.float64) * 2
    return (_log(g), k, beta * k, _rand(g, N, M))


def _kda(g: torch.Generator) -> Element:
    # (I − β k kᵀ) diag(e^l) = diag(e^l) + (−β k)(e^l ⊙ k)ᵀ
    k = _rand(g, N, 1)
    k = k / k.norm()
    beta = torch.rand((), generator=g, dtype=torch.float64)
    l = _log(g, N)
    return (l, -beta * k, torch.exp(l)[:, None] * k, _rand(g, N, M))


def _same_map(form: OperatorForm, x: Element, y: Element, gen: torch.Generator) -> None:
    complex_ = x[-1].is_complex()
    for s in (torch.zeros(N, M, dtype=x[-1].dtype), _rand(gen, N, M, complex_=complex_)):
        torch.testing.assert_close(apply(form, x, s, torch), apply(form, y, s, torch), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("form", list(OperatorForm))
def test_operators_verify_symbolically(form: OperatorForm) -> None:
    assert verify(form)
    assert VERIFIED[form]  # what a compile reports without running the proof


def test_a_wrong_operator_is_caught() -> None:
    a = sp.symbols("A1:4", commutative=False)
    x = sp.symbols("X1:4", commutative=False)
    els = list(zip(a, x, strict=True))
    assert associative(lambda y, z: (y[0] * z[0], y[0] * z[1] + y[1]), els)
    assert not associative(lambda y, z: (y[0] * z[0], z[0] * y[1] + z[1]), els)


@given(case=st.sampled_from(sorted(CASES)), seed=st.integers(0, 2**31 - 1))
def test_associative_numerically(case: str, seed: int) -> None:
    form, make = CASES[case]
    gen = torch.Generator().manual_seed(seed)
    a, b, c = make(gen), make(gen), make(gen)
    left = compose(form, compose(form, c, b, torch), a, torch)
    right = compose(form, c, compose(form, b, a, torch), torch)
    _same_map(form, left, right, gen)


def _scan(form: OperatorForm, elems: list[Element]) -> list[Element]:
    """Inclusive Hillis-Steele scan: prefix[i] = e_i ∘ ... ∘ e_0."""
    out = list(elems)
    d = 1
    while d < len(out):
        out = [compose(form, out[i], out[i - d], torch) if i >= d else out[i] for i in range(len(out))]
        d *= 2
    return out


@given(case=st.sampled_from(sorted(CASES)), seed=st.integers(0, 2**31 - 1), steps=st.integers(1, 9))
def test_scan_equals_sequential(case: str, seed: int, steps: int) -> None:
    form, make = CASES[case]
    gen = torch.Generator().manual_seed(seed)
    elems = [make(gen) for _ in range(steps)]
    s0 = _rand(gen, N, M, complex_=elems[0][-1].is_complex())
    s = s0
    for e, prefix in zip(elems, _scan(form, elems), strict=True):
        s = apply(form, e, s, torch)
        torch.testing.assert_close(apply(form, prefix, s0, torch), s, rtol=1e-9, atol=1e-10)


FORMS = {
    TransitionKind.IDENTITY: OperatorForm.ADDITIVE, TransitionKind.SCALAR: OperatorForm.LOG_DIAGONAL,
    TransitionKind.DIAGONAL: OperatorForm.LOG_DIAGONAL, TransitionKind.COMPLEX_DIAGONAL: OperatorForm.DIAGONAL,
    TransitionKind.DPLR: OperatorForm.DIAG_LOW_RANK, TransitionKind.RUNNING_MAX: OperatorForm.MAX_PLUS,
    TransitionKind.DENSE: OperatorForm.DENSE,  # a state coupled to another (linoss's z)
}


@pytest.mark.parametrize("name", bundled_spec_names())
def test_bundled_operators(name: str) -> None:
    for sa in analyze(load_spec(name)[0]).states:
        op = sa.operator
        assert op.verified
        assert op.verification.startswith("associativity: verified symbolically")
        if sa.kind is TransitionKind.HOUSEHOLDER:
            assert op.form is (OperatorForm.DIAG_LOW_RANK if name == "kda" else OperatorForm.WY)
        elif name == "longhorn":  # 1 − ε k²: not written in log space, so the decays multiply
            assert op.form is OperatorForm.DIAGONAL
        elif sa.kind is TransitionKind.SCALAR and sa.transition.decay is not None and sa.transition.decay.log is None:
            assert op.form is OperatorForm.DIAGONAL  # A_t = 0 (mamba3's hidden `prev` state) has no log
        else:
            assert op.form is FORMS[sa.kind]
