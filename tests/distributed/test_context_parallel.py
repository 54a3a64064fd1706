"""Context parallelism (`recurgen.distributed.ContextParallel`): P processes (gloo, CPU) each run a contiguous slice
of the time axis; outputs, the final state and the gradients of every input, param and the initial state equal the
single-process run of the same module on the whole sequence.

One group of processes per (world size, backend) runs all its cases, forked from the test process so that
imports and compiled modules are paid once. The Triton
interpreter is slow, so the default run uses it for a few specs and the pure-torch path for the rest; the
`slow` sweep covers all bundled specs with both.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import recurgen
from recurgen import ir
from recurgen.api import Recurrence
from recurgen.distributed import ContextParallel
from recurgen.resources import bundled_spec_names
from recurgen.testing.sampling import random_cotangents, random_inputs, random_state
from tests.helpers import close

B, H = 1, 2
SIZES = {"K": 4, "V": 4, "D": 4, "N": 3, "E": 3, "P": 3, "M": 5}
RTOL, ATOL = 2e-4, 2e-5  # fp32 kernels against fp32 kernels, only the association order differs
TOLS = {"tol": ATOL, "rtol": RTOL, "floor": 1.0}  # atol ATOL × max(1, max|expected|)

# Matrix classes on the side and state shapes no bundled spec uses: a RIGHT Householder (V×V on the state's last
# dim), a Householder on a vector state, a column-wise decay.
CUSTOM = {
    "right_delta": """recurrence right_delta
input  q: [V], k: [K], v: [V] normalized, beta: [] unit
state  S: [K, V]
update S = S @ (I - beta * outer(v, v)) + outer(k, v)
output o: [K] = S @ q
""",
    "vec_delta": """recurrence vec_delta
input  k: [K] normalized, x: [K], beta: [] unit
state  h: [K]
update h = (I - beta * outer(k, k)) @ h + beta * x
output o: [K] = h
""",
    # an option inside the transition: A must be formed with the value the call passes
    "tempered_gla": """recurrence tempered_gla
input  q: [K], k: [K], v: [V], g: [K] logdecay
option tau = 1
state  S: [K, V]
update S = exp(tau * g) * S + outer(k, v)
output o: [V] = q @ S
""",
    "col_gla": """recurrence col_gla
input  q: [K], k: [K], v: [V], g: [V] logdecay
state  S: [K, V]
update S = exp(g) * S + outer(k, v)
output o: [V] = q @ S
""",
}


@dataclass(frozen=True)
class Case:
    spec: str  # a bundled name or a key of CUSTOM
    T: int = 16  # split evenly by 2 and 4; an odd T gives uneven slices
    grouped: tuple[str, ...] = ()  # inputs given with a single head (grouped heads, shared by all)
    options: tuple[tuple[str, float], ...] = ()  # per-call options, e.g. (("scale", 0.3),)
    omit: tuple[str, ...] = ()  # optional tensors the call leaves out (they take the spec's default)
    headless: bool = False  # a `layout [B, T]` spec called without a head axis (H = 1)
    public_names: bool = False  # initial_state / output_final_state under the names the spec's api line gives

    @property
    def id(self) -> str:
        grouped = f"-grouped-{'-'.join(self.grouped)}" if self.grouped else ""
        flags = "".join(f"-{n}{v}" for n, v in self.options) + "".join(f"-no-{n}" for n in self.omit)
        return f"{self.spec}-T{self.T}{grouped}{flags}" + "-headless" * self.headless + "-public" * self.public_names

    def call_args(self, initial_state: Any) -> dict[str, Any]:
        """The keywords that ask for the final state and pass the initial state."""
        if not self.public_names:
            return {"initial_state": initial_state, "output_final_state": True}
        rec = _load(self.spec)
        return {rec.spec.api.public("initial_state"): initial_state, rec.spec.api.public("output_final_state"): True}


# Every transition class: identity (linear_attn, below), diagonal (row-wise, elementwise, with a bonus and
# `prev`), scalar (with two states and a normalised readout), Householder (scalar gate, per-channel gate, two
# steps per token), DPLR, complex diagonal.
REQUIRED = ("gla", "simple_gla", "mamba2", "gated_delta_rule", "delta_product", "kda", "rwkv7", "hgrn", "mamba",
            "lru", "mlstm", "rwkv6")
TORCH_CASES = (*(Case(s) for s in REQUIRED), Case("linear_attn"), Case("gateloop", T=15),
               Case("gated_delta_rule", T=15, grouped=("q", "k")), Case("mlstm", options=(("scale", 0.3),)),
               *(Case(s, T=15) for s in CUSTOM), Case("tempered_gla", options=(("tau", 0.6),)))
# The public call as libraries spell it (`api` lines, optional tensors, `layout [B, T]`), where recurgen has it.
if "api" in getattr(ir.Spec, "__dataclass_fields__", {}):
    TORCH_CASES = (*TORCH_CASES, Case("mamba2", omit=("D", "z", "dt_bias"), public_names=True),
                   Case("hgrn", T=15, headless=True))
TRITON_CASES = {2: (Case("gla"), Case("gated_delta_rule"), Case("rwkv7"), Case("mlstm"), Case("lru", T=15)),
                4: (Case("gla"), Case("gated_delta_rule"), Case("lru", T=15))}


def _load(spec: str) -> Recurrence:
    return recurgen.compile(CUSTOM[spec], spec) if spec in CUSTOM else recurgen.load(spec)


def _problem(case: Case) -> tuple[Recurrence, dict[str, torch.Tensor], tuple[torch.Tensor, ...], dict[str, Any]]:
    """The whole-sequence arguments, initial state and loss weights of a case (the same in every process)."""
    rec = _load(case.spec)
    heads = 1 if case.headless else H
    inputs = random_inputs(rec.spec, B, case.T, heads, SIZES, seed=3)
    for name in case.grouped:
        inputs[name] = inputs[name][:, :, :1].contiguous()
    inputs = {n: x for n, x in inputs.items() if n not in case.omit}
    h0 = random_state(rec.spec, B, heads, SIZES, seed=4)
    if case.headless:
        names = {t.name for t in rec.spec.inputs}
        inputs = {n: x.squeeze(2 if n in names else 0) for n, x in inputs.items()}
        h0 = tuple(s.squeeze(1) for s in h0)
    out, final = rec(**inputs, initial_state=h0, output_final_state=True, backend="torch")
    weights = random_cotangents({**{f"o{i}": o for i, o in enumerate(_tuple(out))},
                                 **{f"f{i}": f for i, f in enumerate(_tuple(final))}}, seed=5)
    return rec, inputs, h0, weights


def _tuple(x: Any) -> tuple[Any, ...]:
    return x if isinstance(x, tuple) else (x,)


def _real(x: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(x) if x.is_complex() else x


def _loss(out: Any, final: Any, weights: dict[str, torch.Tensor], time: slice) -> torch.Tensor:
    """A weighted sum of the outputs (tokens `time` of the weights), plus of the final states where returned."""
    loss = sum((_real(o) * _real(weights[f"o{i}"][:, time])).sum() for i, o in enumerate(_tuple(out)))
    finals = None if final is None else _tuple(final)
    if finals is not None:
        loss = loss + sum((_real(f) * _real(weights[f"f{i}"])).sum() for i, f in enumerate(finals))
    return loss


def _leaves(rec: Recurrence, inputs: dict[str, torch.Tensor], time: slice) -> dict[str, torch.Tensor]:
    names = {t.name for t in rec.spec.inputs}
    return {n: (x[:, time] if n in names else x).detach().clone().requires_grad_() for n, x in inputs.items()}


def _run(case: Case, backend: str, rank: int, world: int) -> dict[str, Any]:
    """One rank's part: its slice through ContextParallel, forward and backward."""
    rec, inputs, h0, weights = _problem(case)
    time = _slices(case.T, world)[rank]
    leaves = _leaves(rec, inputs, time)
    h0_leaves = tuple(s.clone().requires_grad_() for s in h0) if rank == 0 else None
    cp = ContextParallel(rec)
    out, final = cp(**leaves, **case.call_args(h0_leaves), backend=backend, **dict(case.options))
    _loss(out, final, weights, time).backward()
    params = [leaves[p.name] for p in rec.spec.params if p.name in leaves]
    cp.all_reduce_grads(params)
    return {"out": [o.detach() for o in _tuple(out)],
            "final": None if final is None else [f.detach() for f in _tuple(final)],
            "grads": {n: x.grad for n, x in leaves.items()},
            "h0_grads": None if h0_leaves is None else [s.grad for s in h0_leaves]}


def _slices(T: int, world: int) -> list[slice]:
    """Rank r's tokens: contiguous, in rank order, as even as T allows (`torch.tensor_split`'s rule)."""
    bounds = [0, *(len(c) for c in torch.arange(T).tensor_split(world))]
    starts = torch.tensor(bounds).cumsum(0).tolist()
    return [slice(starts[r], starts[r + 1]) for r in range(world)]


def _single(case: Case, backend: str) -> dict[str, Any]:
    """The reference: the same module on the whole sequence in one process, same loss."""
    rec, inputs, h0, weights = _problem(case)
    leaves = _leaves(rec, inputs, slice(None))
    h0_leaves = tuple(s.clone().requires_grad_() for s in h0)
    out, final = rec(**leaves, **case.call_args(h0_leaves), backend=backend, **dict(case.options))
    _loss(out, final, weights, slice(None)).backward()
    return {"out": [o.detach() for o in _tuple(out)], "final": [f.detach() for f in _tuple(final)],
            "grads": {n: x.grad for n, x in leaves.items()}, "h0_grads": [s.grad for s in h0_leaves]}


def _worker(rank: int, world: int, port: int, out_dir: str, backend: str, cases: tuple[Case, ...]) -> None:
    torch.set_num_threads(1)  # several processes on a small shared machine
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=300))
    try:
        results: dict[str, Any] = {c.id: _run(c, backend, rank, world) for c in cases}
        results["errors"] = _misuse(rank)
        results["no_grad"] = _inference(cases[0], backend, rank, world) if cases else None
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _misuse(rank: int) -> str | None:
    """An initial state on a rank other than 0 is refused before any collective (so no rank hangs)."""
    if rank == 0:
        return None
    rec, inputs, h0, _ = _problem(Case("gla"))
    try:
        ContextParallel(rec)(**inputs, initial_state=h0, backend="torch")
    except ValueError as err:
        return str(err)
    return None


def _inference(case: Case, backend: str, rank: int, world: int) -> list[torch.Tensor]:
    """Under no_grad the exchange still runs (and nothing waits for a backward)."""
    rec, inputs, h0, _ = _problem(case)
    time = _slices(case.T, world)[rank]
    with torch.no_grad():
        out, _ = ContextParallel(rec)(**_leaves(rec, inputs, time), **case.call_args(h0 if rank == 0 else None),
                                      backend=backend, **dict(case.options))
    assert not any(o.requires_grad for o in _tuple(out))
    return list(_tuple(out))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check(case: Case, backend: str, world: int, ranks: list[dict[str, Any]]) -> None:
    want = _single(case, backend)
    got = [r[case.id] for r in ranks]
    for i, o in enumerate(want["out"]):
        close(f"{case.id}: output {i}", torch.cat([g["out"][i] for g in got], dim=1), o, **TOLS)
    assert all(g["final"] is None for g in got[:-1]), f"{case.id}: only the last rank returns the final state"
    for i, f in enumerate(want["final"]):
        close(f"{case.id}: final state {i}", got[-1]["final"][i], f, **TOLS)
    inputs = {t.name for t in _load(case.spec).spec.inputs}
    for name, grad in want["grads"].items():
        if name in inputs:
            close(f"{case.id}: d{name}", torch.cat([g["grads"][name] for g in got], dim=1), grad, **TOLS)
            continue
        for r, g in enumerate(got):
            close(f"{case.id}: d{name} (rank {r}, all-reduced)", g["grads"][name], grad, **TOLS)
    for i, dh in enumerate(want["h0_grads"]):
        close(f"{case.id}: d initial_state {i}", got[0]["h0_grads"][i], dh, **TOLS)


def _spawn_and_check(tmp_path: Path, world: int, backend: str, cases: tuple[Case, ...]) -> None:
    for case in cases:  # compiled once here: forked workers inherit the loaded modules
        _load(case.spec)
    # fork, not spawn: a spawned worker re-imports torch and recurgen, seconds each on a loaded 2-core machine
    mp.start_processes(_worker, args=(world, _free_port(), str(tmp_path), backend, cases), nprocs=world,
                       join=True, start_method="fork")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    for r in ranks[1:]:
        assert "rank 0 only" in (r["errors"] or "")
    for case in cases:
        _check(case, backend, world, ranks)
    if cases:  # the last rank's outputs depend on every other rank's summary
        for i, o in enumerate(ranks[-1][cases[0].id]["out"]):
            close(f"{cases[0].id}: output {i} under no_grad", ranks[-1]["no_grad"][i], o, **TOLS)


@pytest.mark.parametrize("world", [2, 4])
def test_torch_path_equals_single_process(tmp_path: Path, world: int) -> None:
    _spawn_and_check(tmp_path, world, "torch", TORCH_CASES)


@pytest.mark.interpret
@pytest.mark.parametrize("world", [2, 4])
def test_triton_kernels_equal_single_process(tmp_path: Path, world: int) -> None:
    _spawn_and_check(tmp_path, world, "triton", TRITON_CASES[world])


@pytest.mark.slow
@pytest.mark.interpret
@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("world", [2, 4])
def test_every_bundled_spec(tmp_path: Path, world: int, backend: str) -> None:
    cases = tuple(Case(s, T=16 if world == 4 else 15) for s in bundled_spec_names())
    _spawn_and_check(tmp_path, world, backend, cases)


def test_dense_transitions_are_refused() -> None:
    coupled = recurgen.compile("""recurrence coupled
input  q: [K], k: [K], v: [V], g: [] logdecay
state  S: [K, V], z: [K]
update S = exp(g) * S + outer(z, v)
update z = exp(g) * z + k
output o: [V] = q @ S
""", "coupled")
    with pytest.raises(ValueError, match=r"closed-form composition.*`S` is coupled with z"):
        ContextParallel(coupled)


def test_a_previous_token_term_is_refused() -> None:
    """mamba3's h reads its memoryless `prev(...)` state one token back: chunk mode takes that as an input term, but a
    slice's first token needs the previous slice's last inputs, which the (A, X) exchange does not carry."""
    with pytest.raises(ValueError, match=r"`h` reads the previous token's _prev_B_re_B_im_x"):
        ContextParallel(recurgen.load("mamba3"))
