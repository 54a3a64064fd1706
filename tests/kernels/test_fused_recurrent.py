"""Fused recurrent kernels of every bundled spec against the float64 oracle, under the Triton interpreter.

Forward outputs, final states and the gradients of every input, param and initial state; the pure-torch
path; `step` applied T times. Shapes are drawn by hypothesis: odd T, non-power-of-two dims, tiles forced
small so several programs split a state, checkpoints every few tokens.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import recurgen
from recurgen.resources import bundled_spec_names
from tests.helpers import close, random_inputs, random_state

SPECS = bundled_spec_names()
# Error allowed relative to the largest magnitude of each compared tensor: the kernels compute in fp32 and
# store in the input dtype, so this is the storage dtype's rounding (inputs are rounded before the oracle
# sees them, so only the kernels' own error counts). Do not loosen these to make a failure pass.
TOL = {torch.float32: 2e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _stable(name: str, xs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """RWKV7's a and b are -κ̂ and κ̂ ⊙ gate in practice; free normals make its transition expand."""
    if name == "rwkv7":
        kk = xs["a"] / xs["a"].norm(dim=-1, keepdim=True)
        xs = {**xs, "a": -kk, "b": kk * torch.sigmoid(xs["b"])}
    return xs


def _tuple(x: object) -> tuple[torch.Tensor, ...]:
    return x if isinstance(x, tuple) else (x,)  # type: ignore[return-value]


def check_against_oracle(name: str, *, B: int, T: int, H: int, sizes: dict[str, int], dtype: torch.dtype,
                         with_h0: bool, ckpt: int, budget: int | None, backend: str, seed: int,
                         mode: str = "recurrent", chunk_size: int | None = None) -> None:
    rec = recurgen.load(name)
    spec = rec.spec
    if budget is not None:  # force several programs per state (restored below: modules are cached)
        saved = rec.module.STATE_TILE_BUDGET, rec.module.BWD_STATE_TILE_BUDGET
        rec.module.STATE_TILE_BUDGET, rec.module.BWD_STATE_TILE_BUDGET = budget, max(budget // 2, 1)
    try:
        base = _stable(name, random_inputs(spec, B, T, H, sizes, torch.float64, seed))
        h0 = random_state(spec, B, H, sizes, torch.float32, seed) if with_h0 else ()
        xs = {n: x.to(dtype).requires_grad_() for n, x in base.items()}
        h0s = [h.clone().requires_grad_() for h in h0]
        out, fin = rec(*xs.values(), initial_state=h0s or None, output_final_state=True,
                       checkpoint_every=ckpt, backend=backend, mode=mode, chunk_size=chunk_size)
        # the oracle sees exactly the rounded inputs the kernel saw
        rx = {n: x.detach().double().requires_grad_() for n, x in xs.items()}
        rh = [h.detach().to(torch.complex128 if h.is_complex() else torch.float64).requires_grad_() for h in h0]
        rout, rfin = recurgen.reference(spec, *rx.values(), initial_state=rh or None, output_final_state=True)
        tol = TOL[dtype]
        outs, routs, fins, rfins = _tuple(out), _tuple(rout), _tuple(fin), _tuple(rfin)
        for o, ro, meta in zip(outs, routs, spec.outputs, strict=True):
            assert o.dtype == dtype
            close(f"{name}: output {meta.name}", o, ro, tol)
        for f, rf, meta in zip(fins, rfins, spec.states, strict=True):
            close(f"{name}: final state {meta.name}", f, rf, TOL[torch.float32] if dtype == torch.float32 else tol)
        # one random cotangent per output and final state
        gen = torch.Generator().manual_seed(seed)
        cots = [torch.randn(ro.shape, generator=gen, dtype=ro.dtype) for ro in routs]
        cots += [torch.randn(rf.shape, generator=gen, dtype=rf.dtype) for rf in rfins]
        loss = sum((o.double() * c).sum() for o, c in zip(outs, cots, strict=False))
        loss = loss + sum((f.to(c.dtype) * c.conj()).real.sum() for f, c in zip(fins, cots[len(outs):], strict=True))
        rloss = sum((o * c).sum() for o, c in zip(routs, cots, strict=False))
        rloss = rloss + sum((f * c.conj()).real.sum() for f, c in zip(rfins, cots[len(outs):], strict=True))
        leaves = [*xs.values(), *h0s]
        rleaves = [*rx.values(), *rh]
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        rgrads = torch.autograd.grad(rloss, rleaves, allow_unused=True)
        labels = [*xs, *(f"initial_state[{s.name}]" for s in spec.states[: len(h0s)])]
        for label, g, rg in zip(labels, grads, rgrads, strict=True):
            if rg is None:
                continue
            assert g is not None, f"{name}: no gradient for {label}"
            close(f"{name}: d{label}", g, rg, tol)
    finally:
        if budget is not None:
            rec.module.STATE_TILE_BUDGET, rec.module.BWD_STATE_TILE_BUDGET = saved


def check_step(name: str, *, B: int, T: int, H: int, sizes: dict[str, int], backend: str, seed: int) -> None:
    """`step` applied T times from a given state equals the full forward."""
    rec = recurgen.load(name)
    spec = rec.spec
    xs = _stable(name, random_inputs(spec, B, T, H, sizes, torch.float32, seed))
    h0 = random_state(spec, B, H, sizes, torch.float32, seed)
    out, fin = rec(*xs.values(), initial_state=h0, output_final_state=True, backend=backend)
    state = [h.clone() for h in h0]
    steps = []
    inputs = {i.name for i in spec.inputs}  # an api line may put params among the inputs (mamba2's A)
    for t in range(T):
        args = [x[:, t] if n in inputs else x for n, x in xs.items()]
        steps.append(_tuple(rec.step(*args, state=state, backend=backend)))
    for i, o in enumerate(_tuple(out)):
        close(f"{name}: step output {i}", torch.stack([s[i] for s in steps], dim=1), o, TOL[torch.float32])
    for i, f in enumerate(_tuple(fin)):
        close(f"{name}: step state {i}", state[i], f, TOL[torch.float32])


shapes = st.fixed_dictionaries({
    "B": st.integers(1, 2), "T": st.sampled_from([1, 2, 5, 13]), "H": st.integers(1, 2),
    "sizes": st.fixed_dictionaries({d: st.sampled_from([3, 4, 5, 8]) for d in "KVNDEP"}),
    "dtype": st.sampled_from(list(DTYPES.values())), "with_h0": st.booleans(),
    "ckpt": st.sampled_from([1, 3, 16]), "budget": st.sampled_from([None, 8]),
})


@pytest.mark.interpret
@pytest.mark.parametrize("name", SPECS)
@settings(max_examples=2)
@given(case=shapes, seed=st.integers(0, 2**16))
def test_kernels_match_oracle(name: str, case: dict, seed: int) -> None:
    check_against_oracle(name, backend="triton", seed=seed, **case)


@pytest.mark.slow
@pytest.mark.interpret
@pytest.mark.parametrize("name", SPECS)
@settings(max_examples=10)
@given(case=shapes.map(lambda c: c), T=st.sampled_from([63, 64, 65, 130, 257]), seed=st.integers(0, 2**16))
def test_kernels_match_oracle_long(name: str, case: dict, T: int, seed: int) -> None:
    check_against_oracle(name, backend="triton", seed=seed, **{**case, "T": T})


@pytest.mark.parametrize("name", SPECS)
def test_torch_path_matches_oracle(name: str) -> None:
    check_against_oracle(name, B=2, T=6, H=2, sizes={"K": 5, "V": 3, "N": 4, "D": 3, "E": 3, "P": 3},
                         dtype=torch.float32, with_h0=True, ckpt=4, budget=None, backend="torch", seed=1)


@pytest.mark.interpret
@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_step_equals_forward(name: str, backend: str) -> None:
    check_step(name, B=2, T=4, H=2, sizes={"K": 5, "V": 3, "N": 4, "D": 3, "E": 3, "P": 3}, backend=backend,
               seed=3)


def check_varlen(name: str, *, cu: list[int], backend: str, seed: int, mode: str = "recurrent",
                 chunk_size: int | None = None) -> None:
    """Packed sequences (`cu_seqlens`): each from its own initial state, nothing crossing a boundary."""
    rec = recurgen.load(name)
    spec = rec.spec
    sizes = {"K": 5, "V": 3, "N": 4, "D": 3, "E": 3, "P": 3, "M": 4}
    cu_t = torch.tensor(cu, dtype=torch.int32)
    xs = _stable(name, random_inputs(spec, 1, cu[-1], 2, sizes, torch.float32, seed))
    h0 = random_state(spec, len(cu) - 1, 2, sizes, torch.float32, seed)
    a = {n: x.clone().requires_grad_() for n, x in xs.items()}
    ah = [h.clone().requires_grad_() for h in h0]
    out, fin = rec(*a.values(), initial_state=ah, output_final_state=True, cu_seqlens=cu_t, checkpoint_every=2,
                   backend=backend, mode=mode, chunk_size=chunk_size)
    r = {n: x.double().requires_grad_() for n, x in xs.items()}
    rh = [h.to(torch.complex128 if h.is_complex() else torch.float64).requires_grad_() for h in h0]
    rout, rfin = recurgen.reference(spec, *r.values(), initial_state=rh, output_final_state=True, cu_seqlens=cu_t)
    tol = TOL[torch.float32]
    for i, (o, ro) in enumerate(zip(_tuple(out), _tuple(rout), strict=True)):
        close(f"{name}: varlen output {i}", o, ro, tol)
    for i, (f, rf) in enumerate(zip(_tuple(fin), _tuple(rfin), strict=True)):
        close(f"{name}: varlen final state {i}", f, rf, tol)
    gen = torch.Generator().manual_seed(seed)
    cots = [torch.randn(ro.shape, generator=gen, dtype=torch.float64) for ro in _tuple(rout)]
    loss = sum((o.double() * c).sum() for o, c in zip(_tuple(out), cots, strict=True))
    rloss = sum((o * c).sum() for o, c in zip(_tuple(rout), cots, strict=True))
    grads = torch.autograd.grad(loss, [*a.values(), *ah], allow_unused=True)
    rgrads = torch.autograd.grad(rloss, [*r.values(), *rh], allow_unused=True)
    for label, g, rg in zip([*a, *(f"h0[{s.name}]" for s in spec.states)], grads, rgrads, strict=True):
        if rg is not None:
            assert g is not None, f"{name}: no varlen gradient for {label}"
            close(f"{name}: varlen d{label}", g, rg, tol)


@pytest.mark.interpret
@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_varlen_matches_oracle(name: str, backend: str) -> None:
    # an empty sequence, a single token, and lengths that are not multiples of the checkpoint interval
    check_varlen(name, cu=[0, 3, 3, 4, 9], backend=backend, seed=5)


@pytest.mark.parametrize(("cu", "message"), [
    ([0, 2, 1, 4], "never decrease"),
    ([0, 2, 3], "end at T=4"),
    ([1, 2, 4], "start at 0"),
])
def test_bad_cu_seqlens_raise(cu: list[int], message: str) -> None:
    gla = recurgen.load("gla")
    xs = [torch.randn(1, 4, 2, 4), torch.randn(1, 4, 2, 4), torch.randn(1, 4, 2, 3), -torch.rand(1, 4, 2, 4)]
    with pytest.raises(ValueError, match=message):
        gla(*xs, cu_seqlens=torch.tensor(cu))
    with pytest.raises(ValueError, match="B must be 1"):
        gla(*[torch.cat([x, x]) for x in xs], cu_seqlens=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="1-D int32/int64"):
        gla(*xs, cu_seqlens=torch.tensor([0.0, 4.0]))


@pytest.mark.interpret
@pytest.mark.parametrize(("name", "grouped"), [
    ("gated_delta_rule", ("q", "k")),  # grouped values, as flash-linear-attention's GVA: v, g, beta per value head
    ("gla", ("k", "g")),
    ("rwkv6", ("u",)),  # a grouped param
])
@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_grouped_heads_match_oracle(name: str, grouped: tuple[str, ...], backend: str) -> None:
    rec = recurgen.load(name)
    spec = rec.spec
    H, G = 4, 2
    xs = random_inputs(spec, 2, 5, H, {"K": 5, "V": 3}, torch.float32, 7)
    params = {p.name for p in spec.params}
    # keep every G-th head of the grouped tensors: the state's head h reads their head h // G
    xs = {n: (x[::G] if n in params else x[:, :, ::G]) if n in grouped else x for n, x in xs.items()}
    h0 = random_state(spec, 2, H, {"K": 5, "V": 3}, torch.float32, 7)
    a = {n: x.clone().requires_grad_() for n, x in xs.items()}
    o, s = rec(*a.values(), initial_state=h0, output_final_state=True, checkpoint_every=2, backend=backend)
    r = {n: x.double().requires_grad_() for n, x in xs.items()}
    ro, rs = recurgen.reference(spec, *r.values(), initial_state=[h.double() for h in h0], output_final_state=True)
    close(f"{name}: grouped output", o, ro, TOL[torch.float32])
    close(f"{name}: grouped state", s, rs, TOL[torch.float32])
    (o.double() * ro.detach()).sum().backward()
    (ro * ro.detach()).sum().backward()
    for n in a:
        assert a[n].grad is not None, n
        assert a[n].grad.shape == xs[n].shape, n
        close(f"{name}: grouped d{n}", a[n].grad, r[n].grad, TOL[torch.float32])
