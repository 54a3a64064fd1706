"""wallclock: CPU forward time of recurgen's pure-torch path against per-token loops, in one run.

Compared on the same inputs (fp32, CPU): recurgen's generated torch path (`backend="torch"`, the derived
step vectorised over batch and head), the float64 oracle (`recurgen.reference`, a per-token evaluator of
the spec; run in fp32 here for a like-for-like loop), and flash-linear-attention's naive torch references
where installed. Only ratios measured in the same process are reported; nothing here is asserted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

import recurgen
from recurgen import oracle

from . import common

WALL_SPECS = ("gla", "delta_rule", "hgrn")
WALL_T = (256, 1024, 4096, 16384)
QUICK_T = (256, 1024)
CPU_SHAPE = {"B": 1, "H": 4, "dim": 64}
BUDGET_S = 5.0  # per method and spec: larger T is skipped once a run takes longer than this


def _fla_naive() -> dict[str, Callable[[dict[str, torch.Tensor]], Any]]:
    try:
        from fla.ops.delta_rule.naive import delta_rule_recurrence  # type: ignore[import-not-found]
        from fla.ops.gla.naive import naive_recurrent_gla  # type: ignore[import-not-found]
        from fla.ops.hgrn.naive import naive_recurrent_hgrn  # type: ignore[import-not-found]
    except Exception:  # optional peer
        return {}
    # fla's older naive references are head-first [B, H, T, ...]; hgrn's has no heads
    return {
        "gla": lambda x: naive_recurrent_gla(x["q"], x["k"], x["v"], x["g"]),
        "delta_rule": lambda x: delta_rule_recurrence(*(x[n].transpose(1, 2) for n in ("q", "k", "v", "beta"))),
        "hgrn": lambda x: naive_recurrent_hgrn(x["x"].flatten(2), x["g"].flatten(2)),
    }


ROUNDS = 3


def _time(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(specs: tuple[str, ...] = WALL_SPECS, ts: tuple[int, ...] = WALL_T, threads: int = 1) -> dict[str, Any]:
    """Time every method at every T; `threads` torch threads (1 by default: on a loaded 2-core machine, an
    intra-op parallel region stalls whenever one of its threads is descheduled — `torch.einsum` was seen
    taking 28 ms instead of 0.01 ms — which measures the machine's load, not the code)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(specs, ts)
    finally:
        torch.set_num_threads(previous)


def _run(specs: tuple[str, ...], ts: tuple[int, ...]) -> dict[str, Any]:
    naive = _fla_naive()
    rows = []
    for name in specs:
        rec = recurgen.load(name)
        sz = common.spec_dims(rec.spec, CPU_SHAPE["dim"])
        methods: dict[str, Callable[[dict[str, torch.Tensor]], Any]] = {
            "recurgen torch path": lambda x, rec=rec: rec.module.__dict__[f"fused_recurrent_{rec.name}"](
                *x.values(), backend="torch"),
            "oracle loop (fp32)": lambda x, rec=rec: oracle.run(rec.spec, x, dtype=torch.float32),
        }
        if name in naive:
            methods["fla naive"] = lambda x, f=naive[name]: f(x)
        skip: set[str] = set()
        for T in ts:
            xs = common.make_inputs(rec.spec, CPU_SHAPE["B"], T, CPU_SHAPE["H"], sz, dtype=torch.float32)
            times: dict[str, float | None] = {m: None if m in skip else float("inf") for m in methods}
            # rounds interleave the methods, and the minimum over rounds is kept: on a shared machine the
            # load changes from second to second, and interleaving exposes every method to it alike
            with torch.no_grad():
                for _ in range(ROUNDS):
                    for m, fn in methods.items():
                        if times[m] is not None:
                            times[m] = min(times[m], _time(lambda fn=fn, xs=xs: fn(xs)))  # type: ignore[type-var]
            for m, t in times.items():
                if t is not None and t > BUDGET_S:
                    skip.add(m)
            rows.append({"spec": name, "T": T, "times": times})
    return {"shape": CPU_SHAPE, "threads": torch.get_num_threads(), "rounds": ROUNDS, "rows": rows}
