"""classify: the linear map L(□) of an update -> a TransitionKind with its structured pieces.

normalize.py turns L into a sum of diag / rank-1 / dense products acting on one side of the state;
the sum decides the class: I, a I, diag(a), α (I − β k kᵀ) with the gate on either side,
diag(d) + u wᵀ, an elementwise decay, or DENSE. So `(I - beta * outer(k, k)) @ S`,
`S - beta * outer(k, k @ S)` and `(I - outer(k, k) * beta) @ S` all give HOUSEHOLDER with the same
β and k, and `(I - beta * outer(k, k)) @ (exp(g) * S)` gives KDA's gate-before-reflection form.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Protocol

from .. import ir
from ..ir import Op
from . import exprs as X
from .affine import Affine
from .normalize import (
    MINUS_ONE,
    Dense,
    Diag,
    F,
    Prod,
    Rank1,
    Scalars,
    Term,
    Vecs,
    chains,
    collapse,
    constant,
    fold,
    scalar_factors,
)
from .pretty import UPDATE, Style, pretty
from .result import (
    Axis,
    Decay,
    GateOrder,
    Householder,
    LowRank,
    OuterTerm,
    RunningMax,
    Side,
    Transition,
    TransitionKind,
)


def make_decay(factors: Scalars) -> Decay:
    """A decay from its multiplicative factors; its log in closed form when each factor has one."""
    coef = X.product(factors)
    c, rest = constant(factors)
    ok = not isinstance(c, complex) and c > 0  # a constant factor <= 0 (or complex) has no real log
    log = X.const(math.log(c)) if ok and c != 1 else None
    logspace = True
    for f in rest:
        if isinstance(f, ir.Apply) and f.op is Op.EXP:
            log = X.add(log, f.args[0])
            continue
        if X.depends_on_inputs(f):
            logspace = False
        log = X.add(log, X.log(f))
    return Decay(coef, (log or X.ZERO) if ok else None, logspace)


def _sum_decay(terms: list[Term]) -> Decay:
    if len(terms) == 1:
        t = terms[0]
        assert isinstance(t.mat, Diag)
        return make_decay(t.scalars + t.mat.d)
    total: ir.Expr | None = None
    for t in terms:
        assert isinstance(t.mat, Diag)
        total = X.add(total, X.product(t.scalars + t.mat.d))
    coef = total or X.ZERO
    return Decay(coef, X.log(coef) if not isinstance(coef, ir.Const) else None, not X.depends_on_inputs(coef))


def _merge_rank1(terms: list[Term]) -> list[Term]:
    """Add rank-1 terms with the same u and w: `- a * outer(k, k @ S) - b * outer(k, k @ S)`."""
    out: list[Term] = []
    for t in terms:
        assert isinstance(t.mat, Rank1)
        for i, o in enumerate(out):
            assert isinstance(o.mat, Rank1)
            if X.same_multiset(o.mat.u, t.mat.u) and X.same_multiset(o.mat.w, t.mat.w):
                both = X.add(X.product(o.scalars), X.product(t.scalars)) or X.ZERO
                out[i] = Term((both,), o.mat)
                break
        else:
            out.append(t)
    return out


def _householder(diag: Term, r1: Term) -> Householder | None:
    """`diag(α) − β_α k (k ⊙ ...)ᵀ` as a Householder step with its gate, or None."""
    assert isinstance(diag.mat, Diag)
    assert isinstance(r1.mat, Rank1)
    dv, uv, wv = diag.mat.d, r1.mat.u, r1.mat.w
    order: GateOrder | None = None
    key: Vecs = ()
    if not dv and X.same_multiset(uv, wv):
        order, key = GateOrder.SCALAR, uv
    else:
        rest_u, rest_w = X.remove_all(uv, dv), X.remove_all(wv, dv)
        if rest_u is not None and X.same_multiset(rest_u, wv):
            order, key = GateOrder.LEFT, tuple(wv)
        elif rest_w is not None and X.same_multiset(rest_w, uv):
            order, key = GateOrder.RIGHT, tuple(uv)
    if order is None or not key:
        return None
    # The rank-1 scalars are −β times the gate's scalars: divide those out (by identity when possible).
    ds = [s for s in diag.scalars if not isinstance(s, ir.Const)]
    c_d, _ = constant(diag.scalars)
    c_r, rest = constant(r1.scalars)
    left = X.remove_all(rest, ds)
    if left is None or c_d == 0:
        # The gate does not factor out of the rank-1 term (Comba's `α I − β k kᵀ`): as a reflection its β
        # would be β/α, which overflows as α → 0. It is diagonal plus rank-1, whose chunk form needs no division.
        return None
    beta = X.product((X.const(-c_r / c_d), *left))
    gate = diag.scalars + dv
    alpha = None if (not dv and c_d == 1 and not ds) else make_decay(gate)
    return Householder(alpha, order, beta, X.product(key))


def _outer_terms(b: ir.Expr | None) -> tuple[OuterTerm, ...] | None:
    """b_t as Σ coef · outer(left, right), or None if some term is not an outer product."""
    if b is None:
        return ()
    out: list[OuterTerm] = []

    def walk(e: ir.Expr, scal: Scalars) -> bool:
        if isinstance(e, ir.Apply):
            op, a = e.op, e.args
            if op is Op.ADD:
                return walk(a[0], scal) and walk(a[1], scal)
            if op is Op.SUB:
                return walk(a[0], scal) and walk(a[1], (*scal, MINUS_ONE))
            if op is Op.NEG:
                return walk(a[0], (*scal, MINUS_ONE))
            if op is Op.MUL and (not a[0].ty.dims or not a[1].ty.dims):
                c, inner = (a[0], a[1]) if not a[0].ty.dims else (a[1], a[0])
                return walk(inner, (*scal, *scalar_factors(c)))
            if op is Op.DIV and not a[1].ty.dims:
                return walk(a[0], (*scal, X.reciprocal(a[1])))
            if op is Op.OUTER:
                coef = X.product(scal)
                out.append(OuterTerm(None if X.is_one(coef) else coef, a[0], a[1]))
                return True
        return False

    return tuple(out) if len(b.ty.dims) == 2 and walk(b, ()) else None


def classify(spec: ir.Spec, update: ir.Update, aff: Affine) -> Transition:
    """Classify the transition of `update.state` from its affine split."""
    state = spec.tensor(update.state)
    dims = state.ty.dims
    own = aff.part(update.state)
    coupled = tuple(s for s in aff.states if s != update.state)
    style = Style(loop=update.loop.var) if update.loop else UPDATE
    name = state.name
    # A_t = 0 keeps the state's type, so every stage reads the state's dims off `linear` alike.
    linear = own if own is not None else ir.Const(0.0, state.ty)
    input_dependent = any(X.depends_on_inputs(p) for _, p in aff.parts)
    base = {"state": name, "side": Side.LEFT, "axis": None, "decay": None, "householder": None,
            "lowrank": None, "steps": update.loop.size if update.loop else 1, "loop": update.loop,
            "linear": linear, "offset": aff.offset, "offset_terms": _outer_terms(aff.offset),
            "coupled": coupled, "cross": tuple((k[0], p) for k, p in aff.parts if k[0] != name),
            "input_dependent": input_dependent, "span": update.span}

    def result(kind: TransitionKind, evidence: str, **kw: object) -> Transition:
        if coupled:
            evidence = (f"{name}'s update reads {', '.join(f'`{c}`' for c in coupled)}: coupled states have a joint "
                        f"block transition, recurrent mode only ({evidence})")
            kind = TransitionKind.DENSE
        return Transition(kind=kind, evidence=evidence, **{**base, **kw})  # type: ignore[arg-type]

    if own is None:
        return result(TransitionKind.SCALAR, f"{name} does not read its previous value (A_t = 0)",
                      decay=Decay(X.ZERO, None, True))
    cs = chains(own)
    for side in (Side.LEFT, Side.RIGHT):
        prods: list[Prod] = []
        for c in cs:
            got = collapse(c, side, dims)
            if got is None:
                break
            prods += got
        else:
            return _from_terms(name, dims, side, [fold(p) for p in prods], style, result)
    # Elementwise: every chain only multiplies □ elementwise.
    if all(all(f.kind is F.MUL for f in c.factors) for c in cs):
        terms = [Term(c.scalars + tuple(f.expr for f in c.factors), Diag(())) for c in cs]
        decay = _sum_decay(terms)
        if decay.coef.ty.dims != dims and sorted(decay.coef.ty.dims) == sorted(dims):
            # `k * S * v` multiplies by a [V, K]-ordered product; by name it is the state's [K, V] layout.
            decay = Decay(_retype(decay.coef, dims), decay.log and _retype(decay.log, dims), decay.logspace)
        kind = TransitionKind.COMPLEX_DIAGONAL if decay.coef.ty.complex else TransitionKind.DIAGONAL
        return result(kind, f"{name} is multiplied elementwise by {pretty(decay.coef, style)}"
                      f"{_over(decay.coef)}", axis=Axis.ELEMENTWISE, decay=decay)
    return result(TransitionKind.DENSE, f"{name} is transformed by {pretty(own, style)} (with □ = {name}): "
                  "no diagonal, Householder or diagonal-plus-rank-1 structure")


def _retype(e: ir.Expr, dims: tuple[str, ...]) -> ir.Expr:
    return replace(e, ty=ir.Type(dims, e.ty.complex)) if isinstance(e, ir.Apply) else e


def _over(coef: ir.Expr) -> str:
    """`, g_t: [K]` when every input/param the decay reads has its shape, else `, over [E, N]`."""
    if not coef.ty.dims:
        return ""
    vs = {n.name: n for n in ir.walk(coef) if isinstance(n, ir.Var) and n.kind in (ir.Kind.INPUT, ir.Kind.PARAM)}
    if vs and all(v.ty.dims == coef.ty.dims for v in vs.values()):
        return f", {', '.join(pretty(v) for v in vs.values())}: [{', '.join(coef.ty.dims)}]"
    return f", over [{', '.join(coef.ty.dims)}]"


class _Make(Protocol):
    """`classify`'s constructor of the result: fills in what every class shares."""

    def __call__(self, kind: TransitionKind, evidence: str, **kw: object) -> Transition: ...


def _from_terms(name: str, dims: tuple[str, ...], side: Side, terms: list[Term], style: Style,
                make: _Make) -> Transition:
    diag = [t for t in terms if isinstance(t.mat, Diag)]
    rank1 = _merge_rank1([t for t in terms if isinstance(t.mat, Rank1)])
    dense = [t for t in terms if isinstance(t.mat, Dense)]
    p = (dims[0] if side is Side.LEFT else dims[-1]) if dims else ""  # a scalar state has no side
    where = "" if side is Side.LEFT else " from the right"
    if dense:
        m = dense[0].mat
        assert isinstance(m, Dense)
        return make(TransitionKind.DENSE, f"{name} is multiplied{where} by a dense matrix {pretty(m.m, style)}",
                    side=side)
    if not rank1:
        decay = _sum_decay(diag) if diag else Decay(X.ZERO, None, True)
        c = decay.coef
        if X.is_one(c):
            return make(TransitionKind.IDENTITY, f"{name} is carried unchanged (A_t = I)", side=side)
        if not c.ty.dims:
            kind = TransitionKind.COMPLEX_DIAGONAL if c.ty.complex else TransitionKind.SCALAR
            return make(kind, f"{name} is multiplied by the scalar {pretty(c, style)}", side=side, decay=decay)
        axis = Axis.ELEMENTWISE if len(dims) == 1 else Axis.ROWS if side is Side.LEFT else Axis.COLUMNS
        kind = TransitionKind.COMPLEX_DIAGONAL if c.ty.complex else TransitionKind.DIAGONAL
        how = "elementwise" if axis is Axis.ELEMENTWISE else axis.value
        return make(kind, f"{name} is multiplied {how} by {pretty(c, style)}{_over(c)}", side=side, axis=axis,
                    decay=decay)
    if len(rank1) == 1 and len(diag) == 1:
        h = _householder(diag[0], rank1[0])
        if h is not None:
            return make(TransitionKind.HOUSEHOLDER, _householder_evidence(name, h, p, style, where), side=side,
                        decay=h.alpha, householder=h)
        d = _sum_decay(diag)
        r = rank1[0]
        assert isinstance(r.mat, Rank1)
        lr = LowRank(d, X.product(r.scalars + r.mat.u), X.product(r.mat.w))
        a = X.add(X.diag(d.coef) if d.coef.ty.dims else d.coef, X.outer(lr.u, lr.w))
        return make(TransitionKind.DPLR, f"{name} is multiplied{where} by {pretty(a, style)} "
                    "(diagonal plus rank-1)", side=side, decay=d, lowrank=lr)
    return make(TransitionKind.DENSE, f"{name} is multiplied{where} by a diagonal plus rank-{len(rank1)} matrix "
                "(only rank 1 has a chunked form)" if diag else
                f"{name} is multiplied{where} by a sum of rank-1 matrices without a diagonal", side=side)


def transition_matrix(t: Transition, transpose: bool = False) -> tuple[ir.Expr, bool] | None:
    """A_t (or A_tᵀ) for printing: (a matrix, True) or (an elementwise coefficient, False); None for DENSE."""
    right = t.side is Side.RIGHT
    dims = t.linear.ty.dims
    p = (dims[-1] if right else dims[0]) if dims else ""
    k, d = t.kind, t.decay
    if k is TransitionKind.IDENTITY:
        return X.ONE, False
    if k in (TransitionKind.SCALAR, TransitionKind.DIAGONAL, TransitionKind.COMPLEX_DIAGONAL) and d is not None:
        c = X.conj(d.coef) if transpose else d.coef
        return (X.diag(c), True) if t.axis in (Axis.ROWS, Axis.COLUMNS) else (c, False)
    if k is TransitionKind.HOUSEHOLDER and t.householder is not None:
        h = t.householder
        if transpose:  # H is symmetric: (diag(α) H)ᵀ = H diag(α)
            flip = {GateOrder.LEFT: GateOrder.RIGHT, GateOrder.RIGHT: GateOrder.LEFT}.get(h.order, h.order)
            h = Householder(h.alpha, flip, h.beta, h.key)
        return householder_matrix(h, p), True
    if k is TransitionKind.DPLR and t.lowrank is not None and d is not None:
        lr = t.lowrank
        u, w = (lr.w, lr.u) if transpose else (lr.u, lr.w)
        return X.add(X.diag(d.coef) if d.coef.ty.dims else X.mul(d.coef, X.eye(p)), X.outer(u, w)), True
    return None


def applied(t: Transition, m: tuple[ir.Expr, bool], x: ir.Expr) -> ir.Expr:
    """A matrix or coefficient from `transition_matrix` applied to `x` on the transition's side."""
    expr, matrix = m
    if not matrix:
        return X.mul(expr, x)
    if isinstance(expr, ir.Apply) and expr.op is Op.MUL and not expr.args[0].ty.dims:
        # α (I − β k kᵀ) S reads better than (α (I − β k kᵀ)) S
        return X.mul(expr.args[0], applied(t, (expr.args[1], True), x))
    return X.matmul(x, expr) if t.side is Side.RIGHT else X.matmul(expr, x)


def householder_matrix(h: Householder, p: str) -> ir.Expr:
    """A_t of one Householder step as an IR expression (for printing)."""
    refl = X.sub(X.eye(p), X.mul(h.beta, X.outer(h.key, h.key)))
    assert refl is not None
    if h.alpha is None:
        return refl
    a = h.alpha.coef
    if h.order is GateOrder.SCALAR:
        return X.mul(a, refl)
    if h.order is GateOrder.LEFT:
        return X.matmul(X.diag(a), refl)
    return X.matmul(refl, X.diag(a))


def _householder_evidence(name: str, h: Householder, p: str, style: Style, where: str) -> str:
    text = f"{name} is multiplied{where} by {pretty(householder_matrix(h, p), style)}"
    if h.order is GateOrder.RIGHT and h.alpha is not None:
        r1 = X.mul(h.beta, X.outer(h.key, X.mul(h.key, h.alpha.coef)))
        text += f"; the rank-1 term is {pretty(r1, style)}"
    return text


def running_max_transition(spec: ir.Spec, update: ir.Update, rm: RunningMax) -> Transition:
    """The transition of a running max `m_t = max(a_t + m_{t-1}, b_t)` (see running_max.py)."""
    name = update.state
    ty = spec.tensor(name).ty
    shift = pretty(rm.shift, UPDATE) + " + " if rm.shift is not None else ""
    floor = pretty(rm.floor, UPDATE)
    evidence = (f"{name} is a running max, {name}_t = max({shift}{name}_{{t-1}}, {floor}): affine in the max-plus "
                "semiring; the states that read it see its whole sequence first")
    reads_inputs = X.depends_on_inputs(rm.floor) or (rm.shift is not None and X.depends_on_inputs(rm.shift))
    return Transition(state=name, kind=TransitionKind.RUNNING_MAX, side=Side.LEFT, axis=None, decay=None,
                      householder=None, lowrank=None, steps=1, loop=None, linear=X.hole(ty), offset=rm.floor,
                      offset_terms=None, coupled=(), cross=(), input_dependent=reads_inputs, evidence=evidence,
                      span=update.span, running_max=rm)
