"""Hostile `cu_seqlens`: a ValueError naming it and what is expected, in every mode — never a kernel indexing
outside the packed row, never garbage.

The host checks `cu_seqlens` before anything runs (`_seqlens` in the generated module), but under torch.compile
it cannot read the values without ending the graph; the custom ops (recurrent and chunk kernels) check them
again inside, where they run eagerly even in a compiled graph. Both are tested here, and NaN in one packed
sequence must leave the others bit-identical in chunk mode as in recurrent mode.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch

import recurgen
from tests.helpers import random_inputs

T = 5
SIZES = {"K": 4, "V": 3, "D": 4, "N": 4, "E": 4, "P": 4, "M": 5}
# (backend, mode): the recurrent kernels, the chunk kernels, the pure-torch path
PATHS = [("triton", "recurrent"), ("triton", "chunk"), ("torch", "recurrent")]
VALUES = "must start at 0, never decrease, and end at T=5"
FORM = r"must be a 1-D int32/int64 tensor \[N \+ 1\]"

# cu_seqlens whose values are wrong: only a look at the values can tell (what torch.compile cannot do on host)
BAD_VALUES: dict[str, Callable[[], torch.Tensor]] = {
    "unsorted": lambda: torch.tensor([0, 3, 2, 5]),
    "negative": lambda: torch.tensor([0, -2, 5]),
    "past the end": lambda: torch.tensor([0, 3, 9, 5]),
    "ends before T": lambda: torch.tensor([0, 2, 4]),
    "ends after T": lambda: torch.tensor([0, 2, 6]),
    "starts after 0": lambda: torch.tensor([1, 5]),
    "int32 ends before T": lambda: torch.tensor([0, 2, 4], dtype=torch.int32),
    # would wrap to [0, 5] if cast to int32 before it is checked
    "wraps in int32": lambda: torch.tensor([0, 2**32 + 5]),
    "huge": lambda: torch.tensor([0, 2**62, 5]),
}
# cu_seqlens of the wrong kind: its type, dtype, rank or size says so
BAD_FORM: dict[str, Callable[[], object]] = {
    "a list": lambda: [0, 5],
    "float": lambda: torch.tensor([0.0, 5.0]),
    "bool": lambda: torch.tensor([False, True]),
    "int16": lambda: torch.tensor([0, 5], dtype=torch.int16),
    "2-D": lambda: torch.tensor([[0, 5]]),
    "0-D": lambda: torch.tensor(5),
    "empty": lambda: torch.tensor([], dtype=torch.int64),
    "one element": lambda: torch.tensor([0]),
}


def _gla(B: int = 1, T: int = T) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(B, T, 2, 4, generator=gen), torch.randn(B, T, 2, 4, generator=gen),
            torch.randn(B, T, 2, 3, generator=gen), -torch.rand(B, T, 2, 4, generator=gen)]


def _call(path: tuple[str, str], cu: object, name: str = "gla") -> None:
    rec = recurgen.load(name)
    xs = _gla() if name == "gla" else list(random_inputs(rec.spec, 1, T, 2, SIZES).values())
    backend, mode = path
    rec(*xs, cu_seqlens=cu, output_final_state=True, backend=backend, mode=mode, chunk_size=16)


@pytest.mark.interpret
@pytest.mark.parametrize("path", PATHS, ids="-".join)
@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_values(case: str, path: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match=rf"`cu_seqlens` {VALUES}"):
        _call(path, BAD_VALUES[case]())


@pytest.mark.interpret
@pytest.mark.parametrize("path", PATHS, ids="-".join)
@pytest.mark.parametrize("case", BAD_FORM)
def test_bad_form(case: str, path: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match=rf"`cu_seqlens` {FORM}"):
        _call(path, BAD_FORM[case]())


@pytest.mark.interpret
@pytest.mark.parametrize("path", PATHS, ids="-".join)
def test_other_device_and_batch(path: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="`cu_seqlens` is on meta but the inputs are on cpu"):
        _call(path, torch.tensor([0, 5], device="meta"))
    backend, mode = path
    with pytest.raises(ValueError, match="with `cu_seqlens` the inputs are packed into one row: B must be 1"):
        recurgen.load("gla")(*_gla(B=2), cu_seqlens=torch.tensor([0, 5]), backend=backend, mode=mode)


@pytest.mark.interpret
@pytest.mark.parametrize("case", ["unsorted", "wraps in int32"])
def test_bad_values_with_sub_steps_in_chunk_mode(case: str) -> None:
    """delta_product packs J sub-steps per token: the chunk op checks `cu_seqlens * J` against T * J."""
    with pytest.raises(ValueError, match=r"`cu_seqlens` must start at 0, never decrease, and end at T="):
        _call(("triton", "chunk"), BAD_VALUES[case](), name="delta_product")


def test_the_ops_check_cu_seqlens_themselves() -> None:
    """Called directly, past the host checks: the recurrent op refuses what `_seqlens` would have refused."""
    m = recurgen.load("gla").module
    xs = _gla()
    for cu in (torch.tensor([0, 3, 2, 5], dtype=torch.int32), torch.tensor([0, 9], dtype=torch.int32)):
        with pytest.raises(ValueError, match=rf"`cu_seqlens` {VALUES}"):
            m._fwd_op(xs, [], [], True, False, 2, cu, 0)  # 0: the token loop (no blocked scan)


# --- under torch.compile(fullgraph=True) the host cannot read values: the ops check them ----------------------
class _Packed(torch.nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.rec, self.mode = recurgen.load("gla"), mode

    def forward(self, xs: list[torch.Tensor], cu: torch.Tensor) -> torch.Tensor:
        o, _ = self.rec(*xs, cu_seqlens=cu, output_final_state=True, backend="triton", mode=self.mode,
                        chunk_size=16)
        return o.square().sum()


@pytest.mark.interpret
@pytest.mark.parametrize("mode", ["recurrent", "chunk"])
def test_bad_values_under_torch_compile(mode: str) -> None:
    torch._dynamo.reset()
    model = torch.compile(_Packed(mode), fullgraph=True, backend="aot_eager")
    xs = [x.requires_grad_() for x in _gla()]
    good = model(xs, torch.tensor([0, 2, 5]))  # compiles once; the bad calls reuse the graph
    good.backward()
    for case in ("unsorted", "negative", "past the end", "ends before T", "wraps in int32"):
        with pytest.raises(ValueError, match=rf"`cu_seqlens` {VALUES}"):
            model(xs, BAD_VALUES[case]())


@pytest.mark.interpret
@pytest.mark.parametrize("fullgraph", [True, False])
@pytest.mark.parametrize("case", ["float", "2-D"])
def test_bad_form_under_torch_compile(case: str, fullgraph: bool) -> None:
    """Dtype and shape are known while tracing, so the host check raises there. Without fullgraph dynamo falls
    back to eager and the caller gets the ValueError itself; with fullgraph=True torch 2.13 reports any exception
    raised while tracing as `Unsupported("Observed exception")`, whose message and cause carry the ValueError."""
    torch._dynamo.reset()
    model = torch.compile(_Packed("recurrent"), fullgraph=fullgraph, backend="aot_eager")
    with pytest.raises((ValueError, torch._dynamo.exc.Unsupported)) as info:
        model(_gla(), BAD_FORM[case]())
    if fullgraph:  # the ValueError, quoted in the chain dynamo raises
        assert re.search(rf"ValueError\('gla: `cu_seqlens` {FORM}", str(info.value.__cause__)), repr(info.value)
    else:
        assert isinstance(info.value, ValueError)
        assert re.search(rf"`cu_seqlens` {FORM}", str(info.value))


def test_bad_values_on_the_torch_path_under_torch_compile() -> None:
    """Without fullgraph, the torch path runs after a graph break with values the host could not check: it checks
    them itself (Python slicing would never read out of bounds, but a negative length would give garbage)."""
    torch._dynamo.reset()
    rec = recurgen.load("gla")

    def packed(xs: list[torch.Tensor], cu: torch.Tensor) -> torch.Tensor:
        return rec(*xs, cu_seqlens=cu, backend="torch")[0]

    compiled = torch.compile(packed, backend="eager")
    compiled(_gla(), torch.tensor([0, 2, 5]))
    with pytest.raises(ValueError, match=rf"`cu_seqlens` {VALUES}"):
        compiled(_gla(), BAD_VALUES["negative"]())


# --- NaN in one packed sequence stays there --------------------------------------------------------------------
def _tuple(x: object) -> tuple[torch.Tensor, ...]:
    return x if isinstance(x, tuple) else (x,)  # type: ignore[return-value]


@pytest.mark.interpret
@pytest.mark.parametrize("mode", ["recurrent", "chunk"])
@pytest.mark.parametrize("name", ["gla", "gated_delta_rule", "mamba"])  # matmul, wy, scan chunk families
def test_nan_in_one_packed_sequence_stays_there(name: str, mode: str) -> None:
    """A NaN in every input at one token of sequence 1 of a packed row: sequences 0 and 2 are bit-identical to a
    clean run, and so are sequence 1's outputs before it — token by token in recurrent mode, chunk by chunk in
    chunk mode (chunks start at each sequence's start; within its chunk a NaN reaches earlier tokens too,
    because the intra-chunk products multiply it by the causal mask's zeros)."""
    rec = recurgen.load(name)
    cu, poison, chunk = torch.tensor([0, 20, 57, 70]), 40, 16  # sequence 1's chunks: [20, 36), [36, 52), [52, 57)
    xs = random_inputs(rec.spec, 1, 70, 2, SIZES)
    bad = {n: x.clone() for n, x in xs.items()}
    for t in rec.spec.inputs:
        bad[t.name][:, poison] = float("nan")
    kw = {"cu_seqlens": cu, "output_final_state": True, "backend": "triton", "mode": mode, "chunk_size": chunk}
    clean, clean_final = rec(*xs.values(), **kw)
    out, final = rec(*bad.values(), **kw)
    untouched = poison if mode == "recurrent" else 36
    for o, c in zip(_tuple(out), _tuple(clean), strict=True):
        assert torch.equal(o[:, :20], c[:, :20]), f"{name} {mode}: a NaN in sequence 1 changed sequence 0"
        assert torch.equal(o[:, 57:], c[:, 57:]), f"{name} {mode}: a NaN in sequence 1 changed sequence 2"
        assert torch.equal(o[:, 20:untouched], c[:, 20:untouched]), f"{name} {mode}: the NaN changed the past"
        assert o[:, poison].isnan().any(), "the NaN did not reach its own output (the poisoning failed)"
    for f, c in zip(_tuple(final), _tuple(clean_final), strict=True):
        assert torch.equal(f[[0, 2]], c[[0, 2]]), f"{name} {mode}: a NaN in sequence 1 changed other final states"
