"""The oracle checks its arguments (ValueError naming the argument and the shape it must have), handles
T = 0 and T = 1, never mutates its arguments, and is consistent under splitting a sequence in two."""

from __future__ import annotations

import dataclasses
import functools
import re
import sys

import pytest
import torch

from recurgen import ir
from recurgen.frontend import from_text, load_spec
from recurgen.oracle import run as run_reference
from recurgen.resources import bundled_spec_names
from tests.helpers import assert_close, random_inputs, random_state

B, T, H = 2, 5, 3
SIZES = {"K": 4, "V": 5, "D": 3, "N": 2, "E": 3, "P": 2, "M": 3}


@functools.cache
def spec_of(name: str) -> ir.Spec:
    return load_spec(name)[0]


def _inputs(name: str, T: int = T) -> dict[str, torch.Tensor]:
    return random_inputs(spec_of(name), B, T, H, SIZES, torch.float64, seed=0)


def _raises(exc: type[Exception], *fragments: str) -> pytest.RaisesExc:
    """pytest.raises matching every fragment literally, in order."""
    return pytest.raises(exc, match=".*".join(re.escape(f) for f in fragments))


# --- arguments --------------------------------------------------------------------------------------------

def test_missing_argument_names_it_and_its_shape() -> None:
    args = _inputs("gla")
    del args["g"]
    with _raises(ValueError, "gla: missing argument(s) `g` [B, T, H, K]"):
        run_reference(spec_of("gla"), args)


def test_missing_param_names_its_shape() -> None:
    args = _inputs("rwkv6")
    del args["u"]
    with _raises(ValueError, "missing argument(s) `u` [H, K]"):
        run_reference(spec_of("rwkv6"), args)


def test_unexpected_argument_is_named() -> None:
    args = _inputs("delta_rule")
    args["bet"] = args.pop("beta")
    with _raises(ValueError, "missing argument(s) `beta` [B, T, H]"):
        run_reference(spec_of("delta_rule"), args)
    args["beta"] = args["bet"]
    with _raises(ValueError, "unexpected argument(s) `bet`", "q, k, v, beta"):
        run_reference(spec_of("delta_rule"), args)


def test_first_input_without_head_dim() -> None:
    args = _inputs("gla")
    args["q"] = args["q"][:, :, 0]
    with _raises(ValueError, "`q` must have shape [B, T, H, K], got [2, 5, 4]"):
        run_reference(spec_of("gla"), args)


@pytest.mark.parametrize(("name", "arg", "shape", "message"), [
    ("gla", "v", (B, T, H + 1, 5), "`v` must have shape [B, T, H, V] with B=2, T=5, H=3 (from `q`), got [2, 5, 4, 5]"),
    ("gla", "k", (B + 1, T, H, 4), "`k` must have shape [B, T, H, K] with B=2, T=5, H=3 (from `q`)"),
    ("gla", "g", (B, T - 1, H, 4), "`g` must have shape [B, T, H, K] with B=2, T=5, H=3"),
    ("gla", "k", (B, T, H, 6), "`k` must have shape [B, T, H, K] with K=4 (from `q`), got [2, 5, 3, 6]"),
    ("rwkv6", "u", (H + 1, 4), "`u` must have shape [H, K] with H=3 (from `r`), got [4, 4]"),
    ("rwkv6", "u", (B, H, 4), "`u` must have shape [H, K] with H=3"),
    ("delta_rule", "beta", (B, T, H, 1), "`beta` must have shape [B, T, H] with B=2, T=5, H=3"),
    ("delta_product", "k", (B, T, H, 3, 4), "`k` must have shape [B, T, H, J, K] with J=2 (from its `dim` line)"),
    ("mamba", "A", (H, 3, 7), "`A` must have shape [H, E, N] with N=2 (from `B`)"),
])
def test_wrong_shape_names_argument_and_expected_shape(name: str, arg: str, shape: tuple[int, ...],
                                                       message: str) -> None:
    args = _inputs(name)
    args[arg] = torch.zeros(shape, dtype=torch.float64)
    with _raises(ValueError, f"{name}: {message}"):
        run_reference(spec_of(name), args)


def test_non_tensor_argument_is_a_type_error() -> None:
    args = _inputs("gla")
    args["q"] = args["q"].tolist()  # type: ignore[assignment]
    with _raises(TypeError, "`q` must be a torch.Tensor of shape [B, T, H, K], got list"):
        run_reference(spec_of("gla"), args)
    with _raises(TypeError, "`tensors` must be a mapping"):
        run_reference(spec_of("gla"), list(_inputs("gla").values()))  # type: ignore[arg-type]


def test_complex_input_is_rejected() -> None:
    args = _inputs("gla")
    args["v"] = args["v"].to(torch.complex128)
    with _raises(ValueError, "`v` must be real, got dtype torch.complex128"):
        run_reference(spec_of("gla"), args)


# --- options ----------------------------------------------------------------------------------------------

def test_unknown_option_is_rejected() -> None:
    with _raises(ValueError, "hgrn: unknown option(s) `scale`; the options are: none"):
        run_reference(spec_of("hgrn"), _inputs("hgrn"), options={"scale": 1.0})
    with _raises(ValueError, "unknown option(s) `sacle`; the options are: scale"):
        run_reference(spec_of("gla"), _inputs("gla"), options={"sacle": 1.0})


def test_option_none_means_default_and_tensor_keeps_gradient() -> None:
    spec, args = spec_of("gla"), _inputs("gla")
    default, _ = run_reference(spec, args)
    explicit_none, _ = run_reference(spec, args, options={"scale": None})
    assert torch.equal(default["o"], explicit_none["o"])
    scale = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    out, _ = run_reference(spec, args, options={"scale": scale})
    out["o"].sum().backward()
    assert scale.grad is not None
    assert scale.grad.abs().item() > 0
    with _raises(ValueError, "option `scale` must be a real scalar"):
        run_reference(spec, args, options={"scale": torch.ones(2)})


# --- initial state ----------------------------------------------------------------------------------------

def test_initial_state_wrong_shape_is_not_broadcast() -> None:
    spec, args = spec_of("gla"), _inputs("gla")
    with _raises(ValueError, "`initial_state` for state `S` must have shape [B, H, K, V] with B=2, H=3, K=4, V=5, "
                 "got [3, 4, 5]"):
        run_reference(spec, args, initial_state=torch.zeros(H, 4, 5))
    with _raises(ValueError, "`initial_state` for state `S` must have shape [B, H, K, V]"):
        run_reference(spec, args, initial_state=torch.zeros(1, H, 4, 5))  # would broadcast over B
    with _raises(ValueError, "`initial_state` for state `S` must have shape [B, H, K, V]"):
        run_reference(spec, args, initial_state=torch.zeros(B, H, 5, 4))  # transposed


def test_initial_state_count_and_type() -> None:
    spec, args = spec_of("mlstm"), _inputs("mlstm")
    C0, _, _ = random_state(spec, B, H, SIZES, torch.float64)
    with _raises(ValueError, "mlstm: `initial_state` needs 3 tensor(s), one per state (`C` [B, H, K, V], "
                 "`n` [B, H, K], `m` [B, H]), got 1"):
        run_reference(spec, args, initial_state=C0)
    with _raises(TypeError, "`initial_state` for state `n` must be a torch.Tensor of shape [B, H, K]"):
        run_reference(spec, args, initial_state=(C0, 0.0, None))  # type: ignore[arg-type]
    with _raises(ValueError, "`initial_state` for state `C` must be real"):
        run_reference(spec, args, initial_state=(C0.to(torch.complex128), None, None))


def test_initial_state_none_entry_means_zeros() -> None:
    spec, args = spec_of("mlstm"), _inputs("mlstm")
    C0, n0, m0 = random_state(spec, B, H, SIZES, torch.float64)
    partial = run_reference(spec, args, initial_state=(C0, None, m0))
    full = run_reference(spec, args, initial_state=(C0, torch.zeros_like(n0), m0))
    assert_close("h", partial[0]["h"], full[0]["h"], atol=0, rtol=0)


def test_real_initial_state_for_complex_state_is_promoted() -> None:
    spec, args = spec_of("lru"), _inputs("lru")
    (h0,) = random_state(spec, B, H, SIZES, torch.float64)
    out_real, _ = run_reference(spec, args, initial_state=h0.real.contiguous())
    out_cplx, _ = run_reference(spec, args, initial_state=torch.complex(h0.real, torch.zeros_like(h0.real)))
    assert_close("y", out_real["y"], out_cplx["y"], atol=0, rtol=0)


# --- lengths, dtypes, purity, splitting ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gla", "mlstm", "lru", "delta_product"])
def test_empty_sequence(name: str) -> None:
    spec = spec_of(name)
    args = _inputs(name, T=0)
    outs, states = run_reference(spec, args)
    for o in spec.outputs:
        assert outs[o.name].shape == (B, 0, H, *(SIZES[d] for d in o.ty.dims))
    init = random_state(spec, B, H, SIZES, torch.float64, seed=1)
    _, finals = run_reference(spec, args, initial_state=init)
    for s, s0 in zip(spec.states, init, strict=True):
        assert torch.equal(states[s.name], torch.zeros_like(s0))
        assert torch.equal(finals[s.name], s0)
        assert finals[s.name].data_ptr() != s0.data_ptr()


def test_arguments_are_not_mutated() -> None:
    spec = spec_of("kda")
    args = _inputs("kda")
    init = random_state(spec, B, H, SIZES, torch.float64)
    before = ({n: x.clone() for n, x in args.items()}, tuple(s.clone() for s in init))
    _, finals = run_reference(spec, args, initial_state=init)
    assert all(torch.equal(args[n], x) for n, x in before[0].items())
    assert all(torch.equal(a, b) for a, b in zip(init, before[1], strict=True))
    assert finals["S"].data_ptr() != init[0].data_ptr()


@pytest.mark.parametrize("name", sorted(bundled_spec_names()))
def test_split_sequence_carries_state(name: str) -> None:
    """Running t < 3 then t >= 3 from the carried state equals one run: causality and state passing."""
    spec = spec_of(name)
    args = _inputs(name, T=6)
    init = random_state(spec, B, H, SIZES, torch.float64, seed=2)
    full_out, full_states = run_reference(spec, args, initial_state=init)

    def part(sl: slice) -> dict[str, torch.Tensor]:
        return {n: (x[:, sl] if spec.tensor(n) in spec.inputs else x) for n, x in args.items()}

    head_out, head_states = run_reference(spec, part(slice(0, 3)), initial_state=init)
    tail_out, tail_states = run_reference(spec, part(slice(3, 6)),
                                          initial_state=tuple(head_states[s.name] for s in spec.states))
    for n, x in full_out.items():
        assert_close(f"{name}: {n}", torch.cat([head_out[n], tail_out[n]], dim=1), x, atol=1e-12, rtol=1e-12)
    for n, x in full_states.items():
        assert_close(f"{name}: state {n}", tail_states[n], x, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", ["gla", "lru", "mlstm"])
def test_low_precision_reference(name: str) -> None:
    """`dtype=float32` computes in float32 (complex64 for complex states): the 'ref' of golden/ref/kernel."""
    spec = spec_of(name)
    args = random_inputs(spec, B, T, H, SIZES, torch.float32, seed=0)
    init = random_state(spec, B, H, SIZES, torch.float32, seed=0)
    low_out, low_states = run_reference(spec, args, initial_state=init, dtype=torch.float32)
    gold_out, gold_states = run_reference(spec, args, initial_state=init)
    for s in spec.states:
        assert low_states[s.name].dtype == (torch.complex64 if s.ty.complex else torch.float32)
        assert gold_states[s.name].dtype == (torch.complex128 if s.ty.complex else torch.float64)
    for n, x in gold_out.items():
        assert low_out[n].dtype == torch.float32
        assert_close(f"{name}: {n}", low_out[n], x, atol=1e-4, rtol=1e-4)


# --- internal ops --------------------------------------------------------------------------------------------

def test_every_elementwise_op_has_an_evaluator() -> None:
    module = sys.modules["recurgen.oracle"]
    assert set(ir.ELEMENTWISE_UNARY) <= set(module._UNARY)
    assert set(ir.ELEMENTWISE_BINARY) <= set(module._BINARY)


def test_internal_autodiff_ops_evaluate() -> None:
    """STEP, SIGN, DIAGONAL, BROADCAST and EMBED never come from a spec, but derived IR uses them."""
    spec = from_text('recurrence t "t"\ninput x: [K], y: [V]\nstate P: [K, K]\nupdate P = P + outer(x, x)\n'
                     "output o: [K] = P @ x\n")
    P = ir.Var("P", ir.Kind.STATE, ir.Type(("K", "K")))
    x = ir.Var("x", ir.Kind.INPUT, ir.Type(("K",)))
    y = ir.Var("y", ir.Kind.INPUT, ir.Type(("V",)))
    outputs = (
        ir.Output("diag", ir.Apply(ir.Op.DIAGONAL, (P,), ir.Type(("K",)))),
        ir.Output("step", ir.Apply(ir.Op.STEP, (x,), x.ty)),
        ir.Output("sign", ir.Apply(ir.Op.SIGN, (x,), x.ty)),
        ir.Output("bcast", ir.Apply(ir.Op.BROADCAST, (y,), ir.Type(("K", "V")))),
        ir.Output("embed", ir.Apply(ir.Op.EMBED, (y,), ir.Type(("K", "V")), "1")),
    )
    spec = dataclasses.replace(spec, outputs=outputs)
    args = random_inputs(spec, 1, 2, 2, {"K": 3, "V": 4}, torch.float64, seed=0)
    args["x"][0, 0, 0, 0] = 0.0  # STEP(0) = 1
    outs, _ = run_reference(spec, args)
    xs, ys = args["x"], args["y"]
    assert_close("diag", outs["diag"][:, 0], xs[:, 0].square(), atol=0, rtol=0)
    assert_close("step", outs["step"], (xs >= 0).double(), atol=0, rtol=0)
    assert outs["step"][0, 0, 0, 0].item() == 1.0
    assert_close("sign", outs["sign"], torch.sign(xs), atol=0, rtol=0)
    assert_close("bcast", outs["bcast"], ys[..., None, :].expand(1, 2, 2, 3, 4), atol=0, rtol=0)
    assert_close("embed row", outs["embed"][:, :, :, 1], ys, atol=0, rtol=0)
    assert outs["embed"][:, :, :, [0, 2]].abs().max().item() == 0.0
