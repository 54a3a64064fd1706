"""compile_time: spec -> importable module, cold and warm; GPU resource table from `recurgen inspect`.

Each timing runs in a fresh Python process (so nothing is cached in memory) and starts the clock after
`import recurgen` and torch: it measures recurgen's own work. Cold: an empty RECURGEN_CACHE_DIR (parse,
check, analyse, render, write, import). Warm: the same cache directory again (hash, read, import).

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
t0 = time.perf_counter()
recurgen.load(sys.argv[1])
print(json.dumps(time.perf_counter() - t0))
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
    rows = []
    for name in specs:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "RECURGEN_CACHE_DIR": cache, "TRITON_INTERPRET": "0",
                   "PYTHONPATH": os.pathsep.join(sys.path[1:])}
            cold = _python(_TIME_LOAD, [name], env)
            warm = _python(_TIME_LOAD, [name], env)
        rows.append({"spec": name, "cold_s": cold, "warm_s": warm})
    return rows


def inspect_table(specs: list[str]) -> list[dict[str, Any]]:
    env = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONPATH": os.pathsep.join(sys.path[1:])}
    return _python(_INSPECT, specs, env)
