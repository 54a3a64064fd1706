"""Max error of every bundled spec against the float64 oracle, per backend × dtype × decay regime.

    TRITON_INTERPRET=1 python -m benchmarks.numerics            # writes docs/numerics.md
    python -m benchmarks.numerics --T 256 --out /tmp/n.md --specs gla,hgrn
    python -m benchmarks.numerics --backends chunk --chunk-T 65536 --specs gla --out /tmp/long.md
    python -m benchmarks.numerics --merge /tmp/long.md            # adds those rows to docs/numerics.md

Each row runs one spec at B = H = 1 with small dims (every free dim 8) on inputs drawn from the spec's
declared domains (tests/helpers.py), cast to the dtype under test. The oracle is fed the *same* rounded
inputs in float64, so the error measured is the kernel's own (accumulation, output rounding), not the
quantisation of its inputs. Specs with `logdecay` inputs get two extra rows per dtype with every
log-decay input pinned near a value: strong (g ≈ -5 per step: the state forgets within a few tokens) and
near-1 (g ≈ -1e-4: nothing is forgotten over the whole sequence, the state grows like T).

`rel` is max |out - ref| / max |ref| (outputs over all of B, T, H and dims; final states likewise), the
number the tests in tests/reliability/test_numerics.py pin at small T (see `TOLERANCES`).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# The kernels can only run in Triton's CPU interpreter here; it must be chosen before triton is imported.
os.environ.setdefault("TRITON_INTERPRET", "1")

import torch

import recurgen
from recurgen import ir
from recurgen.resources import bundled_spec_names
from tests.helpers import random_inputs

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# `triton`: the fused recurrent kernels; `torch`: the pure-torch path; `chunk`: the chunked-parallel kernels.
BACKENDS = ("triton", "torch", "chunk")
DECAYS = {"random": None, "strong": -5.0, "near-1": -1e-4}
SIZES = {"K": 8, "V": 8, "D": 8, "N": 8, "E": 8, "P": 8}
# Relative error (max |err| / max |ref|) every row must stay within at small T (the tests pin these at
# T = 16; the table shows they also hold at the table's T). fp32 outputs carry accumulation error only.
# Half types are dominated by rounding the output: up to 2^-8 of max |ref| for bf16 with round-to-nearest,
# 2^-7 where the Triton interpreter's fp32 -> bf16 store truncates; 2^-11 (2^-10) for fp16.
TOLERANCES = {"fp32": 1e-5, "bf16": 1e-2, "fp16": 1e-3}
# Chunk mode: CHUNK_TOLERANCES (set from the measured table; see docs/numerics.md).
CHUNK_TOLERANCES = {"fp32": 1e-5, "bf16": 1e-2, "fp16": 1e-3}
CHUNK_TEST_T, CHUNK_SLOW_T = 100, 300  # lengths the tests pin chunk mode at: partial chunks, several chunks
# Rows whose error comes from the spec's own arithmetic, not the kernel: hgrn2 feeds `1 - exp(g)` to its
# state, which at g ≈ -1e-4 cancels to ~4 significant digits in fp32 (an expm1 rewrite would fix it).
CANCELLATION = {("hgrn2", "near-1"): 1e-3}


def tolerance(spec: str, decay: str, dtype: str, backend: str = "triton") -> float:
    bounds = CHUNK_TOLERANCES if backend == "chunk" else TOLERANCES
    return max(bounds[dtype], CANCELLATION.get((spec, decay), 0.0))


# Chunk mode feeds tl.dot its operands in the input dtype (bf16/fp16, as flash-linear-attention does). Where an
# operand is a formula of the inputs rather than an input, it is rounded there and the final state carries
# that rounding (an input quantisation the oracle does not share): those specs' half-dtype chunk-mode states
# get the dtype's output bound instead of fp32's.
CHUNK_DERIVED_OPERANDS = {"hgrn2": "k = 1 − exp(g)", "mamba2": "v = softplus(dt + dt_bias) ⊙ x",
                          "mlstm": "k = exp(i) ⊙ scale · k"}


def state_tolerance(spec: str, decay: str, dtype: str, backend: str = "triton") -> float:
    """Bound on the final state's relative error: fp32's (states are fp32), but see CHUNK_DERIVED_OPERANDS."""
    if backend == "chunk" and dtype != "fp32" and spec in CHUNK_DERIVED_OPERANDS:
        return tolerance(spec, decay, dtype, backend)
    return tolerance(spec, decay, "fp32", backend)


def _call_kwargs(backend: str) -> dict[str, str]:
    """How a row's backend is asked for: `mode` pinned, so "auto" never swaps kernels with the length."""
    if backend == "chunk":
        return {"backend": "triton", "mode": "chunk"}
    return {"backend": backend, "mode": "recurrent"}


@dataclass(frozen=True)
class Row:
    spec: str
    decay: str
    backend: str
    dtype: str
    T: int
    abs_err: float  # max |out - ref| over every output
    ref_max: float  # max |ref| over every output
    rel_err: float  # abs_err / ref_max
    state_rel_err: float  # the same for the final state(s)
    seconds: float


def logdecay_inputs(spec: ir.Spec) -> list[str]:
    return [t.name for t in spec.inputs if t.domain.logspace]


def _tensors(x: object) -> list[torch.Tensor]:
    if x is None:
        return []
    if isinstance(x, torch.Tensor):
        return [x]
    return [t for item in x for t in _tensors(item)]  # type: ignore[attr-defined]


def _rel(actual: object, expected: object) -> tuple[float, float]:
    """(max abs error, max |expected|) over paired tensors; complex states compare as complex."""
    err, top = 0.0, 0.0
    for a, e in zip(_tensors(actual), _tensors(expected), strict=True):
        wide = torch.complex128 if e.is_complex() else torch.float64
        d = (a.detach().to(wide) - e.detach().to(wide)).abs()
        if d.numel():
            err = max(err, float(d.max()))
            top = max(top, float(e.abs().max()))
    return err, top


def inputs_for(spec: ir.Spec, T: int, dtype: torch.dtype, decay: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Inputs in `dtype`; for a pinned decay every log-decay input is `value * U(0.5, 1.5)`."""
    xs = random_inputs(spec, 1, T, 1, SIZES, dtype=torch.float64, seed=seed)
    value = DECAYS[decay]
    if value is not None:
        gen = torch.Generator().manual_seed(seed)
        for name in logdecay_inputs(spec):
            xs[name] = value * (0.5 + torch.rand(xs[name].shape, generator=gen, dtype=torch.float64))
    if spec.name in _REALISTIC:
        xs.update(_REALISTIC[spec.name](xs, seed))
    return {n: x.to(torch.complex64 if x.is_complex() else dtype) for n, x in xs.items()}


def _rwkv7_ab(xs: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """RWKV7 as the model feeds it: a = -κ̂, b = κ̂ ⊙ a_gate (κ̂ unit-norm, a_gate in (0, 1)).

    The spec's domains cannot express this coupling, and with independent normal a, b the transition
    diag(w) + b aᵀ has eigenvalues far outside the unit circle: the state reaches 1e15 by T = 64 and
    overflows fp32 long before T = 1024, which measures nothing about the kernel.
    """
    gen = torch.Generator().manual_seed(seed + 7)
    kappa = torch.nn.functional.normalize(torch.randn(xs["a"].shape, generator=gen, dtype=torch.float64), dim=-1)
    gate = torch.sigmoid(torch.randn(xs["b"].shape, generator=gen, dtype=torch.float64))
    return {"a": -kappa, "b": kappa * gate}


# Inputs drawn from the model's real parametrisation where the spec's domains allow divergent draws.
_REALISTIC = {"rwkv7": _rwkv7_ab}


def measure(name: str, backend: str, dtype: str, T: int, decay: str = "random", seed: int = 0) -> Row:
    rec = recurgen.load(name)
    xs = inputs_for(rec.spec, T, DTYPES[dtype], decay, seed)
    ref_args = [x.to(torch.complex128 if x.is_complex() else torch.float64) for x in xs.values()]
    start = time.perf_counter()
    out, final = rec(*xs.values(), output_final_state=True, **_call_kwargs(backend))
    seconds = time.perf_counter() - start
    ref_out, ref_final = recurgen.reference(rec, *ref_args, output_final_state=True)
    abs_err, ref_max = _rel(out, ref_out)
    s_err, s_max = _rel(final, ref_final)
    return Row(name, decay, backend, dtype, T, abs_err, ref_max, abs_err / ref_max if ref_max else abs_err,
               s_err / s_max if s_max else s_err, seconds)


def cases(specs: Sequence[str], backends: Sequence[str], dtypes: Sequence[str]) -> Iterator[tuple[str, str, str, str]]:
    for name in specs:
        rec = recurgen.load(name)
        decays = list(DECAYS) if logdecay_inputs(rec.spec) else ["random"]
        for decay in decays:
            for backend in backends:
                if backend == "chunk" and rec.chunk_reason is not None:
                    continue  # no chunk kernels (rwkv7): the document says so
                for dtype in dtypes:
                    yield name, decay, backend, dtype


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.1e}"


def table(rows: Sequence[Row]) -> str:
    lines = ["| spec | decay | backend | dtype | T | max abs err | max \\|ref\\| | rel err (out) | rel err (state) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r.spec}` | {r.decay} | {r.backend} | {r.dtype} | {r.T} | {_fmt(r.abs_err)} | "
                     f"{_fmt(r.ref_max)} | {_fmt(r.rel_err)} | {_fmt(r.state_rel_err)} |")
    return "\n".join(lines)


def summary(rows: Sequence[Row]) -> str:
    """Worst relative error per backend × dtype × T (outside the CANCELLATION rows), and which row it came from."""
    lines = ["| backend | dtype | T | rows | worst rel err (out) | where | worst rel err (state) | tolerance (tests) |",
             "|---|---|---|---|---|---|---|---|"]
    lengths = sorted({r.T for r in rows})
    for backend in BACKENDS:
        for dtype in DTYPES:
            for T in lengths:
                # The documented cancellation rows have their own bound; they would hide the kernels' worst case.
                sel = [r for r in rows if r.backend == backend and r.dtype == dtype and r.T == T
                       and (r.spec, r.decay) not in CANCELLATION]
                if not sel:
                    continue
                worst = max(sel, key=lambda r: r.rel_err)
                worst_state = max(r.state_rel_err for r in sel)
                bound = (CHUNK_TOLERANCES if backend == "chunk" else TOLERANCES)[dtype]
                lines.append(f"| {backend} | {dtype} | {T} | {len(sel)} | {_fmt(worst.rel_err)} | "
                             f"`{worst.spec}` {worst.decay} | {_fmt(worst_state)} | {bound:g} |")
    return "\n".join(lines)


def _lengths(rows: Sequence[Row], backend: str) -> str:
    found = sorted({r.T for r in rows if r.backend == backend})
    return " and ".join(f"T = {T}" for T in found) if found else "no length (not measured)"


def _without_chunk_form() -> dict[str, str]:
    """Bundled specs with no chunk kernels, and why (their rows cannot exist)."""
    reasons = {n: recurgen.load(n).chunk_reason for n in bundled_spec_names()}
    return {n: r for n, r in reasons.items() if r is not None}


def _no_chunk_sentence() -> str:
    missing = _without_chunk_form()
    if not missing:
        return "Every bundled spec has a chunk form."
    return " ".join(f"`{n}` has no chunk form ({why}), so it has no chunk rows." for n, why in missing.items())


def _chunk_coverage(rows: Sequence[Row]) -> str:
    """Which chunk-mode cells were measured, per length and dtype, and which chunked specs were not: the
    interpreter is too slow for the whole grid, so the document must say exactly what it holds."""
    chunked = [n for n in bundled_spec_names() if n not in _without_chunk_form()]
    out = []
    for T in sorted({r.T for r in rows if r.backend == "chunk"}):
        for dtype in DTYPES:
            sel = [r for r in rows if r.backend == "chunk" and r.T == T and r.dtype == dtype]
            if not sel:
                continue
            specs = sorted({r.spec for r in sel})
            cells = ", ".join(f"`{n}` ({'/'.join(d for d in DECAYS if any(r.spec == n and r.decay == d for r in sel))})"
                              for n in specs)
            missing = [n for n in chunked if n not in specs]
            rest = f"; not measured: {', '.join(f'`{n}`' for n in missing)}" if missing else "; every chunked spec"
            out.append(f"  - T = {T}, {dtype}: {cells}{rest}.")
    return "\n".join(out) if out else "  - none measured yet."


def document(rows: Sequence[Row], seconds: float) -> str:
    triton_T = _lengths(rows, "triton")
    return f"""# Numerics: error against the float64 oracle

Generated by `python -m benchmarks.numerics` (recurgen {recurgen.__version__}, torch {torch.__version__});
do not edit by hand. Measuring took {seconds / 60:.0f} min on a shared 2-core CPU, summed over several runs
(some in parallel) merged with `--merge`.

Setup: B = 1, H = 1, every free dim 8, one seed, inputs drawn from each spec's declared domains and cast
to the dtype under test; the oracle gets the same rounded inputs in float64, so the numbers are the error of
the computation, not of the input quantisation. Outputs are returned in the input dtype (so bf16/fp16 errors
include rounding the output); final states are always fp32. `rel err` = max |out − ref| / max |ref|.
Forward only: outputs and final states (gradients are checked against the oracle by the kernel tests, not
tabulated here).

- **Modes.** `triton` is the fused recurrent kernel (`mode="recurrent"`), run here in Triton's CPU
  interpreter (no GPU was available; the interpreter computes in fp32 like the compiled kernel, but it is not
  a GPU measurement) at {triton_T}. `torch` is the pure-torch path (the same step, fp32) at
  {_lengths(rows, "torch")}. `chunk` is the chunked-parallel kernels (`mode="chunk"`, chunks of 64 tokens,
  interpreter) at {_lengths(rows, "chunk")}. {_no_chunk_sentence()}
  The interpreter is slow (from 9 s to 6 min per chunk-mode forward at T = 4096 on this shared machine;
  complex scans are the slowest), so chunk mode covers the grid only in part, and T = 65536 only a spec or
  two per kernel family. Measured chunk cells (spec (decays)):
{_chunk_coverage(rows)}
- **bf16 under the interpreter.** Triton 3.9's interpreter truncates when it stores fp32 to bf16 (a one-line
  kernel storing 1.00703 gives 1.0 where torch gives 1.0078), so Triton bf16 rows show up to one bf16 ulp
  (2^-8 ≈ 3.9e-3 of a value, up to 2^-7 of max |ref|) where the torch path shows half an ulp. Compiled Triton
  on a GPU rounds to nearest. The kernels themselves compute in fp32 either way.
- **Decays.** Specs with `logdecay` inputs have three rows per backend × dtype: `random` (the spec's domain),
  `strong` (every log-decay input ≈ −5 per step, i.e. decay ≈ 0.007) and `near-1` (≈ −1e-4, decay ≈ 0.9999:
  over thousands of tokens almost nothing is forgotten). Other specs have `random` only.

## Summary

The tests (`tests/reliability/test_numerics.py`) pin the last column: the recurrent and torch bounds at
T = 16 (every torch row, the Triton fp32 rows and the Triton bf16 rows of each spec's own domain; `-m slow`
runs every row at T = 256), the chunk bounds at T = {CHUNK_TEST_T} (fp32 rows of each chunked spec's own domain
in the default run; `-m slow` runs every chunk row at T = {CHUNK_SLOW_T}). One documented exception: `hgrn2` with
near-1 decay computes `1 − exp(g)`, which cancels in fp32 (g ≈ −1e-4 leaves ~4 significant digits), so its rows
are allowed {CANCELLATION[("hgrn2", "near-1")]:g} in every dtype and backend (they are left out of the summary;
see them below) — an error of the spec's arithmetic (an `expm1` rewrite would remove it), not of the kernel.
In chunk mode, tl.dot operands are in the input dtype; where one is a formula of the inputs ({", ".join(
f"`{n}`: {f}" for n, f in CHUNK_DERIVED_OPERANDS.items())}) it is rounded to bf16/fp16 there, so that spec's
half-dtype chunk final states are allowed the dtype's output bound (and show it in the state column).
`rwkv7` rows use the model's own parametrisation of `a` and `b` (a = −κ̂, b = κ̂ ⊙ a_gate): independent normal
draws, which its declared domains allow, make the state grow to 1e15 within 64 tokens.

{summary(rows)}

## Every row

{table(rows)}
"""


def rows_from_table(text: str) -> tuple[list[Row], float]:
    """Read the rows (and the run time) back from a document this script wrote, to re-render it."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        spec, decay, backend, dtype, T, abs_err, ref_max, rel, state = cells
        rows.append(Row(spec.strip("`"), decay, backend, dtype, int(T), float(abs_err), float(ref_max), float(rel),
                        float(state), 0.0))
    took = re.search(r"(?:It took|Measuring took) (\d+) min", text)
    return rows, 60.0 * float(took.group(1)) if took else 0.0


def _key(r: Row) -> tuple[str, str, str, str, int]:
    return r.spec, r.decay, r.backend, r.dtype, r.T


def merged(old: Sequence[Row], new: Sequence[Row]) -> list[Row]:
    """`old` with `new` added; a new row replaces an old one of the same spec, decay, backend, dtype and T."""
    fresh = {_key(r) for r in new}
    rows = [r for r in old if _key(r) not in fresh] + list(new)
    order = {b: i for i, b in enumerate(BACKENDS)}
    return sorted(rows, key=lambda r: (r.spec, list(DECAYS).index(r.decay), order[r.backend], r.T,
                                       list(DTYPES).index(r.dtype)))


def _read(path: Path) -> tuple[list[Row], float]:
    return rows_from_table(path.read_text(encoding="utf-8")) if path.exists() else ([], 0.0)


def _length(backend: str, args: argparse.Namespace) -> int:
    return {"triton": args.T, "torch": args.torch_T, "chunk": args.chunk_T}[backend]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.numerics", description=__doc__.split("\n")[0])
    p.add_argument("--T", type=int, default=4096, help="sequence length for the Triton (interpreter) rows")
    p.add_argument("--torch-T", type=int, default=4096, help="sequence length for the torch-path rows")
    p.add_argument("--chunk-T", type=int, default=4096, help="sequence length for the chunk-mode rows")
    p.add_argument("--specs", default="", help="comma-separated spec names (default: every bundled spec)")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--dtypes", default=",".join(DTYPES))
    p.add_argument("--decays", default=",".join(DECAYS), help="decay regimes to run (where a spec has them)")
    p.add_argument("--out", default="docs/numerics.md")
    p.add_argument("--keep", action="store_true", help="keep the rows already in --out (new rows replace equal ones)")
    p.add_argument("--merge", nargs="*", default=None, metavar="DOC",
                   help="add the rows of these documents to --out and re-render it, without measuring")
    p.add_argument("--rerender", action="store_true",
                   help="re-render --out from the rows already in it (after editing the text, without re-measuring)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.rerender or args.merge is not None:
        rows, seconds = _read(out)
        for other in args.merge or []:
            more, more_seconds = _read(Path(other))
            rows, seconds = merged(rows, more), seconds + more_seconds
        out.write_text(document(rows, seconds), encoding="utf-8")
        return 0
    specs = [s for s in args.specs.split(",") if s] or list(bundled_spec_names())
    old, seconds = _read(out) if args.keep else ([], 0.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows: list[Row] = []
    for name, decay, backend, dtype in cases(specs, args.backends.split(","), args.dtypes.split(",")):
        if decay not in args.decays.split(","):
            continue
        T = _length(backend, args)
        row = measure(name, backend, dtype, T, decay)
        rows.append(row)
        print(f"{name:18s} {decay:7s} {backend:6s} {dtype:5s} T={T:5d} rel={_fmt(row.rel_err)} "
              f"state={_fmt(row.state_rel_err)} ({row.seconds:.1f} s)", file=sys.stderr, flush=True)
        # written after every row: a long run stopped early still leaves what it measured
        out.write_text(document(merged(old, rows), seconds + time.perf_counter() - start), encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
