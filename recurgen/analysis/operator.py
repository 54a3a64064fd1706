"""operator: the associative operator of each transition class, proved with sympy (proofs.py), and runnable.

Every class composes affine maps the same way, `(A₂, b₂) ∘ (A₁, b₁) = (A₂ A₁, A₂ b₁ + b₂)` (the
later element on the left); what differs is the closed form that keeps `A₂ A₁` in its class:
  scalar / diagonal   (g, X): A = diag(exp(g))      (g₁ + g₂, exp(g₂) ⊙ X₁ + X₂)        log-decays add
  complex diagonal    (λ, X): A = diag(λ)           (λ₂ λ₁, λ₂ ⊙ X₁ + X₂)               complex product
  Householder         (g, K, W, X): A = e^g (I − K Wᵀ)  WY product, rank grows by one per step
  diag + low rank     (l, U, V, X): A = diag(e^l) + U Vᵀ  generalised WY (KDA's gate, RWKV7)
  dense               (A, X)
  running max         (a, b): m ↦ max(a + m, b)     (a₁ + a₂, max(a₂ + b₁, b₂))       max-plus semiring
`proofs.verify(form)` proves each form associative with sympy (tests run it; `VERIFIED` holds the results).

`compose(form, later, earlier, xp)` runs the operator on arrays (torch or numpy, passed as `xp`);
tests use it to check associativity numerically and that a scan equals the sequential recurrence.
Decays broadcast against X: for a [K, V] state with a row decay, `g` is [K, 1].
"""

from __future__ import annotations

from typing import Any

from .pretty import UPDATE, Style, pretty
from .result import AssocOp, Axis, GateOrder, OperatorForm, Side, Transition, TransitionKind

Element = tuple[Any, ...]


# --- closed forms on arrays -------------------------------------------------------------------------
def _cat(xp: Any, parts: list[Any]) -> Any:
    return xp.cat(parts, -1) if hasattr(xp, "cat") else xp.concatenate(parts, -1)


def compose(form: OperatorForm, later: Element, earlier: Element, xp: Any) -> Element:
    """`later ∘ earlier` in the closed form of `form` (the map `earlier` is applied first)."""
    if form is OperatorForm.ADDITIVE:
        return (earlier[0] + later[0],)
    if form is OperatorForm.LOG_DIAGONAL:
        (g2, x2), (g1, x1) = later, earlier
        return (g1 + g2, xp.exp(g2) * x1 + x2)
    if form is OperatorForm.DIAGONAL:
        (a2, x2), (a1, x1) = later, earlier
        return (a2 * a1, a2 * x1 + x2)
    if form is OperatorForm.WY:
        # e^{g2}(I − K2 W2ᵀ) e^{g1}(I − K1 W1ᵀ) = e^{g1+g2}(I − [K1 K2] [W1, W2 − W1 (K1ᵀ W2)]ᵀ)
        (g2, k2, w2, x2), (g1, k1, w1, x1) = later, earlier
        w2_new = w2 - w1 @ (_t(k1) @ w2)
        x = xp.exp(g2) * (x1 - k2 @ (_t(w2) @ x1)) + x2
        return (g1 + g2, _cat(xp, [k1, k2]), _cat(xp, [w1, w2_new]), x)
    if form is OperatorForm.DIAG_LOW_RANK:
        # (D2 + U2 V2ᵀ)(D1 + U1 V1ᵀ) = D2 D1 + [D2 U1, U2] [V1, D1 V2 + V1 (U1ᵀ V2)]ᵀ
        (l2, u2, v2, x2), (l1, u1, v1, x1) = later, earlier
        d1, d2 = xp.exp(l1)[..., None], xp.exp(l2)[..., None]
        u = _cat(xp, [d2 * u1, u2])
        v = _cat(xp, [v1, d1 * v2 + v1 @ (_t(u1) @ v2)])
        return (l1 + l2, u, v, d2 * x1 + u2 @ (_t(v2) @ x1) + x2)
    if form is OperatorForm.MAX_PLUS:
        (a2, b2), (a1, b1) = later, earlier
        return (a1 + a2, xp.maximum(a2 + b1, b2))
    (a2, x2), (a1, x1) = later, earlier
    return (a2 @ a1, a2 @ x1 + x2)


def _t(m: Any) -> Any:
    return m.mT if hasattr(m, "mT") else m.swapaxes(-1, -2)


def apply(form: OperatorForm, elem: Element, s: Any, xp: Any) -> Any:
    """The element as a map on a state: `A s + X` (for tests and references)."""
    x = elem[-1]
    if form is OperatorForm.ADDITIVE:
        return s + x
    if form is OperatorForm.LOG_DIAGONAL:
        return xp.exp(elem[0]) * s + x
    if form is OperatorForm.DIAGONAL:
        return elem[0] * s + x
    if form is OperatorForm.WY:
        g, k, w, _ = elem
        return xp.exp(g) * (s - k @ (_t(w) @ s)) + x
    if form is OperatorForm.DIAG_LOW_RANK:
        l, u, v, _ = elem
        return xp.exp(l)[..., None] * s + u @ (_t(v) @ s) + x
    if form is OperatorForm.MAX_PLUS:
        return xp.maximum(elem[0] + s, x)
    return elem[0] @ s + x


# --- symbolic verification --------------------------------------------------------------------------
# Each form's associativity (and the WY closed forms' product), proved with sympy by `proofs.verify`: the proofs
# are the same for every spec, so the tests run them (tests/analysis/test_operator.py asserts this table) and a
# compile reads the result here instead of importing sympy to prove them again.
VERIFIED: dict[OperatorForm, bool] = dict.fromkeys(OperatorForm, True)


# --- per transition --------------------------------------------------------------------------------
def form_of(t: Transition) -> OperatorForm:
    k = t.kind
    if k is TransitionKind.IDENTITY:
        return OperatorForm.ADDITIVE
    if k in (TransitionKind.SCALAR, TransitionKind.DIAGONAL):
        # Log space only when the decay is written exp(x) (or is constant): Longhorn's 1 − ε k² multiplies.
        return OperatorForm.LOG_DIAGONAL if t.decay is not None and t.decay.log is not None and t.decay.logspace \
            else OperatorForm.DIAGONAL
    if k is TransitionKind.COMPLEX_DIAGONAL:
        return OperatorForm.DIAGONAL
    if k is TransitionKind.HOUSEHOLDER:
        h = t.householder
        scalar_gate = h is not None and (h.alpha is None or h.order is GateOrder.SCALAR)
        return OperatorForm.WY if scalar_gate else OperatorForm.DIAG_LOW_RANK
    if k is TransitionKind.DPLR:
        return OperatorForm.DIAG_LOW_RANK
    if k is TransitionKind.RUNNING_MAX:
        return OperatorForm.MAX_PLUS
    return OperatorForm.DENSE


def operator(t: Transition) -> AssocOp:
    """The associative operator of a classified transition, verified symbolically."""
    form = form_of(t)
    style = Style(loop=t.loop.var) if t.loop else UPDATE
    ok = VERIFIED[form]
    matrix = form in (OperatorForm.WY, OperatorForm.DIAG_LOW_RANK, OperatorForm.DENSE)
    how = ("non-commutative symbols" if matrix else "max-plus normal form: b as the set of sums it is the max of"
           if form is OperatorForm.MAX_PLUS else "commutative decays, non-commutative X")
    extra = "; closed-form product checked" if form in (OperatorForm.WY, OperatorForm.DIAG_LOW_RANK) else ""
    verification = f"associativity: {'verified symbolically' if ok else 'NOT verified'} ({how}{extra})"
    return AssocOp(form, _element(t, form, style), _formula(t, form), ok, verification)


def _apply(t: Transition, a: str, x: str) -> str:
    """`a` applied to `x` as the class does: diag(a) X, X diag(a), a ⊙ X or a X."""
    if t.axis is Axis.ROWS:
        return f"diag({a}) {x}"
    if t.axis is Axis.COLUMNS:
        return f"{x} diag({a})"
    if t.axis is Axis.ELEMENTWISE:
        return f"{a} ⊙ {x}"
    return f"{a} {x}"


def _element(t: Transition, form: OperatorForm, style: Style) -> str:
    d = t.decay
    if form is OperatorForm.ADDITIVE:
        return "X: the accumulated b (A = I)"
    if form is OperatorForm.LOG_DIAGONAL and d is not None and d.log is not None:
        return f"(g, X) with g the log-decay ({pretty(d.log, style)} per step), X the accumulated b"
    if form is OperatorForm.DIAGONAL and d is not None:
        return f"(a, X) with a the decay ({pretty(d.coef, style)} per step), X the accumulated b"
    if form is OperatorForm.WY:
        return "(g, K, W, X) with A = exp(g) (I − K Wᵀ) in WY form (K, W: [n, r], r = steps so far)"
    if form is OperatorForm.DIAG_LOW_RANK:
        return "(l, U, V, X) with A = diag(exp(l)) + U Vᵀ (generalised WY; U, V: [n, r])"
    if form is OperatorForm.MAX_PLUS and t.running_max is not None:
        rm = t.running_max
        shift = pretty(rm.shift, style) if rm.shift is not None else "0"
        return (f"(a, b) with {t.state} ↦ max(a + {t.state}, b): a = {shift}, b = {pretty(rm.floor, style)} per "
                "step (affine maps of the max-plus semiring)")
    return "(A, X) with A a dense matrix"


def _formula(t: Transition, form: OperatorForm) -> str:
    right = t.side is Side.RIGHT
    if form is OperatorForm.ADDITIVE:
        return "X2 ∘ X1 = X1 + X2"
    if form is OperatorForm.LOG_DIAGONAL:
        return f"(g2, X2) ∘ (g1, X1) = (g1 + g2, {_apply(t, 'exp(g2)', 'X1')} + X2)"
    if form is OperatorForm.DIAGONAL:
        return f"(a2, X2) ∘ (a1, X1) = (a2 ⊙ a1, {_apply(t, 'a2', 'X1')} + X2)"
    if form is OperatorForm.WY:
        return ("(g2, K2, W2, X2) ∘ (g1, K1, W1, X1) = (g1 + g2, [K1 K2], [W1, W2 − W1 (K1ᵀ W2)], "
                + ("X1 exp(g2) (I − W2 K2ᵀ) + X2)" if right else "exp(g2) (X1 − K2 (W2ᵀ X1)) + X2)"))
    if form is OperatorForm.DIAG_LOW_RANK:
        return ("(l2, U2, V2, X2) ∘ (l1, U1, V1, X1) = (l1 + l2, [diag(exp(l2)) U1, U2], "
                "[V1, diag(exp(l1)) V2 + V1 (U1ᵀ V2)], "
                + ("X1 (diag(exp(l2)) + U2 V2ᵀ)ᵀ + X2)" if right else "diag(exp(l2)) X1 + U2 (V2ᵀ X1) + X2)"))
    if form is OperatorForm.MAX_PLUS:
        return "(a2, b2) ∘ (a1, b1) = (a1 + a2, max(a2 + b1, b2))"
    return "(A2, X2) ∘ (A1, X1) = " + ("(A1 A2, X1 A2 + X2)" if right else "(A2 A1, A2 X1 + X2)")
