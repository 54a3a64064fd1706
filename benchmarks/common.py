"""common: shapes, inputs, lower bounds and markdown helpers shared by the benchmark parts."""

from __future__ import annotations

import math
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import recurgen
from recurgen import ir

RESULTS = Path(__file__).parent / "results"

# GPU-realistic shapes (issue 7): every free dim of a spec is 128 (as `recurgen inspect` assumes), fixed
# dims (`dim J = 2`) keep their value. The interpreter measures at small T and B·H and extrapolates.
GPU_B, GPU_H = 8, 16
GPU_T = (2048, 4096, 8192)
FREE_DIM = 128
IO_DTYPE = torch.bfloat16
IO_BYTES = 2  # bf16 inputs, outputs and input gradients
STATE_BYTES = 4  # states are fp32 (complex: two fp32)
PARAM_BYTES = 4  # params are kept in fp32, as in flash-linear-attention
SCALING_KV = (32, 64, 128, 256)  # the K = V sweep (`python -m benchmarks --parts scaling`)


@dataclass(frozen=True)
class Shape:
    B: int
    T: int
    H: int
    dims: dict[str, int]


def spec_dims(spec: ir.Spec, free: int = FREE_DIM, override: dict[str, int] | None = None) -> dict[str, int]:
    """Every named dim: fixed ones from the spec, free ones `free` unless `override` names them."""
    override = override or {}
    return {d.name: d.size if d.size is not None else int(override.get(d.name, free)) for d in spec.dims}


def _numel(dims: Sequence[str], sz: dict[str, int]) -> int:
    return math.prod(sz[d] for d in dims)


def per_token_elems(spec: ir.Spec, sz: dict[str, int]) -> tuple[int, int]:
    """(input elements, output elements) per token and head."""
    return (sum(_numel(t.ty.dims, sz) for t in spec.inputs),
            sum(_numel(o.ty.dims, sz) for o in spec.outputs))


def param_elems(spec: ir.Spec, sz: dict[str, int]) -> int:
    """Param elements per head (complex params count twice)."""
    return sum(_numel(t.ty.dims, sz) * (2 if t.ty.complex else 1) for t in spec.params)


def state_elems(spec: ir.Spec, sz: dict[str, int]) -> int:
    """State elements per (batch, head) (complex states count twice: real and imaginary fp32)."""
    return sum(_numel(s.ty.dims, sz) * (2 if s.ty.complex else 1) for s in spec.states)


def lower_bound(spec: ir.Spec, kind: str, B: int, T: int, H: int, sz: dict[str, int]) -> int:
    """The IO lower bound in bytes: every input read once, every output written once.

    fwd / fwd_train: inputs and params read, outputs written (a training forward's checkpoints are the
    kernel's choice, not required IO). bwd: inputs, params and output cotangents read, input and param
    gradients written (no initial state). step: one token's inputs and params read, its output written,
    the state read and written.
    """
    x, y = per_token_elems(spec, sz)
    p = param_elems(spec, sz) * PARAM_BYTES * H
    if kind in ("fwd", "fwd_train"):
        return B * T * H * (x + y) * IO_BYTES + p
    if kind == "bwd":
        return B * T * H * (2 * x + y) * IO_BYTES + 2 * p
    if kind == "step":
        return B * H * ((x + y) * IO_BYTES + 2 * state_elems(spec, sz) * STATE_BYTES) + p
    raise ValueError(kind)


def make_inputs(spec: ir.Spec, B: int, T: int, H: int, sz: dict[str, int], dtype: torch.dtype = IO_DTYPE,
                seed: int = 0, requires_grad: bool = False) -> dict[str, torch.Tensor]:
    """Inputs `[B, T, H, ...]` in `dtype` drawn from the spec's domains, params `[H, ...]` in fp32.

    Uses the test suite's domain-aware generator so that gates are decays, betas lie in (0, 1), keys are
    normalised: the counts do not depend on values, but the wall-clock runs must stay finite.
    """
    from tests.helpers import random_inputs  # the one domain-aware generator of the project

    xs = random_inputs(spec, B, T, H, sz, dtype=torch.float32, seed=seed)
    inputs = {t.name for t in spec.inputs}
    out = {}
    for name, x in xs.items():
        x = x.to(dtype) if name in inputs and not x.is_complex() else x
        out[name] = x.requires_grad_(requires_grad)
    return out


def zero_states(spec: ir.Spec, B: int, H: int, sz: dict[str, int]) -> list[torch.Tensor]:
    return [torch.zeros(B, H, *(sz[d] for d in s.ty.dims), dtype=torch.complex64 if s.ty.complex else torch.float32)
            for s in spec.states]


def all_specs() -> list[str]:
    from recurgen.resources import bundled_spec_names

    return sorted(bundled_spec_names())


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (os.getloadavg): timings here come from a shared machine."""
    import os

    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def git_commit() -> str:
    """The short commit of the working tree the benchmarks run from (uncommitted edits not included)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=False).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def stamp() -> dict[str, Any]:
    """When and at which commit something was measured, and how loaded the machine was."""
    import time

    return {"commit": git_commit(), "uncommitted": uncommitted(), "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "load": load_average()}


def uncommitted() -> list[str]:
    """Files of the generator (recurgen/, templates/, specs/) that differ from the commit: what was measured is
    the working tree, and other work may be under way in it."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--", "recurgen", "templates", "specs"],
                             capture_output=True, text=True, cwd=Path(__file__).parent.parent, check=False).stdout
    except OSError:
        return []
    return sorted(line[3:] for line in out.splitlines() if line.strip())


def environment() -> dict[str, str]:
    """What produced the results: device, versions, commit."""
    import triton

    commit = git_commit()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib import metadata

    try:  # the installed version, without importing fla (it must be imported as on an H100: peers.import_fla)
        fla_version = metadata.version("flash-linear-attention")
    except metadata.PackageNotFoundError:
        fla_version = "not installed"
    return {
        "device": f"CPU only: {cpu}, {torch.get_num_threads()} torch threads (no GPU; kernels run in "
                  "Triton's interpreter)",
        "python": sys.version.split()[0], "torch": torch.__version__, "triton": triton.__version__,
        # which tree was measured (a snapshot on PYTHONPATH is a classic mix-up), without naming this machine's paths
        "recurgen": f"{recurgen.__version__} (git {commit}), imported from "
                    + ("this checkout" if Path(recurgen.__file__).resolve().parent.parent == Path(__file__).resolve()
                       .parent.parent else "another checkout"),
        "flash-linear-attention": fla_version,
    }


def md_table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def si(x: float, unit: str = "") -> str:
    """3 significant digits with an SI prefix: 1.23 G."""
    for p, s in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= p:
            return f"{x / p:.3g} {s}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def env_block(env: dict[str, str]) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in env.items())
