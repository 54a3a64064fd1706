"""compile_time: spec -> importable module, cold and warm; GPU resource table from `recurgen inspect`.

Each timing runs in a fresh Python process (so nothing is cached in memory) and starts the clock after
`import torch, triton, recurgen, recurgen.api`: it measures `recurgen.load` itself. Cold: an empty
RECURGEN_CACHE_DIR (every stage of `recurgen.pipeline`, the write and the import; the time of each stage is
recorded too). Warm: the same cache directory again (key, lookup, import of the stored module). The children
may write bytecode (PYTHONDONTWRITEBYTECODE is cleared), as an installed package has it.

    python -m benchmarks.compile_time [SPEC ...]   # times only (no resource table): results/data/compile.json

The resource table compiles every kernel for sm_90 without a GPU, exactly as `recurgen inspect` does,
in a subprocess without TRITON_INTERPRET (interpreted kernels cannot be compiled).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

_TIME_LOAD = """
import json, sys, time
import torch, triton, recurgen, recurgen.api
from recurgen import pipeline
stages = {}

def timed(name, fn):
    def run(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            stages[name] = stages.get(name, 0.0) + time.perf_counter() - t
    return run

for name in pipeline.STAGES[:-1]:
    setattr(pipeline, name, timed(name, getattr(pipeline, name)))
t0, c0 = time.perf_counter(), time.process_time()
recurgen.load(sys.argv[1])
print(json.dumps({"total": time.perf_counter() - t0, "cpu": time.process_time() - c0, "stages": stages}))
"""

_INSPECT = """
import dataclasses, json, sys
from recurgen.api import load
from recurgen.gpu import best, inspect_module
rows = []
for name in sys.argv[1:]:
    mod = load(name).module
    rows += [dataclasses.asdict(r) | {"spec": name} for r in best(inspect_module(mod, {}, ("sm_90",), "bf16",
                                                                               until_clean=True))]
print(json.dumps(rows))
"""


def _python(code: str, args: list[str], env: dict[str, str]) -> Any:
    # same working directory and sys.path as this process: the recurgen under test, not another checkout
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:  # say what failed: the last lines of the child's traceback
        raise RuntimeError(" | ".join(out.stderr.strip().splitlines()[-3:]))
    return json.loads(out.stdout.strip().splitlines()[-1])


def compile_times(specs: list[str]) -> list[dict[str, Any]]:
    """Per spec: `cold_s`, `warm_s` (wall seconds of `recurgen.load`), `cold_cpu_s`, `warm_cpu_s` (the process's
    CPU seconds over the same call: on a shared machine, what the load would take on an idle core), `cold_stages`
    (wall seconds per stage, cold) and `warm_stages` (the stages the warm load ran)."""
    rows = []
    for name in specs:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "RECURGEN_CACHE_DIR": cache, "TRITON_INTERPRET": "0",
                   "PYTHONPATH": os.pathsep.join(sys.path[1:])}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            cold = _python(_TIME_LOAD, [name], env)
            warm = _python(_TIME_LOAD, [name], env)
        rows.append({"spec": name, "cold_s": cold["total"], "warm_s": warm["total"],
                     "cold_cpu_s": cold["cpu"], "warm_cpu_s": warm["cpu"],
                     "cold_stages": {k: round(v, 4) for k, v in cold["stages"].items()},
                     "warm_stages": sorted(warm["stages"])})  # stages a warm load ran: none expected
    return rows


def inspect_table(specs: list[str]) -> list[dict[str, Any]]:
    env = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONPATH": os.pathsep.join(sys.path[1:])}
    return _python(_INSPECT, specs, env)


def main(argv: list[str] | None = None) -> None:
    """Measure cold and warm loads of the given (default: every bundled) spec; keep the stored resource table."""
    from pathlib import Path

    from recurgen.resources import bundled_spec_names

    from . import common

    specs = list(argv if argv is not None else sys.argv[1:]) or list(bundled_spec_names())
    path = Path(__file__).parent / "results" / "data" / "compile.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    start = common.stamp()
    rows = compile_times(specs)
    data.update(times=rows, measured={"start": start, "end": common.stamp()}, environment=common.environment())
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(common.md_table(("spec", "cold s (CPU s)", "warm s (CPU s)", "cold: slowest stages"),
                          [(r["spec"], f"{r['cold_s']:.2f} ({r['cold_cpu_s']:.2f})",
                            f"{r['warm_s']:.3f} ({r['warm_cpu_s']:.3f})",
                            ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["cold_stages"].items(),
                                                                         key=lambda kv: -kv[1])[:3]))
                           for r in rows]))
    print(f"load average {start['load']} -> {data['measured']['end']['load']}; wrote {path}")


if __name__ == "__main__":
    main()
