"""Hostile inputs at run time, on both backends: a correct result or a ValueError naming the argument.

Wrong shapes, dtypes, devices, mismatched heads, strided views, empty and single-token sequences, empty
batches, and NaN/Inf confined to one sequence of a batch. (Hostile `cu_seqlens` for
variable-length batches: test_hostile_seqlens.py.) Cases that fail today are `xfail(strict=True)` with the
change the generated host code needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch

import recurgen
from tests.helpers import random_inputs, random_state

BACKENDS = ("torch", "triton")
SIZES = {"K": 4, "V": 3, "D": 4, "N": 4, "E": 4, "P": 4, "M": 5}
# One spec per shape of host code: no params, params, two states, a complex state, a Householder loop.
SPECS = ("gla", "mamba", "mlstm", "lru", "delta_product")


def _gla(B: int = 2, T: int = 5, H: int = 2, K: int = 4, V: int = 3) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(B, T, H, K, generator=gen), torch.randn(B, T, H, K, generator=gen),
            torch.randn(B, T, H, V, generator=gen), -torch.rand(B, T, H, K, generator=gen)]


def _tuple(x: object) -> tuple[torch.Tensor, ...]:
    return x if isinstance(x, tuple) else (x,)  # type: ignore[return-value]


def _check_against_oracle(rec: recurgen.Recurrence, args: list[torch.Tensor], backend: str,
                          initial_state: torch.Tensor | None = None) -> None:
    out, final = rec(*args, backend=backend, initial_state=initial_state, output_final_state=True)
    wide = [a.to(torch.complex128 if a.is_complex() else torch.float64) for a in args]
    h0 = None if initial_state is None else initial_state.to(torch.float64)
    ref, ref_final = rec.reference(*wide, initial_state=h0, output_final_state=True)
    for a, e in zip(_tuple(out) + _tuple(final), _tuple(ref) + _tuple(ref_final), strict=True):
        assert a.shape == e.shape
        torch.testing.assert_close(a.to(e.dtype), e, rtol=1e-4, atol=1e-4, msg=backend)


# --- wrong shapes, dtypes, devices: ValueError naming the argument and the expected shape ----------------
def _replace(index: int, make: Callable[[list[torch.Tensor]], object]) -> Callable[[], list[object]]:
    def build() -> list[object]:
        xs: list[object] = list(_gla())
        xs[index] = make(_gla())
        return xs
    return build


def _shape_error(name: str, shape: str, got: str) -> str:
    """The essentials of a shape error: the argument, the expected shape, what was passed (the wording between
    may change, e.g. which sizes it says were taken from which argument)."""
    return rf"`{name}` must (?:have|be a tensor of) shape {re.escape(shape)}.*got {re.escape(got)}"


BAD = {
    "q missing head dim": (_replace(0, lambda xs: xs[0][:, :, 0]), _shape_error("q", "[B, T, H, K]", "[2, 5, 4]")),
    "q is a list": (_replace(0, lambda xs: [1.0, 2.0]), _shape_error("q", "[B, T, H, K]", "list")),
    "k is None": (_replace(1, lambda xs: None), _shape_error("k", "[B, T, H, K]", "NoneType")),
    "k extra dim": (_replace(1, lambda xs: xs[1][..., None]), _shape_error("k", "[B, T, H, K]", "[2, 5, 2, 4, 1]")),
    "g other batch": (_replace(3, lambda xs: xs[3][:1]), _shape_error("g", "[B, T, H, K]", "[1, 5, 2, 4]")),
    "g shorter": (_replace(3, lambda xs: xs[3][:, :4]), _shape_error("g", "[B, T, H, K]", "[2, 4, 2, 4]")),
    # Heads may be grouped (an argument's H divides the largest), so only a non-divisor is an error.
    "v heads not a divisor": (_replace(2, lambda xs: torch.randn(2, 5, 3, 3)), r"`[qkvg]` has H=\d"),
    "k other K": (_replace(1, lambda xs: torch.randn(2, 5, 2, 6)), re.escape("`k` has K=6 but K=4 from `q`")),
    "g float64": (_replace(3, lambda xs: xs[3].double()), re.escape("`g` has dtype torch.float64")),
    "q int": (_replace(0, lambda xs: xs[0].long()), re.escape("`q` has dtype torch.int64")),
    "v bool": (_replace(2, lambda xs: xs[2] > 0), re.escape("`v` has dtype torch.bool")),
    "q complex": (_replace(0, lambda xs: xs[0].to(torch.complex64)), re.escape("`q` has dtype torch.complex64")),
    "k on meta": (_replace(1, lambda xs: xs[1].to("meta")), re.escape("`k` is on meta but `q` is on cpu")),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", BAD.keys())
def test_bad_argument_raises_value_error_naming_it(case: str, backend: str) -> None:
    build, pattern = BAD[case]
    with pytest.raises(ValueError, match=pattern):
        recurgen.load("gla")(*build(), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_param_with_other_heads(backend: str) -> None:
    rec = recurgen.load("mamba")
    xs = random_inputs(rec.spec, 1, 3, 2, SIZES)
    xs["A"] = torch.randn(3, 4, 4)  # 3 heads against 2: neither divides the other
    with pytest.raises(ValueError, match=r"`[uA]`.* H=\d"):
        rec(*xs.values(), backend=backend)


WANT_S = "`initial_state` for state `S` must have shape [B, H, K, V] = [2, 2, 4, 3]"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("state", "message"), [
    (torch.zeros(2, 3, 4, 3), f"{WANT_S}, got [2, 3, 4, 3]"),
    (torch.zeros(2, 2, 3, 4), f"{WANT_S}, got [2, 2, 3, 4]"),
    ((torch.zeros(2, 2, 4, 3), torch.zeros(2, 2, 4, 3)), "`initial_state` needs 1 tensor(s) (S), got 2"),
])
def test_bad_initial_state(state: object, message: str, backend: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        recurgen.load("gla")(*_gla(), initial_state=state, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_initial_state_on_another_device(backend: str) -> None:
    with pytest.raises(ValueError, match=re.escape("`initial_state` for state `S` is on meta")):
        recurgen.load("gla")(*_gla(), initial_state=torch.zeros(2, 2, 4, 3, device="meta"), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_size_dim(backend: str) -> None:
    with pytest.raises(ValueError, match=r"`q`.*K=0"):
        recurgen.load("gla")(*_gla(K=0), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_meta_tensors_give_meta_outputs_of_the_right_shape(backend: str) -> None:
    """Meta tensors carry no data: shape propagation (as torch.compile's tracing does) is the only answer."""
    out, final = recurgen.load("gla")(*[x.to("meta") for x in _gla()], backend=backend, output_final_state=True)
    assert (out.device.type, tuple(out.shape)) == ("meta", (2, 5, 2, 3))
    assert (final.device.type, tuple(final.shape)) == ("meta", (2, 2, 4, 3))


# --- strided views, mixed dtypes: the correct result -----------------------------------------------------
VIEWS = {
    "every other token": lambda x: torch.stack([x, torch.zeros_like(x)], dim=2).flatten(1, 2)[:, ::2],
    "heads-major storage": lambda x: x.transpose(1, 2).contiguous().transpose(1, 2),
    "last dim stride 2": lambda x: torch.stack([x, torch.zeros_like(x)], dim=-1)[..., 0],
    "batch-broadcast (stride 0)": lambda x: x[:1].expand_as(x),
    "fortran order": lambda x: x.permute(3, 2, 1, 0).contiguous().permute(3, 2, 1, 0),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("view", VIEWS.keys())
def test_strided_inputs_give_the_correct_result(view: str, backend: str) -> None:
    rec = recurgen.load("gla")
    args = [VIEWS[view](x) for x in _gla()]
    assert not all(a.is_contiguous() for a in args)
    _check_against_oracle(rec, args, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_initial_state_and_params(backend: str) -> None:
    rec = recurgen.load("mamba")
    xs = random_inputs(rec.spec, 2, 4, 2, SIZES)
    xs = {n: x.transpose(-1, -2).contiguous().transpose(-1, -2) if x.dim() >= 2 else x for n, x in xs.items()}
    _check_against_oracle(rec, list(xs.values()), backend)
    gla = recurgen.load("gla")
    _check_against_oracle(gla, _gla(), backend, initial_state=torch.randn(2, 2, 3, 4).transpose(-1, -2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_input_dtypes(backend: str) -> None:
    """Inputs of different float dtypes are each read exactly; the output takes the first input's dtype."""
    xs = _gla()
    mixed = [xs[0], xs[1].half(), xs[2].bfloat16(), xs[3]]
    rec = recurgen.load("gla")
    out, _ = rec(*mixed, backend=backend)
    assert out.dtype == torch.float32
    _check_against_oracle(rec, mixed, backend)


# --- empty and tiny sizes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("B", "T", "H"), [(2, 0, 2), (2, 1, 2), (0, 3, 2), (2, 3, 0)])
@pytest.mark.parametrize("name", SPECS)
def test_empty_and_single_token(name: str, B: int, T: int, H: int, backend: str) -> None:
    rec = recurgen.load(name)
    xs = random_inputs(rec.spec, B, T, H, SIZES)
    h0 = random_state(rec.spec, B, H, SIZES)
    if H == 0:  # no heads: an empty result or a ValueError naming an argument are both fine
        try:
            rec(*xs.values(), backend=backend, initial_state=h0, output_final_state=True)
        except ValueError as err:
            assert re.search(r"`\w+`", str(err)), err  # noqa: PT017  (the message must name the argument)
            return
    out, final = rec(*xs.values(), backend=backend, initial_state=h0, output_final_state=True)
    wide = [x.to(torch.complex128 if x.is_complex() else torch.float64) for x in xs.values()]
    ref, ref_final = rec.reference(*wide, initial_state=tuple(s.to(torch.complex128 if s.is_complex() else
                                                                      torch.float64) for s in h0),
                                   output_final_state=True)
    for a, e in zip(_tuple(out) + _tuple(final), _tuple(ref) + _tuple(ref_final), strict=True):
        assert tuple(a.shape) == tuple(e.shape)
        torch.testing.assert_close(a.to(e.dtype), e, rtol=1e-4, atol=1e-4)


# --- non-finite values stay in their sequence -------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "poison"), [*((n, float("nan")) for n in SPECS), ("gla", float("inf")),
                                              ("mlstm", -float("inf"))])
def test_non_finite_input_does_not_touch_other_sequences(name: str, poison: float, backend: str) -> None:
    """NaN/Inf in batch element 1 (every input, one token): elements 0 and 2 equal a clean run bit for bit."""
    rec = recurgen.load(name)
    xs = random_inputs(rec.spec, 3, 6, 2, SIZES)
    inputs = {t.name for t in rec.spec.inputs}
    bad = {}
    for n, x in xs.items():
        x = x.clone()
        if n in inputs:
            x[1, 2] = poison
        bad[n] = x
    clean_out, clean_final = rec(*xs.values(), backend=backend, output_final_state=True)
    out, final = rec(*bad.values(), backend=backend, output_final_state=True)
    for a, c in zip(_tuple(out) + _tuple(final), _tuple(clean_out) + _tuple(clean_final), strict=True):
        assert torch.equal(a[[0, 2]], c[[0, 2]]), "a non-finite input in sequence 1 changed sequences 0 or 2"
    for a, c in zip(_tuple(out), _tuple(clean_out), strict=True):  # outputs [B, T, ...]: the past is untouched
        assert torch.equal(a[1, :2], c[1, :2]), "a non-finite input at t = 2 changed outputs before it"


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_initial_state_does_not_touch_other_sequences(backend: str) -> None:
    rec = recurgen.load("gla")
    h0 = torch.randn(2, 2, 4, 3)
    bad = h0.clone()
    bad[1, 0, 0, 0] = float("nan")
    clean, clean_final = rec(*_gla(), initial_state=h0, backend=backend, output_final_state=True)
    out, final = rec(*_gla(), initial_state=bad, backend=backend, output_final_state=True)
    assert torch.equal(out[0], clean[0])
    assert torch.equal(final[0], clean_final[0])
    assert torch.equal(out[1, :, 1], clean[1, :, 1]), "the other head of the same sequence changed"
