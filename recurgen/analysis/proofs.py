"""proofs: the associativity of each operator form, proved with sympy (see operator.py for the forms).

`verify(form)` expands `op(op(c, b), a) − op(c, op(b, a))` with sympy (non-commutative symbols for matrix
classes) and, for the WY forms, checks the closed form against the plain matrix product. The proofs do not
depend on a spec: tests/analysis/test_operator.py runs them for every form and checks `operator.VERIFIED`,
which the compiler reports, so compiling a spec never imports sympy for them.
"""

from __future__ import annotations

import functools
from typing import Any

import sympy as sp

from .result import OperatorForm


# --- symbolic verification --------------------------------------------------------------------------
@functools.cache
def verify(form: OperatorForm) -> bool:
    """Check associativity (and, for WY forms, the closed-form product) with sympy."""
    if form is OperatorForm.MAX_PLUS:
        return _verify_max_plus()
    matrix = form in (OperatorForm.WY, OperatorForm.DIAG_LOW_RANK, OperatorForm.DENSE)

    def syms(name: str) -> tuple[sp.Symbol, ...]:
        return sp.symbols(f"{name}1:4", commutative=not matrix)

    xs = sp.symbols("X1:4", commutative=False)  # the accumulated b is a matrix in every class
    if form is OperatorForm.ADDITIVE:
        def op(y: tuple, x: tuple) -> tuple:
            return (x[0] + y[0],)
        els = [(x,) for x in xs]
    elif form is OperatorForm.LOG_DIAGONAL:
        gs = sp.symbols("g1:4", real=True)

        def op(y: tuple, x: tuple) -> tuple:
            return (x[0] + y[0], sp.exp(y[0]) * x[1] + y[1])
        els = list(zip(gs, xs, strict=True))
    elif form is OperatorForm.DIAGONAL:
        lam = sp.symbols("lam1:4", complex=True)

        def op(y: tuple, x: tuple) -> tuple:
            return (y[0] * x[0], y[0] * x[1] + y[1])
        els = list(zip(lam, xs, strict=True))
    else:
        a = syms("A")

        def op(y: tuple, x: tuple) -> tuple:
            return (y[0] * x[0], y[0] * x[1] + y[1])
        els = list(zip(a, xs, strict=True))
    ok = associative(op, els)
    if form is OperatorForm.WY:
        ok = ok and _verify_wy()
    if form is OperatorForm.DIAG_LOW_RANK:
        ok = ok and _verify_dlr()
    return ok


def associative(op: Any, els: list[tuple]) -> bool:
    """Whether `op(op(c, b), a) == op(c, op(b, a))` for the three symbolic elements `els = [a, b, c]`."""
    left = op(op(els[2], els[1]), els[0])
    right = op(els[2], op(els[1], els[0]))
    return all(sp.expand(sp.powsimp(sp.expand(p - q))) == 0 for p, q in zip(left, right, strict=True))


def _verify_max_plus() -> bool:
    """Associativity of (a2, b2) ∘ (a1, b1) = (a1 + a2, max(a2 + b1, b2)), in the max-plus normal form.

    sympy does not distribute `+` over `Max`, so `b` is kept as the set of sums it is the max of: adding a
    shift adds it to every sum, and a max of maxes is the union. Equal normal forms are equal functions.
    """
    a = sp.symbols("a1:4", real=True)
    b = sp.symbols("b1:4", real=True)

    def op(y: tuple, x: tuple) -> tuple:
        return (sp.expand(x[0] + y[0]), frozenset(sp.expand(y[0] + e) for e in x[1]) | y[1])

    els = [(ai, frozenset({bi})) for ai, bi in zip(a, b, strict=True)]
    left, right = op(op(els[2], els[1]), els[0]), op(els[2], op(els[1], els[0]))
    return sp.expand(left[0] - right[0]) == 0 and left[1] == right[1]


def _verify_wy() -> bool:
    """(I − K2 W2ᵀ)(I − K1 W1ᵀ) = I − K1 W1ᵀ − K2 (W2 − W1 K1ᵀ W2)ᵀ, with Kᵢ, Wᵢᵀ non-commutative."""
    k1, k2, w1t, w2t = sp.symbols("K1 K2 W1T W2T", commutative=False)
    direct = (1 - k2 * w2t) * (1 - k1 * w1t)
    closed = 1 - (k1 * w1t + k2 * (w2t - w2t * k1 * w1t))
    return sp.expand(direct - closed) == 0


def _verify_dlr() -> bool:
    """(D2 + U2 V2ᵀ)(D1 + U1 V1ᵀ) = D2 D1 + D2 U1 V1ᵀ + U2 (V2ᵀ D1 + V2ᵀ U1 V1ᵀ)."""
    d1, d2, u1, u2, v1t, v2t = sp.symbols("D1 D2 U1 U2 V1T V2T", commutative=False)
    direct = (d2 + u2 * v2t) * (d1 + u1 * v1t)
    closed = d2 * d1 + d2 * u1 * v1t + u2 * (v2t * d1 + v2t * u1 * v1t)
    return sp.expand(direct - closed) == 0
