"""traffic: counted bytes and FLOPs per spec and kernel, measured small, verified linear, extrapolated.

The interpreter cannot run B=8, T=8192, H=16, K=V=128 (hours per launch). The counts are exactly affine
in T (at multiples of the checkpoint interval, 16) and exactly proportional to the number of programs
(B·H·tiles: every program does the same work). So each kernel is counted at B=H=1 and three sequence
lengths, and at B·H = 2 (B=1, H=2 and B=2, H=1): the affine fit from the first two lengths must predict
the third exactly, and doubling B or H must double every count exactly. Only then is the fit
extrapolated; a kernel whose counts fail the check is reported as such and not extrapolated.

Kernel modes are entries of `MODES`: a mode is a function that runs one spec's kernels at a given shape
and returns the counted launches per kernel kind. Chunk mode is counted at multiples of its chunk size
(64 tokens), where its counts are affine in T.

Besides the Triton launches, each kind `k` has a kind `k:glue`: the torch ops around the launches
(`counters.count_torch`), one record per op. In chunk mode that is the spec's prepare/readout formulas
and the layout changes; in both modes the casts, allocations and partial-gradient sums of the kernel
wrappers. Glue reads each param once per call (not once per program), and a kernel that sums per-program
partial parameter gradients writes each param's gradient once per call, so every fit has a per-head term:
count = B·H·(a + b·T) + H·h, checked by doubling H exactly (B=2 then determines h).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch

import recurgen

from . import common
from .counters import Choose, Launch, count, count_torch, first

KINDS = ("fwd", "fwd_train", "bwd", "step")
GLUE = ":glue"  # suffix of the kind that holds the torch ops of a kernel kind
COUNTERS = ("load_bytes", "store_bytes", "flops", "dot_flops", "sfu", "launches")
SMALL_T = (16, 32, 48)  # multiples of CHECKPOINT_EVERY: the checkpoint count is then affine in T
QUICK_T = (16, 32)
CHUNK_T = (64, 128, 192)  # multiples of the chunk size: one, two and three chunks
CHUNK_QUICK_T = (64, 128)

Counts = dict[str, int]
Runner = Callable[[str, int, int, int, dict[str, int]], dict[str, list[Launch]]]


def _sum(launches: list[Launch]) -> Counts:
    return {"load_bytes": sum(x.load_bytes for x in launches), "store_bytes": sum(x.store_bytes for x in launches),
            "flops": sum(x.flops for x in launches), "dot_flops": sum(x.dot_flops for x in launches),
            "sfu": sum(x.sfu for x in launches), "launches": len(launches)}


def cotangents(out: Any) -> list[torch.Tensor]:
    # a fixed cotangent per output, made outside the counted block (a loss would add its own torch ops)
    outs = out if isinstance(out, tuple) else (out,)
    return [torch.ones_like(o) for o in outs]


@contextlib.contextmanager
def counting(into: dict[str, list[Launch]], kind: str, choose: Choose = first,
             chooses: Callable[[Any], bool] = lambda fn: True) -> Iterator[None]:
    """Count one kind: its Triton launches into `into[kind]`, its torch glue into `into[kind + GLUE]`
    (`choose`: which config an autotuned kernel for which `chooses` is true runs, see `counters.count`)."""
    with count(choose, chooses) as kernels, count_torch() as glue:
        yield
    into[kind] = kernels.launches
    into[kind + GLUE] = glue.launches


# --- recurgen: fused recurrent and chunk modes ----------------------------------------------------------

def _run_recurgen(name: str, B: int, T: int, H: int, sz: dict[str, int], mode: str) -> dict[str, list[Launch]]:
    """Run fwd (inference), fwd+bwd (training) and, in recurrent mode, step; count every launch and op."""
    rec = recurgen.load(name)
    spec = rec.spec
    out: dict[str, list[Launch]] = {}
    xs = common.make_inputs(spec, B, T, H, sz)
    with torch.no_grad(), counting(out, "fwd"):
        rec(*xs.values(), mode=mode)
    xs = common.make_inputs(spec, B, T, H, sz, requires_grad=True)
    with counting(out, "fwd_train"):
        o, _ = rec(*xs.values(), mode=mode)
    outs = o if isinstance(o, tuple) else (o,)
    grads = cotangents(o)
    with counting(out, "bwd"):
        torch.autograd.backward(outs, grads)
    if mode != "recurrent":
        return out  # decoding is one token: the same step kernel whatever the mode
    xs1 = common.make_inputs(spec, B, 1, H, sz)
    inputs = {t.name for t in spec.inputs}
    args = [x[:, 0] if n in inputs else x for n, x in xs1.items()]
    states = common.zero_states(spec, B, H, sz)
    with counting(out, "step"):
        rec.step(*args, state=states[0] if len(states) == 1 else states)
    return out


def run_recurgen_recurrent(name: str, B: int, T: int, H: int, sz: dict[str, int]) -> dict[str, list[Launch]]:
    """The fused recurrent kernels: fwd, fwd+bwd and the decode step."""
    return _run_recurgen(name, B, T, H, sz, "recurrent")


def run_recurgen_chunk(name: str, B: int, T: int, H: int, sz: dict[str, int]) -> dict[str, list[Launch]]:
    """The chunked-parallel kernels (T a multiple of the chunk size) and the torch code around them."""
    return _run_recurgen(name, B, T, H, sz, "chunk")


def chunk_reason(name: str) -> str | None:
    """Why a spec has no chunk form (None: it has one)."""
    return recurgen.load(name).chunk_reason


@dataclass(frozen=True)
class Mode:
    """A kernel family: how to run it, at which small lengths its counts are affine in T."""

    name: str
    run: Runner | None
    note: str = ""
    small_t: tuple[int, ...] = SMALL_T
    quick_t: tuple[int, ...] = QUICK_T


MODES: dict[str, Mode] = {
    "recurrent": Mode("recurrent", run_recurgen_recurrent),
    "chunk": Mode("chunk", run_recurgen_chunk, small_t=CHUNK_T, quick_t=CHUNK_QUICK_T),
}


# --- measuring and extrapolating ---------------------------------------------------------------------

@dataclass
class Fit:
    """Per kernel kind: count(B, T, H) = B·H·(a + b·T) + H·h, exact, with the evidence.

    h (per head, independent of B and T) is zero for kernels, whose every program does the same work;
    torch glue reads a param once per call, not once per batch element.
    """

    kind: str
    a: dict[str, Fraction] = field(default_factory=dict)
    b: dict[str, Fraction] = field(default_factory=dict)
    verified: bool = False
    evidence: str = ""
    kernels: tuple[str, ...] = ()
    programs: int = 0  # programs per (batch, head): the largest grid of the kind's launches at B=H=1
    h: dict[str, Fraction] = field(default_factory=dict)

    def at(self, B: int, T: int, H: int) -> dict[str, float]:
        # launches do not scale with B·H (one grid covers them); everything else is per program
        return {c: float((1 if c == "launches" else B * H) * (self.a[c] + self.b[c] * T)
                         + H * self.h.get(c, 0)) for c in self.a}


def _fit_counter(fit: Fit, key: str, c: dict[int, Counts], h2: Counts, b2: Counts, ts: tuple[int, ...]
                 ) -> list[str]:
    """Fit one counter of one kind into `fit`; return the checks that failed."""
    t0, t1 = ts[0], ts[1]
    base = c[t0][key]
    if key == "launches":
        fit.a[key], fit.b[key] = Fraction(base), Fraction(0)  # launches do not scale with B·H
        return []
    slope = Fraction(0) if fit.kind.startswith("step") else Fraction(c[t1][key] - base, t1 - t0)  # one token
    per_head = Fraction(2 * base - b2[key])  # params: read or written once per call, not per (batch, head)
    fit.b[key], fit.h[key] = slope, per_head
    fit.a[key] = base - per_head - slope * t0
    problems = []
    for T in ts[2:]:
        if c[T][key] != base + slope * (T - t0):
            problems.append(f"{key} not affine in T (T={T}: {c[T][key]} vs {base + slope * (T - t0)})")
    if h2[key] != 2 * base:
        problems.append(f"{key} at H=2: {h2[key]} != 2 x {base}")
    return problems


def measure(run: Runner, name: str, sz: dict[str, int], ts: tuple[int, ...] = SMALL_T) -> dict[str, Fit]:
    """Count `run` at small shapes and fit count = B·H·(a + b·T) + H·h per kind, verified exactly."""
    by_t = {T: run(name, 1, T, 1, sz) for T in ts}
    h2 = run(name, 1, ts[0], 2, sz)
    b2 = run(name, 2, ts[0], 1, sz)
    fits = {}
    for kind in by_t[ts[0]]:
        c = {T: _sum(by_t[T][kind]) for T in ts}
        fit = Fit(kind, kernels=tuple(sorted({x.kernel for x in by_t[ts[0]][kind]})),
                  programs=max((x.programs for x in by_t[ts[0]][kind]), default=0))
        problems = [p for key in COUNTERS for p in _fit_counter(fit, key, c, _sum(h2[kind]), _sum(b2[kind]), ts)]
        fit.verified = not problems
        checks = f"T={', '.join(map(str, ts))} at B=H=1; B·H=2 as (1,2) and (2,1) at T={ts[0]}"
        fit.evidence = ("exact: " + checks) if fit.verified else "NOT linear: " + "; ".join(problems[:3])
        fits[kind] = fit
    return fits


# --- chunk mode of the scan family: counted with one state dim small, then scaled ---------------------------

# The scan-family chunk kernels (`templates/chunk/scan.py.jinja`) run a blocked `tl.associative_scan` over
# every element of a [P, Q] state per token: at P = Q = 128 the interpreter needs hours per spec. At Q = 128
# the register budget gives each program BP = 1 state row of the full Q (the backward's recomputing forward,
# with its shorter blocks, BP = 2), at any P: every program does the same work, so the kernels' counts are
# exactly proportional to P for even P (bytes for any P; FLOPs are counted on whole tiles, masked rows
# included, so an odd P would add half a BP = 2 tile); the torch glue (the spec's formulas for a, b, c and the
# readout) is affine in P. These specs are therefore counted with P (the state dim the readout does not
# contract) at 2 and 4, at T = 16, 32, 48 (a scan block is 16 tokens or fewer at Q = 128, and the scan family
# pads nothing to a chunk: the counts are affine in T at multiples of 16), fitted affine in P, checked exactly
# at P = 6, and extrapolated to P = 128. P = 1 is avoided: torch skips copies of tensors with a size-1 dim
# (`.contiguous()` can be free), so its glue is not generic.
REDUCED_DIM = {"gateloop": "V", "longhorn": "D", "mamba": "E", "s4d": "D"}
REDUCED_T = (16, 32, 48)
REDUCED_AT = (2, 4, 6)  # fitted at the first two values, checked at the third


def reduced_dim(run: Runner, name: str) -> str | None:
    """The dim a spec is counted small in (and scaled along), or None: counted at full size."""
    return REDUCED_DIM.get(name) if run is run_recurgen_chunk else None


def _fit_at(run: Runner, name: str, sz: dict[str, int], ts: tuple[int, ...]) -> dict[str, Fit]:
    """Unverified fit from B=H=1 at two lengths and B=2 (for glue's per-head term): the P-slope's second point."""
    by_t = {T: run(name, 1, T, 1, sz) for T in ts[:2]}
    b2 = run(name, 2, ts[0], 1, sz)
    fits = {}
    for kind in by_t[ts[0]]:
        c = {T: _sum(by_t[T][kind]) for T in ts[:2]}
        fit = Fit(kind, programs=max((x.programs for x in by_t[ts[0]][kind]), default=0))
        base = _sum(by_t[ts[0]][kind])
        for key in COUNTERS:  # same formulas as _fit_counter; the checks are made at full size of the fit below
            _fit_counter(fit, key, c, {k: 2 * v for k, v in base.items()}, _sum(b2[kind]), ts[:2])
        fits[kind] = fit
    return fits


def measure_reduced(run: Runner, name: str, sz: dict[str, int], dim: str,
                    ts: tuple[int, ...] = REDUCED_T, at: tuple[int, ...] = REDUCED_AT
                    ) -> tuple[dict[str, Fit], str]:
    """Fit at `dim` = at[0] (verified in T and B·H as `measure` does) and at[1], affine in `dim`; check at at[2]
    (B=H=1, T=ts[1]) exactly; extrapolate to sz[dim]. Returns the fits and a sentence saying how."""
    p0, p1, p2 = at
    full = sz[dim]
    f0 = measure(run, name, {**sz, dim: p0}, ts)
    f1 = _fit_at(run, name, {**sz, dim: p1}, ts)
    check = run(name, 1, ts[1], 1, {**sz, dim: p2})
    if set(f0) != set(f1) or set(f0) != set(check):
        raise ValueError(f"{name}: kernel kinds differ between {dim}={p0}, {p1}, {p2}")

    def affine(x0: Fraction, x1: Fraction, p: int) -> Fraction:
        return x0 + (x1 - x0) * Fraction(p - p0, p1 - p0)

    out = {}
    for kind, g0 in f0.items():
        g1 = f1[kind]
        problems = []

        def scaled(p: int, g0: Fit = g0, g1: Fit = g1, kind: str = kind) -> Fit:
            return Fit(kind, {c: affine(g0.a[c], g1.a[c], p) for c in g0.a},
                       {c: affine(g0.b[c], g1.b[c], p) for c in g0.b}, g0.verified, g0.evidence, g0.kernels,
                       int(affine(Fraction(g0.programs), Fraction(g1.programs), p)),
                       {c: affine(g0.h.get(c, Fraction(0)), g1.h.get(c, Fraction(0)), p) for c in g0.a})

        predicted = scaled(p2).at(1, ts[1], 1)
        got = _sum(check[kind])
        problems = [f"{c} at {dim}={p2}: {got[c]} vs {predicted[c]:g}" for c in COUNTERS if got[c] != predicted[c]]
        fit = scaled(full)
        fit.verified = g0.verified and not problems
        how = (f"counted at {dim} = {p0}, {p1}; affine in {dim} checked exactly at {dim} = {p2} (T = {ts[1]}); "
               f"extrapolated to {dim} = {full}")
        fit.evidence = (g0.evidence + "; " + how) if fit.verified else (
            "NOT linear: " + "; ".join(problems[:3] or [g0.evidence]))
        out[kind] = fit
    return out, (f"{dim} = {p0}, {p1} (checked at {p2}), T = {', '.join(map(str, ts))}: scaled to {dim} = {full} "
                 f"by its measured per-row counts")


def to_json(fits: dict[str, Fit]) -> dict[str, Any]:
    """Exact fractions as [numerator, denominator]: the JSON keeps the fit exact."""
    def frac(d: dict[str, Fraction]) -> dict[str, list[int]]:
        return {c: [v.numerator, v.denominator] for c, v in d.items()}

    return {k: {"a": frac(f.a), "b": frac(f.b), "h": frac(f.h), "verified": f.verified, "evidence": f.evidence,
                "kernels": list(f.kernels), "programs": f.programs}
            for k, f in fits.items()}


def from_json(data: dict[str, Any]) -> dict[str, Fit]:
    def frac(d: dict[str, list[int]]) -> dict[str, Fraction]:
        return {c: Fraction(*v) for c, v in d.items()}

    return {k: Fit(k, frac(d["a"]), frac(d["b"]), d["verified"], d["evidence"], tuple(d["kernels"]), d["programs"],
                   frac(d.get("h", {}))) for k, d in data.items()}


def lower_bounds(name: str, B: int, T: int, H: int, sz: dict[str, int]) -> dict[str, int]:
    spec = recurgen.load(name).spec
    return {kind: common.lower_bound(spec, kind, B, 1 if kind == "step" else T, H, sz) for kind in KINDS}
