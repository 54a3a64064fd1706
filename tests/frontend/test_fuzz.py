"""Hypothesis fuzzing of the front end: it accepts a spec or raises SpecError, never anything else, never hangs.

Two sources of text:
  * `typed_specs()` builds random well-typed specs (dims, inputs with shapes and domains, lets, consts,
    states, affine-looking updates from a small typed grammar, readouts). These must be accepted, and
    the IR must satisfy the checker's promises.
  * `mutated_specs()` mangles valid text (bundled or generated): deletes, duplicates and swaps tokens,
    inserts quotes, backslashes, newlines, look-alike unicode, `__import__`, huge names and numbers,
    deep nesting. Anything may happen except an exception other than SpecError, or a hang.

The default run uses the `ci` profile (tests/conftest.py); the `slow` variants run thousands of examples.
Every crash found so far is pinned with `@example` and in test_pinned_crashes.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn

from recurgen import ir
from recurgen.errors import SpecError
from recurgen.frontend import from_text
from recurgen.resources import bundled_spec_names, bundled_spec_text

TIME_LIMIT_S = 10.0  # per example; a correct front end takes milliseconds
BUNDLED = [bundled_spec_text(n) for n in bundled_spec_names()]
LEAK = re.compile(r"Traceback|recurgen/\w+\.py")


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt a hang (Hypothesis' `deadline` only measures examples that finish)."""
    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"the front end took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def front_end(text: str) -> ir.Spec | None:
    """Run parse + check; None for a SpecError (whose rendering is checked), anything else propagates."""
    with time_limit(TIME_LIMIT_S):
        try:
            return from_text(text, "fuzz.rec")
        except SpecError as err:
            error = err
    rendered = error.render()
    assert error.diagnostics
    assert rendered.startswith("fuzz.rec:")
    assert not LEAK.search(rendered)
    return None


# --- well-typed specs ------------------------------------------------------------------------------------
DIMS = ("K", "V", "N", "D")
DOMAINS = ("", "logdecay", "unit", "positive", "negative", "nonnegative", "in (0, 1)", "in [-1, 2]",
           "in (-inf, 0]", "logdecay in (-5, 0]")
UNARY = ("exp", "sigmoid", "tanh", "softplus", "silu", "relu", "abs", "logsigmoid", "sin", "cos")
FIXED = "E"  # a dim of fixed size 2 (`dim E = 2`): literal indices `x[0]` need one
Shape = tuple[str, ...]


class _Env:
    """Names visible to an expression, by shape."""

    def __init__(self) -> None:
        self.names: dict[str, Shape] = {}

    def of(self, shape: Shape) -> list[str]:
        return [n for n, s in self.names.items() if s == shape]


def _expr(draw: DrawFn, shape: Shape, env: _Env, dims: tuple[str, ...], depth: int) -> str:
    """A random expression of exactly `shape` (distinct dims, so broadcasting never hits repeats)."""
    text = _form(draw, shape, env, dims, depth)
    return text if re.fullmatch(r"[\w.]+", text) else f"({text})"  # operands never rely on precedence


def _form(draw: DrawFn, shape: Shape, env: _Env, dims: tuple[str, ...], depth: int) -> str:
    leaves = env.of(shape)
    if depth <= 0 or (leaves and draw(st.integers(0, 3)) == 0):
        if leaves:
            return draw(st.sampled_from(leaves))
        if not shape:
            return draw(st.sampled_from(["0.5", "2", "1e-3", "3.25"]))
        # No name of this shape: the smallest expression that has it (every dim has a vector input).
        return f"outer({env.of(shape[:1])[0]}, {env.of(shape[1:])[0]})"
    sub = depth - 1
    others = [d for d in dims if d not in shape]

    def e(s: Shape) -> str:
        return _expr(draw, s, env, dims, sub)

    if not shape:
        form = draw(st.integers(0, 9))
        if form == 8:  # issue 16: reductions over a dim
            return f"logsumexp({e((draw(st.sampled_from(dims)),))})"
        if form == 9:
            return f"max({e((draw(st.sampled_from(dims)),))})"
        if form == 7:  # indexing a computed vector
            return f"{e((FIXED,))}[{draw(st.integers(0, 1))}]"
        if form == 0:
            return f"sum({e((draw(st.sampled_from(dims)),))})"
        if form == 1:
            d = draw(st.sampled_from(dims))
            return f"({e((d,))} @ {e((d,))})"
        if form == 2:
            return f"{draw(st.sampled_from(UNARY))}({e(())})"
        if form == 3:
            return f"max({e(())}, {e(())})"
        if form == 4:
            return f"-{e(())}"
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        return f"({e(())} {op} {e(())})"
    if len(shape) == 1:
        (d,) = shape
        form = draw(st.integers(-1, 10))
        if form in (5, 6, 8, 9, 10) and not others:
            form = 7
        if form == -1 and d == FIXED:  # a row of an [E, E] value: which E the index takes is ambiguous (rejected)
            form = 0
        if form == 10:  # issue 16: a 3-dim tensor from outer products, contracted twice (Based's (q·k)² v)
            o = draw(st.sampled_from(others))
            x = e((o,))
            return f"({x} @ ({x} @ outer(outer({e((o,))}, {e((o,))}), {e(shape)})))"
        if form == 7:  # issue 16: a stable softmax along the vector's dim, or a reduction of a matrix
            return f"softmax({e(shape)}, {d})" if draw(st.booleans()) else f"softmax({e(shape)})"
        if form in (8, 9):
            o = draw(st.sampled_from(others))
            return f"{'logsumexp' if form == 8 else 'max'}({e((d, o))}, {o})"
        if form == -1:  # a row or a column of a computed matrix (RoPE's `k.T[0]`)
            i = draw(st.integers(0, 1))
            return f"{e((FIXED, d))}[{i}]" if draw(st.booleans()) else f"{e((d, FIXED))}.T[{i}]"
        if form == 0:
            return f"{draw(st.sampled_from(UNARY))}({e(shape)})"
        if form == 1:
            op = draw(st.sampled_from(["+", "-", "*"]))
            return f"({e(shape)} {op} {e(shape)})"
        if form == 2:
            return f"{e(())} * {e(shape)}" if draw(st.booleans()) else f"{e(shape)} / (1 + {e(())})"
        if form == 3:
            return f"normalize({e(shape)})"
        if form == 4:
            return f"({e(shape)} ** 2)"
        o = draw(st.sampled_from(others))
        if form == 5:
            return f"({e((d, o))} @ {e((o,))})" if draw(st.booleans()) else f"({e((o,))} @ {e((o, d))})"
        return f"sum({e((d, o))}, {o})"
    d1, d2 = shape
    form = draw(st.integers(0, 8))
    if form == 0:
        return f"outer({e((d1,))}, {e((d2,))})"
    if form == 1:
        return f"{e((d1,))} * {e(shape)}"  # a row gate
    if form == 2:
        return f"{e((d2,))} * {e(shape)}"  # a column gate
    if form == 3:
        return f"{e(())} * {e(shape)}"
    if form == 4:
        return f"({e(shape)} {draw(st.sampled_from(['+', '-']))} {e(shape)})"
    if form == 5:
        return f"{e((d2, d1))}.T"
    if form == 6:
        return f"diag({e((d1,))}) @ {e(shape)}"
    if form == 7:
        return f"(I - {e(())} * outer({e((d1,))}, {e((d1,))})) @ {e(shape)}"
    return f"exp({e(shape)})"


@st.composite
def typed_specs(draw: DrawFn) -> str:
    """A random spec that the checker must accept."""
    dims = tuple(draw(st.lists(st.sampled_from(DIMS), min_size=2, max_size=3, unique=True)))
    lines = ['recurrence fuzz "a generated spec"', f"dim {FIXED} = 2"]
    env = _Env()
    looped = draw(st.booleans())
    if looped:
        lines.append("dim J = 2")

    def declare(kind: str, name: str, shape: Shape, allow_domain: bool = True) -> None:
        dom = draw(st.sampled_from(DOMAINS)) if allow_domain else ""
        if shape and kind == "input" and draw(st.integers(0, 5)) == 0:
            dom = (dom + " normalized").strip()
        lines.append(f"{kind} {name}: [{', '.join(shape)}] {dom}".rstrip())
        env.names[name] = shape

    for i, d in enumerate(dims):  # a vector of every dim, so every shape can be built
        declare("input", f"x{i}", (d,))
    declare("input", "xe", (FIXED,))
    for i in range(draw(st.integers(0, 3))):
        shape = draw(st.sampled_from([(), *((d,) for d in dims), (dims[0], dims[1])]))
        declare("input" if draw(st.booleans()) else "param", f"u{i}", shape)
    if looped:
        for name, shape in (("kj", ("J", dims[0])), ("vj", ("J", dims[1])), ("bj", ("J",))):
            lines.append(f"input {name}: [{', '.join(shape)}]" + (" unit" if name == "bj" else ""))
    for i in range(draw(st.integers(0, 2))):
        lines.append(f"const c{i} = 1 - 2 ** (-{draw(st.integers(1, 8))} - head)")
        env.names[f"c{i}"] = ()
    if "K" in dims and draw(st.booleans()):
        env.names["scale"] = ()  # the implicit option, K ** -0.5
    elif draw(st.booleans()):
        lines.append("option scale = 0.5")
        env.names["scale"] = ()
    for i in range(draw(st.integers(0, 2))):
        shape = draw(st.sampled_from([(), *((d,) for d in dims)]))
        lines.append(f"let l{i} = {_expr(draw, shape, env, dims, 2)}")
        env.names[f"l{i}"] = shape

    states: list[tuple[str, Shape, bool]] = []
    for i in range(draw(st.integers(1, 2))):
        shape = draw(st.sampled_from([(), (dims[0],), (dims[0], dims[1]), (dims[1], dims[0])]))
        states.append((f"S{i}", shape, draw(st.integers(0, 4)) == 0))
    for name, shape, cplx in states:
        lines.append(f"state {name}: [{', '.join(shape)}]" + (" complex" if cplx else ""))
    real = {n: s for n, s, cplx in states if not cplx}  # the grammar is real
    for n, (name, shape, cplx) in enumerate(states):
        update_env = _Env()
        # another state: bare (its previous value, with a warning), `prev(...)`, or `new(...)` of an earlier one
        # (never a later one: no cycles)
        # and the previous token's input, `prev(x0)` (a hidden state the checker adds)
        update_env.names = {**env.names, **real, **{f"prev({m})": s for m, s in real.items() if m != name},
                            **{f"new({m})": s for m, s in real.items() if m < name},
                            **{f"prev({x})": s for x, s in env.names.items() if x.startswith("x")}}
        source = _expr(draw, shape, env, dims, 2)  # inputs only
        if cplx:
            gate = f"exp(complex(-exp({_expr(draw, shape[:1], env, dims, 1)}), {_expr(draw, shape[:1], env, dims, 1)}))"
            lines.append(f"update {name} = {gate} * {name} + {source}")
        elif looped and n == 0 and shape == (dims[0], dims[1]):
            lines.append(f"update {name} = {name} - bj[j] * outer(kj[j], kj[j] @ {name}) + outer(kj[j], vj[j]) "
                         "for j in J")
        elif draw(st.integers(0, 5)) == 0:  # reads no state: A_t = 0 (accepted with a warning)
            lines.append(f"update {name} = {source}")
        elif draw(st.booleans()):
            gate = _expr(draw, draw(st.sampled_from([(), shape[:1]])), env, dims, 2)
            lines.append(f"update {name} = exp(-softplus({gate})) * {name} + {source}")
        else:
            lines.append(f"update {name} = {_expr(draw, shape, update_env, dims, 3)} + {name}")
    if draw(st.integers(0, 3)) == 0:  # a small dense block per channel (LinOSS): a dim repeated in the transition
        d = dims[0]
        lines[len(lines) - len(states):len(lines) - len(states)] = [f"input ub: [{FIXED}, {FIXED}, {d}]"]
        env.names["ub"] = (FIXED, FIXED, d)
        lines.append(f"state SB: [{FIXED}, {d}]")
        trans = draw(st.sampled_from(["ub", f"(I({FIXED}) - 0.5 * ub)", f"(ub * {_expr(draw, (d,), env, dims, 1)})"]))
        lines.append(f"update SB = sum({trans} * SB, {FIXED}) + outer(xe, {_expr(draw, (d,), env, dims, 1)})")
        read = draw(st.sampled_from(["xe @ SB", f"I({FIXED})[1] @ SB", f"sum(SB, {FIXED})",
                                     f"softmax(sum(ub * SB, {FIXED}), {FIXED})[0]", f"max(ub * SB, {FIXED})[1]"]))
        lines.append(f"output yb = {read}")
    for i, (name, shape, cplx) in enumerate(states):
        d = shape[0] if shape else dims[0]
        read = draw(st.sampled_from([name, f"prev({name})"]))
        if len(shape) == 2:
            read = f"({read} @ {_expr(draw, shape[1:], env, dims, 1)})"
        if cplx:
            read = f"Re({read})"
        extra = _expr(draw, (d,), env, dims, 2)
        decl = f": [{d}]" if draw(st.booleans()) else ""
        lines.append(f"output y{i}{decl} = {read} + {extra}")
    if draw(st.booleans()):
        args = [n for n in env.names if n.startswith(("x", "u"))] + (["kj", "vj", "bj"] if looped else [])
        lines.append(f"api fuzz_api({', '.join(draw(st.permutations(args)))})")
    return "\n".join(lines) + "\n"


# issue 16: a scalar normaliser with an affine update, and a state whose update reads no state
SCALAR_STATE = ('recurrence fuzz\ninput q: [K], k: [K], v: [V]\nstate S: [K, V]\nstate z: []\n'
                'update S = S + outer(k, v)\nupdate z = z + 1\noutput o: [V] = (q @ S) / z\n')
NO_MEMORY = ('recurrence fuzz\ninput x: [D], a: [D] logdecay\nstate h: [D]\nstate p: [D]\n'
             'update h = exp(a) * h + p\nupdate p = 2 * x\noutput o: [D] = h\n')


def _check_invariants(spec: ir.Spec, text: str) -> None:
    """What every accepted spec promises the later stages."""
    states = {s.name: s for s in spec.states}
    assert sorted(u.state for u in spec.updates) == sorted(states)
    for u in spec.updates:
        assert u.value.ty.dims == states[u.state].ty.dims
        assert not ir.uses(u.value, {ir.Kind.NEW_STATE}), u  # `new(M)` is substituted by the checker
        assert not u.value.ty.complex or states[u.state].ty.complex
    for o in spec.outputs:
        assert not o.ty.complex
        assert ir.uses(o.value, {ir.Kind.STATE, ir.Kind.PREV_STATE})
    assert sorted(spec.arg_order) == sorted(t.name for t in (*spec.inputs, *spec.params))
    known = {d.name for d in spec.dims}
    for root in (*(u.value for u in spec.updates), *(o.value for o in spec.outputs)):
        for n in ir.walk(root):
            assert {ir.base_dim(d) for d in n.ty.dims} <= known, n  # no `?` of an unsized `I` survives
    assert from_text(text, "fuzz.rec") == spec  # deterministic


@given(typed_specs())
@example('recurrence fuzz\ninput x0: [K], x1: [V]\nstate S0: [K, V]\n'
         'update S0 = (I - 0.5 * outer(x0, x0)) @ S0 + outer(x0, x1)\noutput y0 = (S0 @ x1) + x0\n')
@example(SCALAR_STATE)
@example(NO_MEMORY)
def test_typed_specs_are_accepted(text: str) -> None:
    spec = front_end(text)
    assert spec is not None, f"a well-typed spec was rejected:\n{text}\n{_rejection(text)}"
    _check_invariants(spec, text)


@pytest.mark.slow
@settings(max_examples=1500)
@given(typed_specs())
def test_typed_specs_are_accepted_many(text: str) -> None:
    test_typed_specs_are_accepted.hypothesis.inner_test(text)  # type: ignore[attr-defined]


def _rejection(text: str) -> str:
    try:
        from_text(text, "fuzz.rec")
    except SpecError as err:
        return err.render()
    return ""


# --- mutations ----------------------------------------------------------------------------------------------
TOKEN = re.compile(r"\w+|\*\*|\S")
SNIPPETS = (
    '"', "'", '"""', "\\", "\n", "\t", "#", "\r", "\x00", "\x0c", "\u2028", "\ufeff", "\u200b", "а", "β", "−", "⊙",
    "ᵀ", "“", "😀", "__import__('os').system('true')", "x" * 5000, "(" * 1000 + "x" + ")" * 1000, "(" * 1000,
    ")" * 50, "-" * 3000 + "x", " + x" * 2000, ".T" * 500, "[0]" * 500, "1e999", "9" * 5000, "1" + "0" * 400,
    "1e-999", "2j", "update", "output", "state", "input", "dim J = 0", "dim J = " + "9" * 30, "for j in J", "prev(",
    "prev(S)", "I", "I(", "head", "H", "scale", "lambda", "torch", "in (1, 0)", "in (-inf, inf)", "complex", "@",
    "**", "[", "]", ",", ":", "=", "==", "^", "$", ";", "{", "}", "<", "!", "\n" * 3, "recurrence", "api f(",
    "let a = a", "sum(", "outer(", "k[j]", "0.5.5", "..", "1.", ".", "new(", "new(S)", "sin(", "cos(x)", ".T[1]",
    "(2 * k)[0]", "softmax(", "softmax(q @ S, V)", "logsumexp(", "max(S, K)", "max(q)",
    "outer(outer(k, k), v)", "q @ S2", "S2 @ v", "sum(M * h, X)", "I(X)[0]", "[X, X, D]", "sum(M, X)",
)


def _tokens(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in TOKEN.finditer(text)]


@st.composite
def mutated_specs(draw: DrawFn) -> str:
    text = draw(st.one_of(st.sampled_from(BUNDLED), typed_specs()))
    for _ in range(draw(st.integers(1, 4))):
        toks = _tokens(text)
        if not toks:
            break
        i = draw(st.integers(0, len(toks) - 1))
        a, b = toks[i]
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "insert", "replace", "text"]))
        if kind == "delete":
            text = text[:a] + text[b:]
        elif kind == "duplicate":
            text = text[:b] + " " + text[a:b] + text[b:]
        elif kind == "swap" and i + 1 < len(toks):
            c, d = toks[i + 1]
            text = text[:a] + text[c:d] + text[b:c] + text[a:b] + text[d:]
        elif kind == "insert":
            at = draw(st.sampled_from([a, b]))
            text = text[:at] + draw(st.sampled_from(SNIPPETS)) + text[at:]
        elif kind == "replace":
            text = text[:a] + draw(st.sampled_from(SNIPPETS)) + text[b:]
        else:
            text = text[:a] + draw(st.text(max_size=20)) + text[a:]
    return text


PINNED = (  # every crash or hang found so far, as (why, text)
    ("RecursionError: 5000 unary minus", "recurrence t\nlet y = " + "-" * 5000 + "x\n"),
    ("RecursionError: a 3000-term sum", "recurrence t\nlet y = " + " + ".join(["x"] * 3000) + "\n"),
    ("RecursionError: 2000 chained `.T`", "recurrence t\nlet y = x" + ".T" * 2000 + "\n"),
    ("RecursionError: 2000 chained indices", "recurrence t\nlet y = x" + "[0]" * 2000 + "\n"),
    ("VisitError: 3000 nested `**`", "recurrence t\nlet y = " + "2 ** " * 3000 + "2\n"),
    ("ValueError: int() of a 5000-digit dim size", "recurrence t\ndim J = " + "9" * 5000 + "\n"),
    ("hang: lets doubling a tree 60 times", "recurrence t\ninput q: [K], v: [V]\nlet a0 = q\n"
     + "".join(f"let a{i + 1} = a{i} + a{i}\n" for i in range(60))
     + "state S: [K, V]\nupdate S = S + outer(a60, v)\noutput o: [V] = q @ S\n"),
    ("wrong line shown: a form feed in a comment", "recurrence t # a\x0cb\nlet y = $\n"),
    ("accepted `inf` from a 1e999 literal", BUNDLED[0].replace("outer(", "1e999 * outer(", 1)),
    ("near-hang: did-you-mean over thousands of names", "recurrence t\ninput "
     + ", ".join(f"a{i}: [K]" for i in range(2500)) + "\n" + "".join(f"let b{i} = zz{i}\n" for i in range(2500))),
)


@given(mutated_specs())
@example(PINNED[0][1])
@example(PINNED[6][1])
def test_mutated_specs_accept_or_raise_spec_error(text: str) -> None:
    front_end(text)


@pytest.mark.slow
@settings(max_examples=5000)
@given(mutated_specs())
def test_mutated_specs_many(text: str) -> None:
    front_end(text)


@pytest.mark.parametrize(("why", "text"), PINNED, ids=[w.split(":")[0] for w, _ in PINNED])
def test_pinned_crashes(why: str, text: str) -> None:
    assert front_end(text) is None, why


def test_form_feed_does_not_shift_the_shown_line() -> None:
    with pytest.raises(SpecError) as info:
        from_text(PINNED[7][1], "ff.rec")
    assert "2 | let y = $" in info.value.render()


@pytest.mark.parametrize("index", range(len(BUNDLED)))
def test_every_snippet_at_every_statement_start(index: int) -> None:
    """A deterministic sweep: snippets inserted before each statement and at the end of each spec."""
    text = BUNDLED[index]
    starts = [m.start() for m in re.finditer(r"^(?!#)\S", text, re.MULTILINE)] + [len(text)]
    for snippet in SNIPPETS[index % 4 :: 4]:  # a different quarter of the snippets for each spec
        for at in starts:
            front_end(text[:at] + snippet + text[at:])
