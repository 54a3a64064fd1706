"""gpu: compile every kernel of a loaded spec for a real GPU architecture, without a GPU.

Triton lowers to PTX and cubin for any `GPUTarget`; the cuobjdump bundled with Triton reports
registers, stack, local memory (spills) and shared memory per kernel. Must run without
TRITON_INTERPRET (interpreted kernels cannot be compiled).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_POINTER_PREFIXES = ("x_", "y_", "p_", "h0_", "ht_", "ck_", "sc_", "dht_", "dx_", "dp_", "dh0_", "dy_")
_FLAGS = ("CKPT", "USE_INITIAL_STATE", "STORE_FINAL_STATE", "SAVE_CKPT", "USE_FINAL_STATE_GRADIENT")
ARCHS = {"sm_80": 80, "sm_90": 90}


@dataclass(frozen=True, slots=True)
class KernelReport:
    kernel: str
    arch: str
    blocks: str  # e.g. "BK=128 BV=32"
    registers: int
    spills: int  # bytes of local memory (register spills)
    stack: int
    shared: int  # bytes of shared memory


def _cuobjdump() -> str:
    import triton

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump")


def _signature(arg_names: list[str], consts: dict[str, Any], io_dtype: str) -> dict[str, str]:
    sig: dict[str, str] = {}
    for a in arg_names:
        if a in consts:
            sig[a] = "constexpr"
        elif a.startswith(("x_", "y_", "dy_", "dx_")):
            sig[a] = f"*{io_dtype}"
        elif a.startswith(_POINTER_PREFIXES):
            sig[a] = "*fp32"
        elif a.startswith("opt_"):
            sig[a] = "fp32"
        else:
            sig[a] = "i32"
    return sig


def _usage(cubin: bytes) -> tuple[int, int, int, int]:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        out = subprocess.run([_cuobjdump(), "-res-usage", path], capture_output=True, text=True, check=True).stdout
    fields = dict(re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", out))
    return int(fields["REG"]), int(fields["LOCAL"]), int(fields["STACK"]), int(fields["SHARED"])


def inspect_module(module: Any, sizes: dict[str, int], archs: tuple[str, ...] = ("sm_90",),
                   io_dtype: str = "bf16") -> list[KernelReport]:
    """Compile the fused recurrent kernels of a generated module at the given dim sizes."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    name = module.SPEC_NAME
    sz = dict(module.FIXED_DIMS)
    all_dims = {d for table in (module.INPUTS, module.PARAMS, module.STATES) for _, dims, _ in table for d in dims}
    for d in all_dims:
        sz.setdefault(d, sizes.get(d, 128))
    rows: list[KernelReport] = []
    for kind in ("fwd", "bwd"):
        budget = module.STATE_TILE_BUDGET if kind == "fwd" else module.BWD_STATE_TILE_BUDGET
        blocks, _ = module._blocks(sz, budget)
        fn = getattr(module, f"{name}_fused_recurrent_{kind}_kernel")
        consts: dict[str, Any] = {f"B{d}": b for d, b in blocks.items() if f"B{d}" in fn.arg_names}
        consts.update({f: (16 if f == "CKPT" else True) for f in _FLAGS if f in fn.arg_names})
        for arch in archs:
            cc = ARCHS[arch]
            src = ASTSource(fn=fn, signature=_signature(list(fn.arg_names), consts, io_dtype), constexprs=consts)
            compiled = triton.compile(src, target=GPUTarget("cuda", cc, 32),
                                      options={"num_warps": module.NUM_WARPS})
            reg, local, stack, shared = _usage(compiled.asm["cubin"])
            shown = " ".join(f"{k}={v}" for k, v in consts.items() if k.startswith("B"))
            rows.append(KernelReport(fn.__name__, arch, shown, reg, local, stack,
                                     max(shared, int(compiled.metadata.shared))))
    return rows


def format_table(rows: list[KernelReport]) -> str:
    head = "| kernel | arch | blocks | registers | spills (B) | stack (B) | shared (B) |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.kernel} | {r.arch} | {r.blocks} | {r.registers} | {r.spills} | {r.stack} | {r.shared} |"
              for r in rows]
    return "\n".join(lines)
