"""roofline: a MODELLED time per launch on H100 / H200 from counted bytes and FLOPs. Not a measurement.

Two bounds per launch, and the larger one is the model:

1. Throughput (roofline): max(bytes / HBM bandwidth, dot FLOPs / tensor peak + other FLOPs / fp32 peak
   + special-function ops / SFU rate). Bytes are the counted global loads + stores: an upper bound on
   DRAM traffic (caches may absorb re-reads), so this term errs towards slow for kernels that re-read.
2. Serial dependency: a fused recurrent kernel walks T steps one after the other, and each step needs
   the previous state. Per step we charge `STEP_LATENCY_CYCLES` (assumed: one global-memory latency,
   because the loop loads the token's inputs inside the loop body and Triton does not software-pipeline
   these loads across iterations, plus a cross-warp reduction). Programs resident on one SM overlap
   their latencies, so the serial time is waves × T × step latency, with
   waves = ceil(programs / (SMs × programs resident per SM)) and residency from the registers per
   thread (65536 registers per SM) reported by `recurgen inspect` (sm_90). Where the registers are
   unknown (fla's kernels, the K = V sweep) all programs are assumed resident at once (one wave): an
   optimistic serial term.

Chunk mode walks chunks, not tokens: its serial term is T / 64 steps of `CHUNK_STEP_LATENCY_CYCLES`. The
torch glue around the kernels is modelled as memory-bound ops, one launch each, added to the kernels' time.

Plus a fixed launch overhead per launch. Tokens/s = B·T / modelled time.

All hardware numbers are public datasheet values (SXM parts); the latency and overhead constants are
assumptions and are printed with the results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    name: str
    hbm_bytes_per_s: float
    tensor_flops: float  # dense bf16 tensor-core peak
    fp32_flops: float  # CUDA-core fp32 peak (FMA = 2 FLOPs)
    sfu_per_s: float  # special-function ops (exp, log, ...) per second
    sms: int
    clock_hz: float


_H100_COMPUTE = {"tensor_flops": 989e12, "fp32_flops": 67e12, "sfu_per_s": 132 * 16 * 1.98e9, "sms": 132,
                 "clock_hz": 1.98e9}
GPUS = (
    Gpu("H100 SXM", 3.35e12, **_H100_COMPUTE),  # type: ignore[arg-type]
    Gpu("H200 SXM", 4.8e12, **_H100_COMPUTE),  # type: ignore[arg-type]  # same compute, faster HBM3e
)
LAUNCH_OVERHEAD_S = 5e-6  # assumed host launch + ramp per kernel
STEP_LATENCY_CYCLES = 700  # assumed: ~600 cycles global-memory latency + ~100 cycles reduction/barrier
# assumed: a chunk step of the inter-chunk state walk is one global load of a chunk's k, v tiles plus one
# 64-token tl.dot into the state tile (~400 cycles of tensor-core latency) before the next chunk can start
CHUNK_STEP_LATENCY_CYCLES = 1000
REGISTERS_PER_SM = 65536


def resident_per_sm(registers: int | None, warps: int) -> int | None:
    """Programs one SM holds at once (register-limited), or None if unknown."""
    if not registers:
        return None
    return max(1, min(32, REGISTERS_PER_SM // (registers * 32 * warps)))


@dataclass(frozen=True)
class Estimate:
    throughput_s: float
    serial_s: float
    overhead_s: float

    @property
    def seconds(self) -> float:
        return max(self.throughput_s, self.serial_s) + self.overhead_s

    @property
    def bound(self) -> str:
        if self.serial_s >= self.throughput_s:
            return "serial"
        return "memory" if self._mem >= self._comp else "compute"

    _mem: float = 0.0
    _comp: float = 0.0


def estimate(gpu: Gpu, counts: dict[str, float], T_serial: int, programs: int, resident: int | None,
             step_cycles: int = STEP_LATENCY_CYCLES) -> Estimate:
    """Model one kernel kind: `counts` summed over its launches; `T_serial` steps walked in sequence."""
    mem = (counts["load_bytes"] + counts["store_bytes"]) / gpu.hbm_bytes_per_s
    comp = (counts["dot_flops"] / gpu.tensor_flops + (counts["flops"] - counts["dot_flops"]) / gpu.fp32_flops
            + counts["sfu"] / gpu.sfu_per_s)
    # unknown residency: every program resident at once (one wave), the optimistic case
    waves = 0 if not programs else 1 if resident is None else math.ceil(programs / (gpu.sms * resident))
    serial = waves * T_serial * step_cycles / gpu.clock_hz
    return Estimate(max(mem, comp), serial, counts["launches"] * LAUNCH_OVERHEAD_S, mem, comp)


def assumptions_md() -> str:
    rows = [f"- {g.name}: HBM {g.hbm_bytes_per_s / 1e12:.2f} TB/s, bf16 tensor {g.tensor_flops / 1e12:.0f} TFLOP/s, "
            f"fp32 {g.fp32_flops / 1e12:.0f} TFLOP/s, SFU {g.sfu_per_s / 1e12:.2f} Top/s, {g.sms} SMs at "
            f"{g.clock_hz / 1e9:.2f} GHz (datasheet values)" for g in GPUS]
    rows.append(f"- launch overhead {LAUNCH_OVERHEAD_S * 1e6:.0f} µs per launch (assumed)")
    rows.append(f"- per-step latency {STEP_LATENCY_CYCLES} cycles (assumed: one un-pipelined global load "
                "+ a cross-warp reduction)")
    rows.append(f"- chunk mode: the serial walk is T / 64 chunk steps of {CHUNK_STEP_LATENCY_CYCLES} cycles each "
                "(assumed: a global load of the chunk's tiles + one tl.dot into the state)")
    rows.append("- torch glue: each aten op one launch, memory-bound (its bytes / HBM bandwidth + the launch "
                "overhead); glue FLOPs are not counted")
    rows.append("- programs resident per SM: 65536 / (registers × 32 × warps) from `recurgen inspect` on sm_90; "
                "where unknown (fla's kernels, the K = V sweep) one wave (optimistic)")
    return "\n".join(rows)
