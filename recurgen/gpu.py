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

_POINTER_PREFIXES = ("x_", "y_", "p_", "h0_", "ht_", "ck_", "sc_", "za_", "st_", "zg_", "dht_", "dx_", "dp_", "dh0_",
                     "dy_")
_FLAGS = ("CKPT", "IS_VARLEN", "USE_INITIAL_STATE", "STORE_FINAL_STATE", "SAVE_CKPT", "USE_FINAL_STATE_GRADIENT")
ARCHS = {"sm_80": 80, "sm_90": 90}


@dataclass(frozen=True, slots=True)
class KernelReport:
    kernel: str
    arch: str
    warps: int
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
        elif a == "cu_seqlens":
            sig[a] = "*i32"
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


def _compile_row(fn: Any, signature: dict[str, str], consts: dict[str, Any], attrs: dict | None, arch: str,
                 options: dict[str, int], label: str, blocks: str) -> KernelReport:
    """Compile one kernel configuration for `arch` and read its resource use from the cubin."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    src = ASTSource(fn=fn, signature=signature, constexprs=consts, **({"attrs": attrs} if attrs else {}))
    compiled = triton.compile(src, target=GPUTarget("cuda", ARCHS[arch], 32), options=options)
    reg, local, stack, shared = _usage(compiled.asm["cubin"])
    return KernelReport(label, arch, options["num_warps"], blocks, reg, local, stack,
                        max(shared, int(compiled.metadata.shared)))


def inspect_module(module: Any, sizes: dict[str, int], archs: tuple[str, ...] = ("sm_90",),
                   io_dtype: str = "bf16", warp_configs: tuple[int, ...] = (),
                   until_clean: bool = False, kernels: str = "all") -> list[KernelReport]:
    """Compile the kernels of a generated module at the given dim sizes: `kernels` = "recurrent" (the fused
    recurrent ones), "chunk" (the chunk families it uses) or "all".

    Every warp count the module's autotuner may choose is compiled (or just `warp_configs`);
    with `until_clean`, per kernel and arch only until one compiles without spills.
    """
    name = module.SPEC_NAME
    sz = dict(module.FIXED_DIMS)
    all_dims = {d for table in (module.INPUTS, module.PARAMS, module.STATES) for _, dims, _ in table for d in dims}
    for d in all_dims:
        sz.setdefault(d, sizes.get(d, 128))
    rows: list[KernelReport] = []
    # the fused recurrent kernels, and the blocked-scan forward of chunk mode when the module has one
    recurrent, chunk = kernels in ("all", "recurrent"), kernels in ("all", "chunk")
    kinds = ("fwd", *(("sweep",) * getattr(module, "TWO_SWEEP", False)), "bwd") * recurrent + \
        ("scan",) * (chunk and getattr(module, "SCAN_BLOCK", False))
    for kind in kinds:
        budget = module.BWD_STATE_TILE_BUDGET if kind in ("bwd", "sweep") else module.STATE_TILE_BUDGET
        tiled = getattr(module, "BWD_TILED_DIM", module.TILED_DIM) if kind in ("bwd", "sweep") else module.TILED_DIM
        blocks, _ = module._blocks(sz, budget, None, tiled)
        fn = getattr(module, f"{name}_chunk_scan_fwd_kernel" if kind == "scan" else
                     f"{name}_fused_recurrent_{kind}_kernel")
        fn = getattr(fn, "fn", fn)  # the autotuner wraps the JIT function
        consts: dict[str, Any] = {f"B{d}": b for d, b in blocks.items() if f"B{d}" in fn.arg_names}
        consts.update({f: (16 if f == "CKPT" else True) for f in _FLAGS if f in fn.arg_names})
        if kind == "scan":  # as the launcher picks it at the default chunk size and checkpoint interval
            tile = max(module._tile_numel(blocks, dims, c) for _, dims, c in module.STATES)
            bt = min(module.CHUNK_SIZE, 16, max(1, module.SCAN_BLOCK_BUDGET // tile))
            consts["Btok_"] = 1 << (bt.bit_length() - 1)
        if "EVEN_DIMS" in fn.arg_names:  # as the launcher decides it
            consts["EVEN_DIMS"] = all(sz[d] % blocks[d] == 0 for d in blocks)
        if "SEG_ON_CHIP" in fn.arg_names:  # as the launcher decides it, at the default checkpoint interval
            tiles = sum(module._tile_numel(blocks, dims, c) for _, dims, c in module.STATES)
            consts.update(BCKPT=16, SEG_ON_CHIP=16 * tiles <= module.SEGMENT_ON_CHIP_BUDGET)
        shown = " ".join(f"{k}={v}" for k, v in consts.items() if k.startswith("B"))
        for arch in archs:
            for warps in warp_configs or module.WARP_CONFIGS:
                row = _compile_row(fn, _signature(list(fn.arg_names), consts, io_dtype), consts, None, arch,
                                   {"num_warps": warps}, fn.__name__, shown)
                rows.append(row)
                if until_clean and row.spills == 0 and row.stack == 0:
                    break
    if kernels in ("all", "chunk"):
        rows += _inspect_chunk(module, sz, archs, io_dtype, warp_configs, until_clean)
    return rows


def _inspect_chunk(module: Any, sz: dict[str, int], archs: tuple[str, ...], io_dtype: str,
                   warp_configs: tuple[int, ...], until_clean: bool) -> list[KernelReport]:
    """The chunk kernels of each state, through its family's compile hook (tl.dot operands in `io_dtype`)."""
    rows: list[KernelReport] = []
    hooks = (*getattr(module, "CHUNK_KERNELS", ()), *getattr(module, "CHUNK_TOKEN_KERNELS", ()))  # + token kernels
    for state, family, dims, specs in hooks:
        if specs is None:  # no family kernels: chunk mode runs the blocked-scan forward (compiled as "scan")
            continue
        K, V = sz[dims[0]], (sz[dims[1]] if len(dims) > 1 else 1)
        for fn, sig, consts, *given in specs(K, V, module.CHUNK_SIZE, io_dtype, io_dtype == "fp32"):
            shown = " ".join(f"{k}={v}" for k, v in consts.items() if k.startswith("B") and isinstance(v, int))
            # what the JIT specialises at these sizes (unless the family says): 16-byte aligned pointers, head
            # dims and T divisible by 16
            attrs = given[0] if given else {
                (i,): [["tt.divisibility", 16]] for i, a in enumerate(fn.arg_names)
                if sig[a].startswith("*") or (a in ("K", "V", "T", "P", "Q", "TT") and sig[a] == "i32")}
            for arch in archs:
                # the pipeline stages this kernel's autotuner may pick (fewer stages keep fewer tiles live)
                tuner = getattr(module, fn.__name__, None)
                stages = sorted({c.num_stages for c in getattr(tuner, "configs", ())} - {None}) or [2]
                configs = [(w, st) for w in warp_configs or module.WARP_CONFIGS for st in stages]
                for warps, st in configs:
                    row = _compile_row(fn, sig, consts, attrs, arch, {"num_warps": warps, "num_stages": st},
                                       f"{module.SPEC_NAME} chunk {state} ({family}) {fn.__name__}",
                                       f"{shown} stages={st}")
                    rows.append(row)
                    if until_clean and row.spills == 0 and row.stack == 0:
                        break
    return rows


def best(rows: list[KernelReport]) -> list[KernelReport]:
    """Per kernel and arch, the configuration the autotuner can fall back on: least spilled, then fewest warps."""
    out: dict[tuple[str, str], KernelReport] = {}
    for r in rows:
        key = (r.kernel, r.arch)
        if key not in out or (r.spills + r.stack, r.warps) < (out[key].spills + out[key].stack, out[key].warps):
            out[key] = r
    return list(out.values())


def format_table(rows: list[KernelReport]) -> str:
    head = "| kernel | arch | warps | blocks | registers | spills (B) | stack (B) | shared (B) |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.kernel} | {r.arch} | {r.warps} | {r.blocks} | {r.registers} | {r.spills} | {r.stack} | "
              f"{r.shared} |" for r in rows]
    return "\n".join(lines)
