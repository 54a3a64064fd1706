"""fair: recurgen against flash-linear-attention's fair baseline, counted under one set of conditions (issue 15).

    python -m benchmarks.fair                       # count every side of every pair, then write the results
    python -m benchmarks.fair --sides recurgen      # re-count recurgen only (fla's counts are kept), re-render
    python -m benchmarks.fair --specs gla,hgrn --sides fla-smallest
    python -m benchmarks.fair --render              # re-render benchmarks/results/fla.md from the stored counts

Conditions (the same for both libraries, as issue 15 states them): B=8 T=4096 H=16 K=V=128, fp16 inputs, fp32
params, an fp32 initial state in, the final state out (`output_final_state`), a training forward then the
backward from random cotangents of the output and the final state; forward + backward, Triton kernels + torch
glue (`counters.count_torch`). fla is imported with an H100's device properties (`peers.import_fla`) and counted
at both ends of its autotune lists (`peers.POLICIES`): its smallest tiles (the policy issue 15's "done when"
uses) and its largest. Counts are exact at small T and B·H and extrapolated only when exactly affine
(`traffic.measure`); programs per launch are fitted and checked the same way.

Each side's counts are stored in results/data/fair_<side>.json after every spec: sides can be counted in separate
(parallel) processes and re-counted independently.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # counting needs the interpreter, chosen before triton's import

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from . import common, traffic
from .counters import Launch, count, count_torch, first

B, T, H = common.GPU_B, 4096, common.GPU_H
DTYPE = torch.float16
SM_COUNT = 132  # H100 SXM: a launch with fewer programs leaves SMs idle
KINDS = ("fwd_train", "bwd")
# (spec, recurgen mode, fla kernel family, done-when bound on recurgen/fla bytes)
PAIRS: tuple[tuple[str, str, str, float], ...] = (
    ("gla", "chunk", "chunk", 0.8), ("simple_gla", "chunk", "chunk", 0.8),
    ("gated_delta_rule", "chunk", "chunk", 0.8), ("hgrn", "recurrent", "fused_recurrent", 0.8),
    ("gla", "recurrent", "fused_recurrent", 0.8), ("linear_attn", "chunk", "chunk", 1.0),
    ("retention", "chunk", "chunk", 1.0), ("delta_rule", "chunk", "chunk", 1.0), ("kda", "chunk", "chunk", 1.0),
    ("rwkv6", "chunk", "chunk", 1.0), ("rwkv7", "chunk", "chunk", 1.0),
)
SIDES = ("recurgen", "fla-smallest", "fla-largest")
SMALL_T = {"chunk": traffic.CHUNK_T, "recurrent": traffic.SMALL_T}
QUICK_T = {"chunk": traffic.CHUNK_QUICK_T, "recurrent": traffic.QUICK_T}
COMMAND = "python -m benchmarks.fair"

Grids = dict[tuple[int, int, int], dict[str, list[tuple[str, int]]]]


def _pair_key(name: str, mode: str) -> str:
    return f"{name}/{mode}"


def _call(side: str, name: str, mode: str) -> Callable[[dict[str, torch.Tensor], Any], Any]:
    """fn(tensors by recurgen name, initial state) -> (o, final state) for one side."""
    if side == "recurgen":
        import recurgen

        rec = recurgen.load(name)
        return lambda xs, h0: rec(*xs.values(), mode=mode, initial_state=h0, output_final_state=True)
    from . import peers

    table = peers.chunk_adapters() if mode == "chunk" else peers.adapters()
    fn = table[name]
    return lambda xs, h0: fn(xs, h0, True)


def runner(side: str, mode: str, grids: Grids) -> traffic.Runner:
    """A `traffic.Runner` counting one side's training forward and backward; records every launch's grid."""
    import contextlib

    from . import peers

    policy = first if side == "recurgen" else peers.POLICIES[side.split("-", 1)[1]]
    tensors_as_loop_vars = contextlib.nullcontext if side == "recurgen" else peers.loop_vars_as_tensors

    def run(name: str, b: int, t: int, h: int, sz: dict[str, int]) -> dict[str, list[Launch]]:
        import recurgen

        spec = recurgen.load(name).spec
        fn = _call(side, name, mode)
        out: dict[str, list[Launch]] = {}
        xs = common.make_inputs(spec, b, t, h, sz, dtype=DTYPE, requires_grad=True)
        (h0,) = common.zero_states(spec, b, h, sz)
        with tensors_as_loop_vars():
            with count(policy, peers.is_fla) as kernels, count_torch() as glue:
                o, ht = fn(xs, h0)
            out["fwd_train"], out["fwd_train" + traffic.GLUE] = kernels.launches, glue.launches
            gen = torch.Generator().manual_seed(1)
            cots = [torch.randn(x.shape, generator=gen).to(x.dtype) for x in (o, ht)]  # outside the count
            with count(policy, peers.is_fla) as kernels, count_torch() as glue:
                torch.autograd.backward((o, ht), cots)
            out["bwd"], out["bwd" + traffic.GLUE] = kernels.launches, glue.launches
        grids[(b, t, h)] = {k: [(x.kernel, x.programs) for x in v] for k, v in out.items() if k in KINDS}
        return out

    return run


@dataclass(frozen=True)
class LaunchGrid:
    """Programs of one launch: B·H·(a + b·T), checked exactly as the byte counts are."""

    kernel: str
    a: Fraction
    b: Fraction
    exact: bool

    def at(self, b: int, t: int, h: int) -> int:
        return int(b * h * (self.a + self.b * t))


def fit_grids(grids: Grids, ts: tuple[int, ...]) -> dict[str, list[LaunchGrid]]:
    """Per kind, per launch (in launch order): its program count fitted affine in T and proportional to B·H."""
    out: dict[str, list[LaunchGrid]] = {}
    base = grids[(1, ts[0], 1)]
    for kind, launches in base.items():
        rows = []
        for i, (kernel, p0) in enumerate(launches):
            def at(key: tuple[int, int, int], i: int = i, kind: str = kind, kernel: str = kernel) -> int | None:
                seq = grids.get(key, {}).get(kind, [])
                return seq[i][1] if i < len(seq) and seq[i][0] == kernel else None

            p1 = at((1, ts[1], 1))
            slope = Fraction((p1 or 0) - p0, ts[1] - ts[0])
            a = p0 - slope * ts[0]
            exact = (p1 is not None and all(at((1, t, 1)) == a + slope * t for t in ts[2:])
                     and at((1, ts[0], 2)) == 2 * p0 and at((2, ts[0], 1)) == 2 * p0)
            rows.append(LaunchGrid(kernel, a, slope, exact))
        out[kind] = rows
    return out


def measure_side(side: str, name: str, mode: str, quick: bool = False) -> dict[str, Any]:
    """Count one side of one pair: the fits (exact, extrapolated) and the grid of every launch."""
    import recurgen

    sz = common.spec_dims(recurgen.load(name).spec)
    ts = (QUICK_T if quick else SMALL_T)[mode]
    grids: Grids = {}
    t0 = time.perf_counter()
    start = common.stamp()
    fits = traffic.measure(runner(side, mode, grids), name, sz, ts)
    launch_grids = fit_grids(grids, ts)
    return {"fits": traffic.to_json(fits), "dims": sz, "small_T": list(ts),
            "grids": {k: [[g.kernel, [g.a.numerator, g.a.denominator], [g.b.numerator, g.b.denominator], g.exact]
                          for g in v] for k, v in launch_grids.items()},
            "measured": {**start, "seconds": round(time.perf_counter() - t0, 1), "load_end": common.load_average()}}


# --- results ---------------------------------------------------------------------------------------------

def _path(data_dir: Path, side: str) -> Path:
    return data_dir / f"fair_{side}.json"


def load(data_dir: Path, side: str) -> dict[str, Any]:
    p = _path(data_dir, side)
    return json.loads(p.read_text()) if p.exists() else {"pairs": {}, "errors": {}}


def lower_bound(name: str, sz: dict[str, int], kinds: tuple[str, ...] = KINDS) -> int:
    """IO lower bound of a training step with state: inputs, params, cotangents read once; outputs, gradients
    written once (2-byte inputs); plus the initial state read and the final state written (forward) and its
    cotangent read (backward), in fp32."""
    import recurgen

    spec = recurgen.load(name).spec
    state = B * H * common.state_elems(spec, sz) * common.STATE_BYTES
    return sum(common.lower_bound(spec, k, B, T, H, sz) + state * (2 if k == "fwd_train" else 1) for k in kinds)


@dataclass(frozen=True)
class Split:
    """Bytes of one side at the target shape, per pass: (kernels, glue)."""

    fwd: tuple[float, float]
    bwd: tuple[float, float]
    exact: bool

    @property
    def total(self) -> float:
        return sum(self.fwd) + sum(self.bwd)


def split(entry: dict[str, Any]) -> Split:
    fits = traffic.from_json(entry["fits"])

    def by(kind: str) -> float:
        c = fits[kind].at(B, T, H)
        return c["load_bytes"] + c["store_bytes"]

    # the checks list failures in counter order, bytes first: a fit whose evidence names neither byte counter
    # failed on FLOPs only (fla's token-parallel KDA kernel at B·H = 2), its bytes are exact
    exact = all(f.verified or not ("load_bytes" in f.evidence or "store_bytes" in f.evidence) for f in fits.values())
    return Split((by("fwd_train"), by("fwd_train" + traffic.GLUE)), (by("bwd"), by("bwd" + traffic.GLUE)), exact)


def programs(entry: dict[str, Any]) -> dict[str, list[tuple[str, int, bool]]]:
    """Per pass: (kernel, programs at the target shape, exactly fitted) for every launch, in launch order."""
    def frac(x: list[int]) -> Fraction:
        return Fraction(x[0], x[1])

    return {k: [(kernel, LaunchGrid(kernel, frac(a), frac(b), exact).at(B, T, H), exact)
                for kernel, a, b, exact in entry["grids"][k]] for k in KINDS if k in entry["grids"]}


def _gb(x: float) -> str:
    return f"{x / 1e9:.2f}"


def _r(x: float, y: float) -> str:
    return f"{x / y:.2f}" if y else "–"


def ratios(data: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per pair: recurgen/fla bytes under each fla policy, recurgen/LB, glue shares (for the summary table)."""
    out: dict[str, dict[str, float]] = {}
    for name, mode, _, bound in PAIRS:
        key = _pair_key(name, mode)
        entries = {s: data[s]["pairs"].get(key) for s in SIDES}
        if entries["recurgen"] is None:
            continue
        rg = split(entries["recurgen"])
        row = {"recurgen": rg.total, "lb": float(lower_bound(name, entries["recurgen"]["dims"])), "bound": bound,
               "glue_fwd": rg.fwd[1] / sum(rg.fwd), "glue_bwd": rg.bwd[1] / sum(rg.bwd)}
        for s in SIDES[1:]:
            if entries[s] is not None:
                row[s] = split(entries[s]).total
        out[key] = row
    return out


def _same_generator(commits: list[str]) -> str:
    """Whether the code that generates the kernels (recurgen/, templates/, specs/) is the same at these commits."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    differ = [c for c in commits[1:] if subprocess.run(
        ["git", "diff", "--quiet", commits[0], c, "--", "recurgen", "templates", "specs"], cwd=root,
        capture_output=True, check=False).returncode != 0]
    if not commits:
        return ""
    if differ:
        return "recurgen's generator (recurgen/, templates/, specs/) differs between its commits."
    return "recurgen's generator (recurgen/, templates/, specs/) is the same at all of its commits."


def render(data_dir: Path, out: Path) -> Path:
    """Write results/fla.md from the stored counts of every side."""
    data = {s: load(data_dir, s) for s in SIDES}
    env = next((d["environment"] for d in data.values() if "environment" in d), common.environment())
    rows, split_rows, prog_rows = [], [], []
    for name, mode, family, bound in PAIRS:
        key = _pair_key(name, mode)
        entries = {s: data[s]["pairs"].get(key) for s in SIDES}
        splits = {s: split(e) for s, e in entries.items() if e is not None}
        errs = {s: data[s]["errors"][key] for s in SIDES if key in data[s].get("errors", {})}
        label = f"`{name}`", f"{mode} vs fla {family}"
        if "recurgen" in splits:
            lb = lower_bound(name, entries["recurgen"]["dims"])
            rg = splits["recurgen"].total
            small, large = (splits[s].total if s in splits else None for s in SIDES[1:])
            met = "–" if small is None else ("yes" if rg / small <= bound else "**no**")
            rows.append([*label, _gb(rg), _gb(small) if small else "–", _gb(large) if large else "–",
                         _r(rg, small) if small else "–", _r(rg, large) if large else "–", f"{bound:.1f}", met,
                         _r(rg, lb), _r(small, lb) if small else "–",
                         "yes" if all(s.exact for s in splits.values()) else "**no**"])
        for s, sp in splits.items():
            lbs = [lower_bound(name, entries[s]["dims"], (k,)) for k in KINDS]
            split_rows.append([*label, s, _gb(sp.fwd[0]), _gb(sp.fwd[1]), f"{sp.fwd[1] / sum(sp.fwd):.1%}",
                               _r(sum(sp.fwd), lbs[0]), _gb(sp.bwd[0]), _gb(sp.bwd[1]),
                               f"{sp.bwd[1] / sum(sp.bwd):.1%}", _r(sum(sp.bwd), lbs[1])])
        for s in ("recurgen", "fla-smallest"):
            if entries[s] is None:
                continue
            for kind, launches in programs(entries[s]).items():
                for i, (kernel, p, exact) in enumerate(launches):
                    flag = f"**{p:,} < {SM_COUNT}**" if p < SM_COUNT else f"{p:,}"
                    prog_rows.append([*label, s, kind, i + 1, f"`{kernel}`", flag + ("" if exact else " (not affine)")])
        for s, e in errs.items():
            split_rows.append([*label, s, f"not counted: {e}", *[""] * 7])
    stamps = {s: sorted({e["measured"]["commit"] for e in data[s]["pairs"].values()}) for s in SIDES}
    md = ["# recurgen against flash-linear-attention: the fair baseline (issue 15)", "",
          f"Generated by `{COMMAND}` (see `{COMMAND} --help`); do not edit by hand. Counted, not modelled: exact "
          "global-memory traffic from Triton's interpreter (`benchmarks.counters`), extrapolated from small shapes.",
          "", "## Conditions", "",
          f"- shape: B={B}, T={T}, H={H}, K=V=128 (every free dim 128), fp16 inputs, fp32 params, fp32 initial state "
          "in, final state out (`output_final_state=True`); a training forward, then the backward from random "
          "cotangents of the output and the final state. Both libraries under the same conditions.",
          "- counted: forward + backward, Triton kernels (`count`) + torch glue (`count_torch`: every aten op around "
          "and between the launches, its distinct tensor inputs read and outputs written).",
          "- extrapolation: counted at B=H=1 for three T (chunk: 64, 128, 192; recurrent: 16, 32, 48) and at "
          "B·H=2; every count must be exactly affine in T and proportional to B·H (glue: plus a per-head term) "
          "before it is extrapolated (`traffic.measure`; column *exact*: every byte count passed).",
          "- fla: imported with an H100's device properties (`peers.import_fla`: 232448 B shared memory, 132 SMs, "
          "sm_90, TF32), so it takes the tile lists it takes on that GPU; fla's view of the device: "
          + ", ".join(f"{k} {v}" for k, v in data["fla-smallest"].get("device_seen", {}).items()) + ". Its autotuner "
          "picks by timing, which the interpreter cannot do: counted with its smallest tiles (*fla small*, the "
          "policy issue 15's \"done when\" uses) and its largest (*fla large*) — a GPU run falls in between. "
          "fla's TileLang/FlashQLA backends need packages not installed: these are its Triton kernels. "
          "hgrn and gla recurrent are compared with fla's `fused_recurrent_*`, the rest with its `chunk_*`.",
          "- IO lower bound (LB): every input, param and cotangent read once, every output and gradient written "
          "once (2 bytes per element; params 4), plus the fp32 initial state read, final state written and its "
          "cotangent read.",
          "- counted at: " + "; ".join(f"{s} git {', '.join(c) or '–'}" for s, c in stamps.items()) + ". "
          + _same_generator(stamps["recurgen"]) + " (fla's counts do not depend on it.)",
          "", "## Environment", "", common.env_block(env), "",
          f"## Forward + backward bytes at B={B} T={T} H={H} K=V=128", "",
          "*bound*: issue 15's \"done when\" bound on recurgen / fla small; *met*: recurgen / fla small within it.",
          "", common.md_table(["spec", "mode", "recurgen GB", "fla small GB", "fla large GB", "recurgen / fla small",
                               "recurgen / fla large", "bound", "met", "recurgen / LB", "fla small / LB", "exact"],
                              rows), "",
          "## Kernels and glue per call", "",
          "GB per call at the target shape; *glue %*: the glue's share of that call's bytes (issue 15: under 5% "
          "for every chunk-mode call); *fwd / LB*, *bwd / LB*: the call's bytes over its own IO lower bound "
          "(issue 15: every recurrent backward within 4x).", "",
          common.md_table(["spec", "mode", "side", "fwd kernels GB", "fwd glue GB", "fwd glue %", "fwd / LB",
                           "bwd kernels GB", "bwd glue GB", "bwd glue %", "bwd / LB"], split_rows), "",
          f"## Programs per launch at B={B} T={T} H={H} K=V=128", "",
          f"Every launch of the training forward and the backward, in launch order (one stream: each is on the "
          f"critical path). Programs = grid size, fitted from the counted grids like the bytes; flagged when fewer "
          f"than {SM_COUNT} (an H100's SMs: some SMs idle for the whole launch). fla with its smallest tiles.", "",
          common.md_table(["spec", "mode", "side", "pass", "#", "kernel", "programs"], prog_rows), ""]
    path = out / "fla.md"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(md))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=COMMAND, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated subset of {', '.join(SIDES)}")
    ap.add_argument("--specs", default=None, help="comma-separated spec names (default: every pair)")
    ap.add_argument("--modes", default="chunk,recurrent", help="comma-separated subset of chunk, recurrent")
    ap.add_argument("--quick", action="store_true", help="two lengths only, unchecked in T (a smoke run: give --out)")
    ap.add_argument("--render", action="store_true", help="only re-render results/fla.md from the stored counts")
    ap.add_argument("--out", type=Path, default=common.RESULTS, help="results directory")
    args = ap.parse_args(argv)
    sides = [s for s in args.sides.split(",") if s]
    if set(sides) - set(SIDES):
        ap.error(f"unknown side(s) in {args.sides!r}")
    data_dir = args.out / "data"
    if not args.render:
        from . import peers

        specs = set(args.specs.split(",")) if args.specs else None
        modes = set(args.modes.split(","))
        if any(s != "recurgen" for s in sides):
            ok, why = peers.available()
            if not ok:
                print(f"fla not available ({why}): counting recurgen only", file=sys.stderr)
                sides = [s for s in sides if s == "recurgen"]
        for side in sides:
            for name, mode, _, _ in PAIRS:
                if (specs and name not in specs) or mode not in modes:
                    continue
                key = _pair_key(name, mode)
                t0 = time.perf_counter()
                try:
                    entry, error = measure_side(side, name, mode, args.quick), None
                except Exception as e:  # one pair failing must not lose the others: reported in the results
                    entry, error = None, f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                    traceback.print_exc()
                print(f"[{time.strftime('%H:%M:%S')}] {side} {key}: {time.perf_counter() - t0:.0f} s", flush=True)
                # re-read before saving: another process may be counting other pairs of this side
                stored = load(data_dir, side)
                if side != "recurgen":
                    stored["device_seen"] = peers.device_seen()
                stored["environment"] = common.environment()
                if entry is not None:
                    stored["pairs"][key] = entry
                    stored["errors"].pop(key, None)
                else:
                    stored["errors"][key] = error
                data_dir.mkdir(parents=True, exist_ok=True)
                _path(data_dir, side).write_text(json.dumps(stored, indent=1, sort_keys=True))
    print(render(data_dir, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
