"""check: name resolution, named-dimension types, `I`, reductions, loops, options, api lines and domains."""

from __future__ import annotations

import math

import pytest

from recurgen import ir
from recurgen.check import RESERVED, broadcast, check, reserved_reason
from recurgen.frontend import from_text
from recurgen.parse import parse_spec

from .util import errors_of, node, spec_of

QKV = "input q: [K], k: [K], v: [V]\nstate S: [K, V]\n"
UPDATE = "update S = S + outer(k, v)\n"
READ = "output o: [V] = q @ S\n"


def _ty(body: str, text: str) -> str:
    return str(node(spec_of(body), text).ty)


# --- named broadcasting ------------------------------------------------------------------------------
@pytest.mark.parametrize(("a", "b", "out"), [
    ((), ("K",), ("K",)),
    (("K",), (), ("K",)),
    (("K",), ("K", "V"), ("K", "V")),  # a vector matches its dim by name, not by position:
    (("V",), ("K", "V"), ("K", "V")),  # [V] scales the columns, [K] the rows
    (("K", "V"), ("V",), ("K", "V")),
    (("K", "V"), ("K", "V"), ("K", "V")),
    (("K", "V"), ("V", "K"), ("V", "K")),  # same dims, other order: the right operand's order
    (("K",), ("V",), None),  # two different vectors: an outer product, not broadcasting
    (("K", "N"), ("K", "V"), None),
    (("K", "K"), ("K",), None),  # repeated dims are ambiguous
])
def test_broadcast(a: tuple[str, ...], b: tuple[str, ...], out: tuple[str, ...] | None) -> None:
    assert broadcast(a, b) == out


def test_broadcast_in_expressions() -> None:
    body = "input q: [K], k: [K], v: [V], w: [K], u: [V], c: []\nstate S: [K, V]\n" \
           "update S = w * S + u * S + c * S + outer(k, v)\noutput o: [V] = q @ S\n"
    assert _ty(body, "w * S") == "[K, V]"
    assert _ty(body, "u * S") == "[K, V]"
    assert _ty(body, "c * S") == "[K, V]"


def test_mismatched_vectors_are_rejected_with_both_shapes() -> None:
    (msg,) = errors_of(QKV + "update S = S + k * v\n" + READ)
    assert msg == "shape mismatch in `*`: `k` has shape [K] but `v` has shape [V]"


# --- `@`, `.T`, `outer`, `diag` -------------------------------------------------------------------------
@pytest.mark.parametrize(("expr", "ty"), [
    ("q @ S", "[V]"),  # vector @ matrix contracts the vector's dim with the first
    ("S @ v", "[K]"),
    ("S.T", "[V, K]"),
    ("S.T @ q", "[V]"),
    ("q @ k", "[]"),  # a dot product
    ("S @ S.T", "[K, K]"),
    ("diag(q)", "[K, K]"),
    ("diag(q) @ S", "[K, V]"),
    ("outer(q, v)", "[K, V]"),
])
def test_contractions(expr: str, ty: str) -> None:
    body = QKV + UPDATE + f"output o: [V] = q @ S + 0 * sum({expr})\n"
    assert _ty(body, expr) == ty


def test_matmul_contracts_last_with_first() -> None:
    (msg,) = errors_of(QKV + UPDATE + "output o: [V] = v @ S\n")
    assert "would contract `V` with `K`" in msg


# --- `I` ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("update", "text"), [
    ("update S = (I - outer(k, k)) @ S + outer(k, v)", "I - outer(k, k)"),  # from its elementwise partner
    ("update S = I @ S + outer(k, v)", "I"),  # from the other side of `@`
    ("update S = (I(K) - outer(k, k)) @ S + outer(k, v)", "I(K) - outer(k, k)"),  # given explicitly
])
def test_identity_size_is_inferred(update: str, text: str) -> None:
    spec = spec_of(QKV + update + "\n" + READ)
    assert str(node(spec, text).ty) == "[K, K]"
    eye = next(n for n in ir.walk(spec.updates[0].value) if isinstance(n, ir.Apply) and n.op is ir.Op.EYE)
    assert eye.attr == "K"
    assert eye.ty.dims == ("K", "K")


def test_identity_of_a_square_state() -> None:
    spec = spec_of("input k: [K]\nstate S: [K, K]\nupdate S = 0.5 * S + I\noutput o: [K] = k @ S\n")
    assert spec.updates[0].value.ty.dims == ("K", "K")


@pytest.mark.parametrize("body", [
    QKV + "let e = I\n" + UPDATE + READ,
    QKV + "update S = (I + I) @ S + outer(k, v)\n" + READ.replace("q @ S", "q @ S + sum(I)"),
])
def test_identity_without_a_size_is_rejected(body: str) -> None:
    assert any("`I`" in m for m in errors_of(body))


# --- reductions ----------------------------------------------------------------------------------------
def test_sum_over_one_dim_and_over_all() -> None:
    body = "input x: [D], C: [N]\nstate h: [D, N]\nupdate h = 0.9 * h + outer(x, C)\n" \
           "output y: [D] = sum(C * h, N) + sum(C) * x + 0 * norm(x)\n"
    spec = spec_of(body)
    s = node(spec, "sum(C * h, N)")
    assert str(s.ty) == "[D]"
    assert isinstance(s, ir.Apply)
    assert s.attr == "N"
    assert str(node(spec, "sum(C)").ty) == "[]"
    assert str(node(spec, "norm(x)").ty) == "[]"


def test_sum_needs_a_dim_of_its_argument() -> None:
    (msg,) = errors_of("input x: [D], C: [N]\nstate h: [D, N]\nupdate h = h + outer(x, C)\n"
                       "output y: [D] = sum(C * h, M)\n")
    assert msg.startswith("the second argument of `sum` must be one dim of `C * h`")


# --- loops and indices ------------------------------------------------------------------------------------
LOOP = "dim J = 3\ninput q: [K], k: [J, K], v: [J, V], b: [J]\nstate S: [K, V]\n"


def test_loop_update_indexes_the_loop_dim() -> None:
    spec = spec_of(LOOP + "update S = S - b[j] * outer(k[j], k[j] @ S) + outer(k[j], v[j]) for j in J\n" + READ)
    assert spec.updates[0].loop == ir.Loop("j", "J", 3)
    idx = node(spec, "k[j]")
    assert isinstance(idx, ir.Apply)
    assert idx.op is ir.Op.INDEX
    assert str(idx.ty) == "[K]"
    assert isinstance(idx.args[1], ir.Var)
    assert idx.args[1].kind is ir.Kind.LOOP


def test_literal_index() -> None:
    spec = spec_of(LOOP + "update S = S + outer(k[0], v[2])\n" + READ)
    idx = node(spec, "v[2]")
    assert isinstance(idx, ir.Apply)
    assert idx.attr == "2"
    assert str(idx.ty) == "[V]"


@pytest.mark.parametrize(("update", "words"), [
    ("update S = S + outer(k[3], v[0])", "out of range for dimension `J` of size 3"),
    ("update S = S + outer(k[j], v[j])", "`j` is not a loop variable here"),
    ("update S = S + outer(k[i], v[j]) for j in J", "`i` is not the loop variable of this update"),
    ("update S = S + outer(k[j], v[j]) for j in K", "loop dimension `K` has no fixed size"),
    ("update S = S + outer(k[j], v[j]) for q in J", "loop variable `q` clashes"),
    ("update S = S[j] + outer(k[j], v[j]) for j in J", "`j` runs over `J` but the first dim of `S` is `K`"),
    ("update S = S + outer(k[0.5], v[0])", "not a whole number"),
])
def test_loop_and_index_errors(update: str, words: str) -> None:
    assert any(words in m for m in errors_of(LOOP + update + "\n" + READ))


# --- options and the implicit `scale` --------------------------------------------------------------------
def test_implicit_scale_defaults_to_inverse_sqrt_K() -> None:
    spec = spec_of(QKV + UPDATE + "output o: [V] = scale * (q @ S)\n")
    (opt,) = spec.options
    assert opt.name == "scale"
    assert opt.value == ir.Apply(ir.Op.POW, (ir.Var("K", ir.Kind.DIM, ir.SCALAR), ir.Const(-0.5)), ir.SCALAR)


def test_scale_used_twice_is_one_option() -> None:
    spec = spec_of(QKV + "update S = S + outer(scale * k, v)\noutput o: [V] = scale * (q @ S)\n")
    assert [o.name for o in spec.options] == ["scale"]


def test_explicit_options_replace_the_default() -> None:
    spec = spec_of(QKV + "option scale = 1\noption eps = 1e-6 * K\n" + UPDATE + "output o: [V] = scale * (q @ S)\n")
    assert [o.name for o in spec.options] == ["scale", "eps"]
    assert spec.options[0].value == ir.Const(1.0)


@pytest.mark.parametrize(("body", "words"), [
    (QKV.replace("K", "D") + UPDATE + "output o: [V] = scale * (q @ S)\n", "`scale` has no default here"),
    (QKV + UPDATE + "output o: [V] = scale * (q @ S)\noption scale = 1\n", "comes after `scale` is first used"),
    (QKV + "option a = sum(q)\n" + UPDATE + READ, "an option cannot depend on input `q`"),
    (QKV + "option a = [K]\n", "expected an expression"),
])
def test_option_errors(body: str, words: str) -> None:
    msgs = errors_of(body)
    assert any(words in m for m in msgs), msgs


# --- consts ------------------------------------------------------------------------------------------------
def test_consts_may_use_head_H_pi_and_dims() -> None:
    spec = spec_of(QKV + "const gamma = 1 - 2 ** (-5 - head) + 0 * H * pi * K\n"
                   "update S = gamma * S + outer(k, v)\n" + READ)
    assert ir.uses(spec.consts[0].value, {ir.Kind.HEAD, ir.Kind.HEADS, ir.Kind.DIM}) == {"head", "H", "K"}


@pytest.mark.parametrize(("body", "words"), [
    (QKV + "const c = sum(q)\n", "a const cannot depend on input `q`"),
    (QKV + "let a = sum(q)\nconst c = a\n", "a const cannot depend on let `a`, which reads `q`"),
    (QKV + "const c = I(K)\n", "must be a scalar"),
    (QKV + "update S = head * S + outer(k, v)\n" + READ, "`head` (the head index) can only be used in a `const`"),
])
def test_const_errors(body: str, words: str) -> None:
    assert any(words in m for m in errors_of(body))


# --- api ---------------------------------------------------------------------------------------------------
def test_api_sets_the_argument_order() -> None:
    spec = spec_of(QKV + "param u: [K]\n" + UPDATE + READ + "api chunk_t(v, u, q, k)\n")
    assert spec.arg_order == ("v", "u", "q", "k")


def test_default_argument_order_is_declaration_order() -> None:
    spec = spec_of("param u: [K]\n" + QKV + UPDATE + READ)
    assert spec.arg_order == ("q", "k", "v", "u")


@pytest.mark.parametrize(("api", "words"), [
    ("api f(q, k)", "missing: v"),
    ("api f(q, k, v, v)", "repeated: v"),
    ("api f(q, k, v, S)", "`S` in the api line is not an input, param, option or call argument"),
    ("api f(q, k, v)\napi g(q, k, v)", "a second `api` line"),
    ("api class(q, k, v)", "`class` cannot name the public function"),
    ("api f(q, k, v, h0 = initial_stat)", "`initial_stat` in the api line is not"),
    ("api f(q, key = k, v, key = v)", "two arguments named `key`"),
    ("api f(q, k, value = k, v)", "repeated: k"),
    ("api f(q, k, lambda = v)", "`lambda` is reserved (a Python keyword) and cannot rename `v`"),
    ("api f(q, k, v, initial_state = output_final_state)", "`initial_state` is reserved"),
    ("api f(q, k, q = v)", "two arguments named `q`"),
    ("api f(q, k, initial_state, v)", "the tensor `v` comes after `initial_state`"),
])
def test_api_errors(api: str, words: str) -> None:
    assert any(words in m for m in errors_of(QKV + UPDATE + READ + api + "\n"))


def test_api_renames_arguments_and_call_arguments() -> None:
    spec = spec_of(QKV + UPDATE + READ + "api f(query = q, k, v, initial_states = initial_state)\n")
    assert spec.arg_order == ("q", "k", "v")  # the spec's names: the tensors in public order
    assert spec.api.name == "f"
    assert [(a.public, a.target) for a in spec.api.args] == [("query", "q"), ("k", "k"), ("v", "v"),
                                                              ("initial_states", "initial_state")]
    assert spec.api.public("q") == "query"
    assert spec.api.public("v") == "v"


def test_option_renamed_clashing_with_a_kept_name() -> None:
    assert any("`scale` cannot rename `v`" in m for m in errors_of(
        QKV + UPDATE + "output o: [V] = scale * (q @ S)\n" + "api f(q, k, scale = v)\n"))


# --- optional tensors, given(), layout ------------------------------------------------------------------------
def test_optional_tensors_have_defaults() -> None:
    spec = spec_of("input q: [K], k: [K], v: [V], g: [] logdecay = 0\nparam D: [V] = 1.5\nstate S: [K, V]\n"
                   "update S = exp(g) * S + outer(k, v)\noutput o: [V] = q @ S + D * v\n")
    assert spec.tensor("g").default == 0.0
    assert spec.tensor("D").default == 1.5
    assert spec.tensor("q").default is None


def test_given_is_a_hidden_per_call_option() -> None:
    spec = spec_of("input q: [K], k: [K], v: [V], z: [V] = 0\nstate S: [K, V]\n" + UPDATE
                   + "output o: [V] = (q @ S) * (given(z) * silu(z) + 1 - given(z))\n")
    hidden = [o for o in spec.options if ir.is_hidden(o.name)]
    assert [o.name for o in hidden] == [ir.presence_option("z")]  # one option however often `given` appears
    assert hidden[0].value == ir.Const(1.0)  # the tools pass every tensor: present unless the call omits it


@pytest.mark.parametrize(("body", "words"), [
    ("input q: [K], k: [K], v: [V], g: [] logdecay = 1\n", "the default 1 of `g` is outside its domain"),
    ("input q: [K], k: [K], v: [V], g: [] = g\n", "a default value must be a real number"),
    ("input q: [K], k: [K] normalized = 0, v: [V]\n", "a normalized input cannot have a default value"),
    ("input q: [K], k: [K], v: [V]\nstate S2: [K] = 0\n", "state `S2` cannot have a default value"),
    ("input q: [K], k: [K], v: [V], g: [N] = 0\n", "the dimension `N` of optional `g`"),
    ("input q: [K], k: [K], v: [V], g: [] = 0, u: [K]\n", "the required argument `u` comes after the optional `g`"),
    ("input q: [K], k: [K], v: [V]\nlayout [B, H, T]\n", "unknown layout `[B, H, T]`"),
    ("input q: [K], k: [K], v: [V]\nlayout [B, T]\nlayout [B, T]\n", "a second `layout` line"),
])
def test_optional_and_layout_errors(body: str, words: str) -> None:
    extra = "update S2 = S2 + k\n" if "S2" in body else ""
    assert any(words in m for m in errors_of(body + "state S: [K, V]\n" + UPDATE + extra + READ))


def test_given_needs_an_optional_tensor() -> None:
    assert any("`k` is not an optional input or param" in m for m in errors_of(
        QKV + UPDATE + "output o: [V] = given(k) * (q @ S)\n"))


@pytest.mark.parametrize(("layout", "heads"), [("", True), ("layout [B, T, H]\n", True), ("layout [B, T]\n", False)])
def test_layout(layout: str, heads: bool) -> None:
    assert spec_of(QKV + UPDATE + READ + layout).heads is heads


# --- domains -----------------------------------------------------------------------------------------------
def _domain(annotations: str) -> ir.Domain:
    spec = spec_of(f"input q: [K], k: [K], v: [V], x: [K] {annotations}\nstate S: [K, V]\n{UPDATE}{READ}")
    return spec.tensor("x").domain


@pytest.mark.parametrize(("annotations", "domain"), [
    ("", ir.Domain()),
    ("logdecay", ir.Domain(hi=0.0, hi_open=False, logspace=True)),
    ("unit", ir.Domain(lo=0.0, hi=1.0)),
    ("positive", ir.Domain(lo=0.0)),
    ("nonnegative", ir.Domain(lo=0.0, lo_open=False)),
    ("negative", ir.Domain(hi=0.0)),
    ("nonpositive", ir.Domain(hi=0.0, hi_open=False)),
    ("normalized", ir.Domain(normalized=True)),
    ("in (0, 2)", ir.Domain(lo=0.0, hi=2.0)),
    ("in [0, 2]", ir.Domain(lo=0.0, hi=2.0, lo_open=False, hi_open=False)),
    ("in (-inf, 0]", ir.Domain(hi=0.0, hi_open=False)),
    ("in [-inf, 1)", ir.Domain(hi=1.0)),  # an infinite bound is always open
    ("in (-0.5, 1.5]", ir.Domain(lo=-0.5, hi=1.5, hi_open=False)),
    # annotations intersect: a log-decay bounded below, a unit value away from zero
    ("logdecay in (-5, 3)", ir.Domain(lo=-5.0, hi=0.0, hi_open=False, logspace=True)),
    ("unit in [0.5, 2]", ir.Domain(lo=0.5, hi=1.0, lo_open=False)),
    ("normalized positive", ir.Domain(lo=0.0, normalized=True)),
])
def test_domains(annotations: str, domain: ir.Domain) -> None:
    assert _domain(annotations) == domain


def test_domain_contains() -> None:
    d = _domain("in (0, 1]")
    assert not d.contains(0.0)
    assert d.contains(1.0)
    assert d.contains(0.5)
    assert not d.contains(math.inf)


@pytest.mark.parametrize(("annotations", "words"), [
    ("in (1, 0)", "empty interval"),
    ("in (1, 1]", "empty interval"),
    ("positive negative", "leave no possible value"),
    ("logdecay in (0.5, 1)", "leave no possible value"),
    ("logdecy", "unknown annotation `logdecy`"),
    ("in (0, x)", "an interval bound must be a number or `inf`"),
    ("in (0, 1e999)", "too large for a float"),
])
def test_domain_errors(annotations: str, words: str) -> None:
    assert any(words in m for m in errors_of(f"input q: [K], k: [K], v: [V], x: [K] {annotations}\n"
                                             f"state S: [K, V]\n{UPDATE}{READ}"))


def test_states_and_complex() -> None:
    assert "a state takes no value domain" in errors_of(QKV.replace("[K, V]", "[K, V] unit") + UPDATE + READ)
    assert "input `x` cannot be complex" in errors_of(QKV + "input x: [K] complex\n" + UPDATE + READ)
    assert "`normalized` needs a vector" in errors_of(QKV + "input x: [] normalized\n" + UPDATE + READ)


# --- complex numbers ----------------------------------------------------------------------------------------
def test_complex_types() -> None:
    body = "input x: [N], a: [N], th: [N]\nstate h: [N] complex\n" \
           "update h = exp(complex(-exp(a), th)) * h + x * 1j + conj(h) * 0\n" \
           "output y: [N] = Re(h) + Im(h) + abs(h)\n"
    spec = spec_of(body)
    assert str(node(spec, "complex(-exp(a), th)").ty) == "[N] complex"
    assert str(node(spec, "x * 1j").ty) == "[N] complex"
    assert str(node(spec, "Re(h)").ty) == "[N]"
    assert str(node(spec, "abs(h)").ty) == "[N]"


# --- names ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lambda", "print", "torch", "tl", "head", "H", "I", "exp", "output", "self",
                                  "initial_state", "input", "sum"])
def test_reserved_names(name: str) -> None:
    assert name in RESERVED
    assert reserved_reason(name)


def test_ordinary_names_are_free() -> None:
    for name in ("q", "k", "beta", "gamma", "A", "B", "C", "D", "dt", "scale", "eps", "w_log", "x2"):
        assert reserved_reason(name) is None


def test_dims_are_numbers_in_expressions() -> None:
    spec = spec_of(QKV + "update S = S + outer(k, v) / K\n" + READ)
    k = node(spec, "K")
    assert isinstance(k, ir.Var)
    assert k.kind is ir.Kind.DIM
    assert k.ty == ir.SCALAR


def test_lets_are_inlined() -> None:
    spec = spec_of(QKV + "let kn = normalize(k)\nupdate S = S + outer(kn, v)\n" + READ)
    assert not ir.uses(spec.updates[0].value, {ir.Kind.INPUT}) - {"k", "v"}
    assert str(node(spec, "normalize(k)").ty) == "[K]"


def test_update_without_state_is_a_warning() -> None:
    from recurgen.frontend import Source, load_source

    spec, warnings = load_source(Source(f'recurrence t\n{QKV}update S = outer(k, v)\n{READ}', "w.rec"))
    assert [w.message for w in warnings] == ["the update of `S` does not use any state"]
    assert spec.updates[0].state == "S"


def test_simultaneous_updates_read_previous_values() -> None:
    spec = spec_of("input k: [K], v: [V]\nstate S: [K, V], n: [K]\n"
                   "update S = S + outer(n, v)\nupdate n = n + k\noutput o: [V] = n @ S\n")
    kinds = {v.kind for v in ir.walk(spec.update_of("S").value) if isinstance(v, ir.Var) and v.name == "n"}
    assert kinds == {ir.Kind.STATE}  # `n` in S's update is n after token t-1, not the new n


def test_errors_are_collected_not_first_only() -> None:
    msgs = errors_of("input q: [K], k: [K], v: [V], lambda: []\nstate S: [K, V]\n"
                     "update S = S + k * v\noutput o: [K] = q @ S\n")
    assert len(msgs) == 3


def test_a_failed_statement_adds_no_follow_on_errors() -> None:
    # The update fails on `zz`; S must not also be reported as never updated, nor `kk` as undeclared.
    (msg,) = errors_of("input q: [K], k: [K], v: [V]\nlet kk = zz * k\nstate S: [K, V]\n"
                       "update S = S + outer(kk, v)\n" + READ)
    assert msg == "unknown name `zz`"


def test_path_and_source_are_kept() -> None:
    text = f"recurrence t\n{QKV}{UPDATE}{READ}"
    spec = from_text(text, "here.rec")
    assert (spec.path, spec.source) == ("here.rec", text)


# --- switches ----------------------------------------------------------------------------------------------
SWITCHED_HEADER = 'recurrence t "a switched variant"\n'
SWITCHED = ("input q: [K], k: [K], v: [V]\noption norm_output = 0\nstate S: [K, V], z: [K] when norm_output\n"
            "update S = S + outer(k, v)\nupdate z = z + k\n"
            "output o: [V] = select(norm_output, (q @ S) / (q @ z), q @ S)\n")


def test_a_switch_selects_a_variant() -> None:
    off = spec_of(SWITCHED)
    assert [s.name for s in off.states] == ["S"]  # the state `when norm_output` is not in the default variant
    assert [u.state for u in off.updates] == ["S"]
    assert off.switches == (("norm_output", 0.0),)
    on, _ = check(parse_spec(SWITCHED_HEADER + SWITCHED), {"norm_output": 1.0})
    assert [s.name for s in on.states] == ["S", "z"]
    assert on.tensor("z").when == "norm_output"
    assert on.outputs[0].value.op is ir.Op.DIV  # the `select` branch of this variant only
    assert on.switches == (("norm_output", 1.0),)


@pytest.mark.parametrize(("body", "words"), [
    (SWITCHED.replace("select(norm_output, (q @ S) / (q @ z), q @ S)", "(q @ S) / (q @ z)"),
     "state `z` exists only when `norm_output` is on"),
    (SWITCHED.replace("option norm_output = 0", "option norm_output = 2"), "its default must be 0 or 1"),
    (SWITCHED.replace("select(norm_output,", "select(nrm,"), "`nrm` is not a declared option"),
    (SWITCHED.replace("select(norm_output, (q @ S) / (q @ z), q @ S)", "select(norm_output, q @ S)"),
     "`select(...)` takes a switch option and two expressions"),
    (SWITCHED.replace("v: [V]\n", "v: [V] when norm_output\n", 1), "only a state can depend on a switch"),
])
def test_switch_errors(body: str, words: str) -> None:
    assert any(words in m for m in errors_of(body))


def test_the_branch_not_taken_is_checked_too() -> None:
    """`recurgen check` reports an error in the variant the defaults do not select."""
    bad = SWITCHED.replace("(q @ S) / (q @ z)", "(q @ S) / (q @ zz)")
    assert any("unknown name `zz`" in m for m in errors_of(bad))


LAG = "input k: [K], v: [V]\nstate S: [K, V], n: [K]\nupdate n = n + k\n"


def test_reading_another_state_in_an_update_warns_with_a_caret() -> None:
    from recurgen.frontend import Source, load_source

    text = f"recurrence t\n{LAG}update S = S + outer(n, v) + outer(n, n) @ S\noutput o: [V] = n @ S\n"
    _, warnings = load_source(Source(text, "lag.rec"))
    assert len(warnings) == 1  # once per (updated state, other state), at its first read
    assert warnings[0].render(text) == (
        "lag.rec:5:22: warning: the update of `S` reads `n` before this token's update (n_(t-1)): updates are "
        "simultaneous\n"
        "  |\n"
        "5 | update S = S + outer(n, v) + outer(n, n) @ S\n"
        "  |                      ^\n"
        "  = hint: write `new(n)` for its value after this token's update, or `prev(n)` to keep the previous "
        "value and silence this warning")


@pytest.mark.parametrize("read", ["prev(n)", "new(n)"])
def test_prev_and_new_in_an_update_say_which_value_and_do_not_warn(read: str) -> None:
    from recurgen.frontend import Source, load_source

    text = f"recurrence t\n{LAG}update S = S + outer({read}, v)\noutput o: [V] = n @ S\n"
    spec, warnings = load_source(Source(text, "w.rec"))
    assert not warnings
    s = spec.update_of("S").value
    if read == "prev(n)":
        assert s == spec_of(LAG + "update S = S + outer(n, v)\noutput o: [V] = n @ S\n").update_of("S").value
    else:  # `new(n)` is n's update substituted: n + k, written with previous values
        assert s == spec_of(LAG + "update S = S + outer(n + k, v)\noutput o: [V] = n @ S\n").update_of("S").value


def test_new_of_a_looped_state_is_its_unrolled_value() -> None:
    body = ("dim J = 2\ninput k: [J, K], v: [V], q: [K]\nstate S: [K, V], z: [K]\n"
            "update z = 0.5 * z + k[j] for j in J\n{}output o: [V] = q @ S\n")
    spec = spec_of(body.format("update S = S + outer(new(z), v)\n"))
    want = spec_of(body.format("update S = S + outer(0.5 * (0.5 * z + k[0]) + k[1], v)\n"))
    assert spec.update_of("S").value == want.update_of("S").value


def test_new_in_an_output_is_the_bare_name() -> None:
    a = spec_of(QKV + "update S = S + outer(k, v)\noutput o: [V] = q @ new(S)\n")
    b = spec_of(QKV + "update S = S + outer(k, v)\n" + READ)
    assert a.outputs == b.outputs


def test_sin_and_cos_are_real_elementwise_functions() -> None:
    spec = spec_of(QKV + "input th: [K]\nupdate S = cos(th) * S + outer(sin(k), v)\n" + READ)
    ops = {n.op for n in ir.walk(spec.updates[0].value) if isinstance(n, ir.Apply)}
    assert {ir.Op.SIN, ir.Op.COS} <= ops
    assert "sin" in RESERVED
    assert "new" in RESERVED
