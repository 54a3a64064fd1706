"""traffic: counted bytes and FLOPs per spec and kernel, measured small, verified linear, extrapolated.

The interpreter cannot run B=8, T=8192, H=16, K=V=128 (hours per launch). The counts are exactly affine
in T (at multiples of the checkpoint interval, 16) and exactly proportional to the number of programs
(B·H·tiles: every program does the same work). So each kernel is counted at B=H=1 and three sequence
lengths, and at B·H = 2 (B=1, H=2 and B=2, H=1): the affine fit from the first two lengths must predict
the third exactly, and doubling B or H must double every count exactly. Only then is the fit
extrapolated; a kernel whose counts fail the check is reported as such and not extrapolated.

Kernel modes are entries of `MODES`: a mode is a function that runs one spec's kernels at a given shape
and returns the counted launches per kernel kind. Chunk mode is declared but not generated yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch

import recurgen

from . import common
from .counters import Launch, count

KINDS = ("fwd", "fwd_train", "bwd", "step")
COUNTERS = ("load_bytes", "store_bytes", "flops", "dot_flops", "sfu", "launches")
SMALL_T = (16, 32, 48)  # multiples of CHECKPOINT_EVERY: the checkpoint count is then affine in T
QUICK_T = (16, 32)

Counts = dict[str, int]
Runner = Callable[[str, int, int, int, dict[str, int]], dict[str, list[Launch]]]


def _sum(launches: list[Launch]) -> Counts:
    return {"load_bytes": sum(x.load_bytes for x in launches), "store_bytes": sum(x.store_bytes for x in launches),
            "flops": sum(x.flops for x in launches), "dot_flops": sum(x.dot_flops for x in launches),
            "sfu": sum(x.sfu for x in launches), "launches": len(launches)}


def _loss(out: Any) -> torch.Tensor:
    # a fixed cotangent per output: ones (values do not change the traffic)
    outs = out if isinstance(out, tuple) else (out,)
    return sum((o.float().sum() for o in outs), torch.zeros(()))


# --- recurgen, fused recurrent mode ------------------------------------------------------------------

def run_recurgen_recurrent(name: str, B: int, T: int, H: int, sz: dict[str, int]) -> dict[str, list[Launch]]:
    """Run fwd (inference), fwd+bwd (training) and step of one bundled spec, counting every launch."""
    rec = recurgen.load(name)
    spec = rec.spec
    out: dict[str, list[Launch]] = {}
    xs = common.make_inputs(spec, B, T, H, sz)
    with torch.no_grad(), count() as tally:
        rec(*xs.values(), mode="recurrent")
    out["fwd"] = tally.launches
    xs = common.make_inputs(spec, B, T, H, sz, requires_grad=True)
    with count() as tally:
        o, _ = rec(*xs.values(), mode="recurrent")
    out["fwd_train"] = tally.launches
    with count() as tally:
        _loss(o).backward()
    out["bwd"] = tally.launches
    xs1 = common.make_inputs(spec, B, 1, H, sz)
    inputs = {t.name for t in spec.inputs}
    args = [x[:, 0] if n in inputs else x for n, x in xs1.items()]
    states = common.zero_states(spec, B, H, sz)
    with count() as tally:
        rec.step(*args, state=states[0] if len(states) == 1 else states)
    out["step"] = tally.launches
    return out


@dataclass(frozen=True)
class Mode:
    """A kernel family: how to run it, or why it cannot run yet."""

    name: str
    run: Runner | None
    note: str = ""


# A new mode (chunk) is one entry here once its kernels are generated.
MODES: dict[str, Mode] = {
    "recurrent": Mode("recurrent", run_recurgen_recurrent),
    "chunk": Mode("chunk", None, "not generated yet by recurgen (mode='chunk' raises); nothing to count"),
}


# --- measuring and extrapolating ---------------------------------------------------------------------

@dataclass
class Fit:
    """Per kernel kind: count(B, T, H) = B·H·(a + b·T), exact, with the evidence."""

    kind: str
    a: dict[str, Fraction] = field(default_factory=dict)
    b: dict[str, Fraction] = field(default_factory=dict)
    verified: bool = False
    evidence: str = ""
    kernels: tuple[str, ...] = ()
    programs: int = 0  # programs per (batch, head): the largest grid of the kind's launches at B=H=1

    def at(self, B: int, T: int, H: int) -> dict[str, float]:
        # launches do not scale with B·H (one grid covers them); everything else is per program
        return {c: float((1 if c == "launches" else B * H) * (self.a[c] + self.b[c] * T)) for c in self.a}


def measure(run: Runner, name: str, sz: dict[str, int], ts: tuple[int, ...] = SMALL_T) -> dict[str, Fit]:
    """Count `run` at small shapes and fit count = B·H·(a + b·T) per kernel kind, verified exactly."""
    by_t = {T: run(name, 1, T, 1, sz) for T in ts}
    h2 = run(name, 1, ts[0], 2, sz)
    b2 = run(name, 2, ts[0], 1, sz)
    fits = {}
    for kind in by_t[ts[0]]:
        c = {T: _sum(by_t[T][kind]) for T in ts}
        t0, t1 = ts[0], ts[1]
        fit = Fit(kind, kernels=tuple(sorted({x.kernel for x in by_t[t0][kind]})),
                  programs=max((x.programs for x in by_t[t0][kind]), default=0))
        problems = []
        for key in COUNTERS:
            if key == "launches":
                fit.a[key], fit.b[key] = Fraction(c[t0][key]), Fraction(0)  # launches do not scale with B·H
                continue
            slope = Fraction(c[t1][key] - c[t0][key], t1 - t0)
            if kind == "step":
                slope = Fraction(0)  # one token by definition
            fit.b[key], fit.a[key] = slope, c[t0][key] - slope * t0
            for T in ts[2:]:
                if c[T][key] != fit.a[key] + slope * T:
                    problems.append(f"{key} not affine in T (T={T}: {c[T][key]} vs {fit.a[key] + slope * T})")
            for label, other in (("H=2", h2), ("B=2", b2)):
                got = _sum(other[kind])[key]
                if got != 2 * c[t0][key]:
                    problems.append(f"{key} at {label}: {got} != 2 x {c[t0][key]}")
        fit.verified = not problems
        checks = f"T={', '.join(map(str, ts))} at B=H=1; B·H=2 as (1,2) and (2,1) at T={t0}"
        fit.evidence = ("exact: " + checks) if fit.verified else "NOT linear: " + "; ".join(problems[:3])
        fits[kind] = fit
    return fits


def to_json(fits: dict[str, Fit]) -> dict[str, Any]:
    """Exact fractions as [numerator, denominator]: the JSON keeps the fit exact."""
    return {k: {"a": {c: [v.numerator, v.denominator] for c, v in f.a.items()},
                "b": {c: [v.numerator, v.denominator] for c, v in f.b.items()},
                "verified": f.verified, "evidence": f.evidence, "kernels": list(f.kernels), "programs": f.programs}
            for k, f in fits.items()}


def from_json(data: dict[str, Any]) -> dict[str, Fit]:
    return {k: Fit(k, {c: Fraction(*v) for c, v in d["a"].items()}, {c: Fraction(*v) for c, v in d["b"].items()},
                   d["verified"], d["evidence"], tuple(d["kernels"]), d["programs"]) for k, d in data.items()}


def lower_bounds(name: str, B: int, T: int, H: int, sz: dict[str, int]) -> dict[str, int]:
    spec = recurgen.load(name).spec
    return {kind: common.lower_bound(spec, kind, B, 1 if kind == "step" else T, H, sz) for kind in KINDS}
