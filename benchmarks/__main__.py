"""`python -m benchmarks`: measure, then write every table and plot under benchmarks/results/.

    python -m benchmarks                      # everything (hours on 2 shared cores; traffic dominates)
    python -m benchmarks --quick              # fewer specs and sizes: a smoke run of every part
    python -m benchmarks --parts traffic,fla,report --specs gla   # re-measure one spec, re-render
    python -m benchmarks --parts report       # re-render tables and plots from the stored data
    python -m benchmarks --parts traffic,fla --modes chunk --specs gla   # one mode only (recurrent, chunk)

Each measuring part stores its raw data in results/data/<part>.json (traffic and fla: saved after every spec,
and specs and modes not re-measured keep their stored counts); the report is rendered from whatever data is there,
so parts can be re-run independently. Every traffic/scaling spec records the commit, time, run time and load
average it was counted at; wallclock and compile record the load average at their start and end (the machine
these ran on is shared: timings are reported with it and never asserted).

Chunk mode of the scan-family specs with a matrix state (gateloop, longhorn, mamba, s4d; `traffic.REDUCED_DIM`)
is counted with the state's uncontracted dim small and T short, fitted affine in that dim, checked exactly at a
third size and scaled to 128 (`traffic.measure_reduced`): interpreting their 128 x 128 scan takes hours.
"""

from __future__ import annotations

import os

# Counting needs Triton's interpreter, which must be chosen before triton is first imported.
os.environ.setdefault("TRITON_INTERPRET", "1")

import argparse
import json
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from . import common

PARTS = ("traffic", "fla", "wallclock", "compile", "scaling", "report")
QUICK_SPECS = ("gla", "delta_rule", "hgrn")
PLOT_SPECS = ("gla", "gated_delta_rule", "mamba2")  # the three specs of the traffic-vs-T plot (chunk vs recurrent)
SCALING_SPECS = ("gla", "delta_rule")
FLA_SPECS = ("gla", "simple_gla", "retention", "linear_attn", "delta_rule", "gated_delta_rule", "hgrn", "rwkv6")
SCALING_KV = common.SCALING_KV


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _stored(data_dir: Path, part: str) -> dict[str, Any]:
    path = data_dir / f"{part}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save(data_dir: Path, part: str, data: Any) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / f"{part}.json").write_text(json.dumps(data, indent=1, sort_keys=True))


def _measure_all(runner: Any, specs: list[str], ts: tuple[int, ...], dims: Any,
                 progress: Any = None, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    from . import traffic

    out: dict[str, Any] = {"fits": {}, "errors": {}, "dims": {}, "measured": {}, "scaled": {}, "small_T": list(ts)}
    if previous and previous.get("small_T") == list(ts):
        # keep what an earlier run measured for the specs this run does not re-measure
        for key in ("fits", "errors", "dims", "measured", "scaled"):
            out[key] = {n: v for n, v in previous.get(key, {}).items() if n not in specs}
    # the models fla also has first: on a busy machine the comparison is the most useful partial result
    for name in sorted(specs, key=lambda n: (n not in PLOT_SPECS, n not in FLA_SPECS, n)):
        sz = dims(name)
        t0 = time.perf_counter()
        start = common.stamp()
        try:
            reduced = traffic.reduced_dim(runner, name)
            if reduced is None:
                fits = traffic.measure(runner, name, sz, ts)
            else:  # too slow at full size: counted with one dim small and T short, then scaled (verified)
                fits, how = traffic.measure_reduced(runner, name, sz, reduced)
                out["scaled"][name] = how
            out["fits"][name] = traffic.to_json(fits)
            out["dims"][name] = sz
            out["measured"][name] = {**start, "seconds": round(time.perf_counter() - t0, 1),
                                     "load_end": common.load_average()}
        except Exception as e:  # one spec failing must not lose the others: recorded in the report
            out["errors"][name] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            traceback.print_exc()
        _log(f"  {name}: {time.perf_counter() - t0:.1f} s")
        if progress is not None:
            progress(out)  # save after every spec: a long run interrupted keeps what it measured
    return out


def traffic_modes() -> tuple[str, ...]:
    from . import traffic

    return tuple(traffic.MODES)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    ap.add_argument("--quick", action="store_true", help="three specs, two sequence lengths, small sweeps")
    ap.add_argument("--specs", default=None, help="comma-separated specs (default: all bundled; --quick: "
                                                  f"{', '.join(QUICK_SPECS)})")
    ap.add_argument("--modes", default=",".join(traffic_modes()), help="traffic part: comma-separated "
                    f"subset of {', '.join(traffic_modes())}")
    ap.add_argument("--out", type=Path, default=common.RESULTS, help="results directory")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    if set(args.modes.split(",")) - set(traffic_modes()):
        ap.error(f"unknown mode(s) in {args.modes!r}")
    specs = args.specs.split(",") if args.specs else list(QUICK_SPECS) if args.quick else common.all_specs()
    data_dir = args.out / "data"
    warnings.filterwarnings("ignore", message=".*Triton is not supported on current platform.*")

    import recurgen

    from . import traffic

    def dims(name: str) -> dict[str, int]:
        return common.spec_dims(recurgen.load(name).spec)

    ts = traffic.QUICK_T if args.quick else traffic.SMALL_T
    if "traffic" in parts:
        modes = [traffic.MODES[m] for m in args.modes.split(",")]
        # other modes keep what an earlier run stored: modes can be measured in separate runs
        data: dict[str, Any] = {"modes": _stored(data_dir, "traffic").get("modes", {}),
                                "environment": common.environment(), "quick": args.quick}
        for mode in modes:
            if mode.run is None:  # a mode declared before its kernels exist: say so, count nothing
                data["modes"][mode.name] = {"note": mode.note}
                continue
            mts = mode.quick_t if args.quick else mode.small_t
            names = [n for n in specs if mode.name != "chunk" or traffic.chunk_reason(n) is None]
            _log(f"traffic: recurgen {mode.name} mode, {len(names)} specs, T={mts}")

            def progress(partial: dict[str, Any], mode: str = mode.name) -> None:
                # re-read before saving: a run of another mode may be saving to the same file
                data["modes"] = {**_stored(data_dir, "traffic").get("modes", {}), mode: partial}
                _save(data_dir, "traffic", data)

            before = data["modes"].get(mode.name)
            block = _measure_all(mode.run, names, mts, dims, progress, before)
            if mode.name == "chunk":  # specs without a chunk form, and why (from their generated module)
                block["no_chunk_form"] = {**(before or {}).get("no_chunk_form", {}), **{
                    n: traffic.chunk_reason(n) for n in specs if traffic.chunk_reason(n) is not None}}
            progress(block)
    if "fla" in parts:
        from . import peers

        ok, why = peers.available()
        fdata: dict[str, Any] = {**_stored(data_dir, "fla"), "available": ok, "why": why,
                                 "environment": common.environment()}
        runs = {"recurrent": (peers.adapters, peers.run_fla_recurrent, ts),
                "chunk": (peers.chunk_adapters, peers.run_fla_chunk,
                          traffic.CHUNK_QUICK_T if args.quick else traffic.CHUNK_T)}
        for mode in (m for m in args.modes.split(",") if ok and m in runs):
            table, runner, mts = runs[mode]
            names = [n for n in specs if n in table()]
            _log(f"fla: {mode} kernels, {names}, T={mts}")

            def fla_progress(partial: dict[str, Any], mode: str = mode) -> None:
                fdata[mode] = partial
                _save(data_dir, "fla", fdata)

            fdata[mode] = _measure_all(runner, names, mts, dims, fla_progress, fdata.get(mode))
        _save(data_dir, "fla", fdata)
    if "wallclock" in parts:
        from . import wallclock

        wspecs = tuple(n for n in wallclock.WALL_SPECS if n in specs) or wallclock.WALL_SPECS[:1]
        wts = wallclock.QUICK_T if args.quick else wallclock.WALL_T
        _log(f"wallclock: {wspecs}, T={wts}")
        start = common.stamp()
        result = wallclock.run(wspecs, wts)
        _save(data_dir, "wallclock", {**result, "measured": {"start": start, "end": common.stamp()},
                                      "environment": common.environment()})
    if "compile" in parts:
        from . import compile_time

        _log("compile: cold/warm times and the sm_90 resource table")
        start = common.stamp()
        stored = _stored(data_dir, "compile")
        cdata: dict[str, Any] = {"times": compile_time.compile_times(specs), "inspect": stored.get("inspect", []),
                                 "inspect_measured": stored.get("inspect_measured"),
                                 "measured": {"start": start, "end": common.stamp()},
                                 "environment": common.environment()}
        _save(data_dir, "compile", cdata)  # the times first: the resource table compiles every kernel (slow)
        try:
            cdata["inspect"] = compile_time.inspect_table(specs)
            cdata["inspect_measured"] = {"start": cdata["measured"]["end"], "end": common.stamp()}
            cdata.pop("inspect_error", None)
        except Exception as e:  # keep the times and the stored table; say why the table was not refreshed
            cdata["inspect_error"] = f"{type(e).__name__}: {str(e)[-300:]}"
            traceback.print_exc()
        _save(data_dir, "compile", cdata)
    if "scaling" in parts:
        kvs = SCALING_KV[:3] if args.quick else SCALING_KV
        sspecs = [n for n in SCALING_SPECS if n in specs] or list(SCALING_SPECS[:1])
        _log(f"scaling: K=V in {kvs} for {sspecs}")
        out: dict[str, Any] = {}
        for kv in kvs:
            out[str(kv)] = _measure_all(
                traffic.run_recurgen_recurrent, sspecs, ts,
                lambda n, kv=kv: common.spec_dims(recurgen.load(n).spec, kv))
            _save(data_dir, "scaling", out)  # after every size: an interrupted sweep keeps the sizes it measured
    if "report" in parts:
        from . import report

        _log("report")
        written = report.write(args.out)
        for p in written:
            _log(f"  wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
