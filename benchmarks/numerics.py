"""Max error of every bundled spec against the float64 oracle, per backend × dtype × decay regime.

    TRITON_INTERPRET=1 python -m benchmarks.numerics            # writes docs/numerics.md
    python -m benchmarks.numerics --T 256 --out /tmp/n.md --specs gla,hgrn
    python -m benchmarks.numerics --backends chunk --chunk-T 65536 --specs gla --out /tmp/long.md
    python -m benchmarks.numerics --merge /tmp/long.md            # adds those rows to docs/numerics.md

Each row runs one spec at B = H = 1 with small dims (every free dim 8) on inputs drawn from the spec's
declared domains (tests/helpers.py), cast to the dtype under test. The oracle is fed the *same* rounded
inputs in float64, so the error measured is the kernel's own (accumulation, output rounding), not the
quantisation of its inputs. Specs with `logdecay` inputs get two extra rows per dtype with every
log-decay input and param pinned near a value: strong (g ≈ -5 per step: the state forgets within a few tokens) and
near-1 (g ≈ -1e-4: nothing is forgotten over the whole sequence, the state grows like T).

`rel` is max |out - ref| / max |ref| (outputs over all of B, T, H and dims; final states likewise), the
number the tests in tests/reliability/test_numerics.py pin at small T (see `TOLERANCES`).

With `--grad` a row also measures the backward pass: the kernel's gradients of every input, param and the
initial state (a zero initial state is passed, so the forward is unchanged) against the gradients of the
float64 oracle (autograd through its per-token loop), both driven by the same upstream gradients (a seeded
normal draw for every output and final state, rounded to that tensor's dtype). The `grad` column is the worst
per-tensor max |g - g_ref| / max |g_ref|, with the tensor it came from:

    python -m benchmarks.numerics --backends chunk --dtypes fp32 --decays random --grad --specs gla --out /tmp/g.md

Profile of one cell (dims 8, T = 4096, this machine): the interpreter's kernels take ~97-99 % of it (gla: the
intra-chunk attention kernel alone 92 % of the forward); the float64 oracle takes 0.5-6 s forward, 2-20 s
forward + backward, and input generation < 0.1 s. Everything is linear in T, so a T = 65536 cell costs 16
T = 4096 cells. This script installs recurgen.testing.interpreter's speed-ups, which change no computed bit:
without them, hgrn's `tl.associative_scan` (the stock interpreter calls the combine function per element) was
86 % of its cell and gateloop's complex scan ran 4x slower. The generated torch path run in float64 is no real
saving (1.0-1.6x faster than the oracle with autograd) and is not used.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from recurgen.oracle import infer_sizes
from recurgen.resources import bundled_spec_names
from recurgen.testing.interpreter import speed_up
from tests.helpers import random_inputs

speed_up()  # the same bits as the stock interpreter, faster (recurgen/testing/interpreter.py)

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
# Gradients (`--grad`): worst per-tensor relative error of every input's, param's and the initial state's
# gradient against the oracle's, per backend and dtype (set from the measured table; see docs/numerics.md).
# The token-by-token paths (triton, torch) are held to their forward bounds: the table's gradient rows there
# (mlstm at T = 4096) stay within them, and the tests check every spec at small T.
GRAD_TOLERANCES: dict[str, dict[str, float]] = {"chunk": {"fp32": 1e-4, "bf16": 1e-2, "fp16": 1e-3},
                                                "triton": dict(TOLERANCES), "torch": dict(TOLERANCES)}
# mLSTM's chunk mode in half dtypes: its key operand k' = exp(ig - m) * scale * k is a formula of the inputs,
# handed to the kernels in the input dtype (CHUNK_DERIVED_OPERANDS), and the normaliser's division
# h = C q / max(|n q|, exp(-m)) amplifies that rounding in the backward: bf16 gradients are off by up to 7.7e-2
# (T = 4096, dq) and 1.8e-1 (T = 512, dk) of their largest value, where the recurrent kernel gives 2.4e-3.
# Keeping k' in fp32 brings the chunk gradients to 4.4e-3 (measured, T = 512); on a GPU that also needs fp32
# (tf32) dots for that call, whose bf16 tensor-core dot would round k' again: not done yet.
# The DPLR kernels (rwkv7) store what only enters a tl.dot (pair matrices, state-pass operands, P, dR, the
# chunk-start states) in the input dtype, also under the interpreter for fp16 (bf16 stays fp32 there: the
# interpreter truncates fp32 -> bf16 stores), so its fp16 rows carry the rounding a GPU's fp16 dots give
# (rwkv7 fp16, T = 4096: final state 2.4e-4, where the interpreter's fp32 operands gave 8.4e-8).
CHUNK_STORED_OPERANDS = {"rwkv7": "the DPLR family's stored dot operands"}
CHUNK_HALF_GRAD = {"mlstm": {"bf16": 0.25, "fp16": 5e-3}}
# Gradients that are sums over every token and cancel: simple_gla's `g_gamma` (one log-decay per head) gets
# dg_gamma = Σ_t dg_t, and with this setup Σ_t |dg_t| / |Σ_t dg_t| ≈ 250 (T = 64, 100 and 4096), so the
# per-token dg error of the chunk backward (a few 1e-6 of max |dg|, as for the other specs) is multiplied by
# ~250 relative to |dg_gamma|. An error of the metric on an ill-conditioned sum, not of one token's gradient.
# With strong decays (g + g_gamma ≈ -10 per step) the sum cancels harder still: 1.6e-2 at T = 100, 4.0e-2 at
# T = 300 (fp32; the same with the stock interpreter and before the generated code was tidied).
GRAD_CANCELLATION: dict[tuple[str, str], dict[str, float]] = {
    ("simple_gla", "random"): {"fp32": 3e-3, "bf16": 1e-2, "fp16": 3e-3},
    ("simple_gla", "strong"): {"fp32": 5e-2},
}
# The WY chunk core (delta-rule family) with fp16 inputs runs as on a GPU, under the interpreter too: fp16 dot
# operands, and W, U, the new values U~, the chunk states and their gradients kept in fp16 between its kernels
# (issue 15: 2-3x fewer bytes). The state update then adds fp16-rounded U~ every chunk, so outputs, final states and
# gradients carry fp16 rounding (measured: up to 1.0e-3 / 9.3e-4 / 2.0e-3 at T = 300, near-1 decays) rather than the
# fp32-compute bound. bf16 still computes in fp32 under the interpreter (its bf16 arithmetic is wrong); on a GPU
# it rounds the same operands to bf16. The channel gate (kda) keeps fp32 operands for fp16 (range), so is not here.
CHUNK_HALF_WY = {"gated_delta_rule": 4e-3, "delta_rule": 4e-3, "delta_product": 4e-3, "comba": 4e-3}
CHUNK_TEST_T, CHUNK_SLOW_T = 100, 300  # lengths the tests pin chunk mode at: partial chunks, several chunks
# Rows whose error comes from the spec's own arithmetic, not the kernel: hgrn2 feeds `1 - exp(g)` to its
# state, which at g ≈ -1e-4 cancels to ~4 significant digits in fp32 (an expm1 rewrite would fix it).
CANCELLATION = {("hgrn2", "near-1"): 1e-3}
# Rows whose error comes from the Triton interpreter's exp: numpy's float32 exp, biased by ≈ -1.2e-8 relative on
# arguments near -2e-4 (torch's is unbiased: 3e-12). With a near-1 decay applied to the whole state every token
# (simple_gla: one decay per head, exp(g + g_gamma) with both pinned near -1e-4) the bias compounds over the
# ~1/(1 - decay) tokens the state remembers: 1.1e-5 of the final state at T = 1024 (the torch path: 2.2e-6 at
# T = 4096; chunk mode, which exponentiates differences of cumulative sums, 5.6e-7).
INTERPRETER_EXP = {("simple_gla", "near-1", "triton"): 3e-5, ("rwkv5", "near-1", "triton"): 3e-5}
# Gradients of a per-head parameter sum a term over every token (mamba's A, rwkv5's decay w, rwkv6's bonus u): in
# the two-sweep recurrent backward (docs/recurrent_backward.md) that running sum carries fp32 rounding over T = 1024
# tokens, the cancellation simple_gla's g_gamma shows (measured: rwkv5 6.1e-5 random and 1.5e-3 strong, rwkv6
# 1.5e-5 strong). Not the order of the sums: with both running sums (the decay's z_t and dw = Σ_t z_t) compensated
# (Kahan) in the kernel, rwkv5's dw measured 7.0e-5 random and 1.46e-3 strong (T = 1024, fp32). The error is the
# rounding of the state-sized terms z_t differences (S_(t-1) ⊙ R_t against B_t ⊙ dS_t), which cancel to a far
# smaller dw. The partials across tiles and sequences are added by a kernel in a fixed order (_sum_parts). mamba's
# decay gradient is split in two sums that cancel (codegen/sweeps.py, factored decays: no [E, N] scratch per token),
# restarted every 64 tokens: dA 2.1e-4 in fp32 (3.8e-5 with the unsplit running sum; 7.1e-4 unrestarted).
PARAM_GRAD_SUM: dict[tuple[str, str], dict[str, float]] = {
    ("mamba", "random"): {"fp32": 3e-4}, ("rwkv5", "random"): {"fp32": 1e-4},
    ("rwkv5", "strong"): {"fp32": 3e-3, "fp16": 3e-3}, ("rwkv5", "near-1"): {"fp32": 1e-4},
    ("rwkv6", "strong"): {"fp32": 3e-5},
}
# A gradient beyond its dtype's range is compared as the reference rounded to that dtype (`_representable`):
# rwkv5's per-head decay gradient with near-1 decays and fp16 inputs is dw ≈ 6.1e5 at T = 1024 (the state grows
# like T and dw sums a state-sized term over every token), beyond fp16's 65504, so every backward of an fp16 w
# (torch's own too) stores inf there.


def tolerance(spec: str, decay: str, dtype: str, backend: str = "triton") -> float:
    bounds = CHUNK_TOLERANCES if backend == "chunk" else TOLERANCES
    wy = CHUNK_HALF_WY.get(spec, 0.0) if (backend, dtype) == ("chunk", "fp16") else 0.0
    return max(bounds[dtype], CANCELLATION.get((spec, decay), 0.0), INTERPRETER_EXP.get((spec, decay, backend), 0.0),
               wy)


# Chunk mode feeds tl.dot its operands in the input dtype (bf16/fp16, as flash-linear-attention does). Where an
# operand is a formula of the inputs rather than an input, it is rounded there and the final state carries
# that rounding (an input quantisation the oracle does not share): those specs' half-dtype chunk-mode states
# get the dtype's output bound instead of fp32's.
CHUNK_DERIVED_OPERANDS = {"hgrn2": "k = 1 − exp(g)", "mamba2": "v = softplus(dt + dt_bias) ⊙ x",
                          "mlstm": "k = exp(ig − m) ⊙ scale · k", "comba": "k = β ⊙ k, u = −exp(g) β ⊙ k"}


# Final states from bf16/fp16 inputs with near-1 decays, token by token: the half-precision log-decays take only
# a few distinct values, so the fp32 exp's rounding error repeats instead of averaging out, and compounds over
# the ~1/(1 - decay) tokens the state remembers: 1.2e-5 to 1.4e-5 on the torch path at T = 4096 (gateloop, gla,
# hgrn, rwkv6), where fp32 inputs give 2.6e-6 at most. Chunk mode of the scan family applies each token's decay
# in turn too (gateloop, hgrn: 1.3e-5 to 1.6e-5 at T = 4096, 3.6e-5 to 5.6e-5 at T = 65536); the other families,
# which exponentiate differences of cumulative sums, stay within fp32's bound.
HALF_NEAR1_STATE = 1e-4


def _scan_chunked(spec: str) -> bool:
    """The spec's chunk mode runs the scan family (each token's decay applied in turn, as token by token)."""
    return any(family == "scan" for family, _ in getattr(recurgen.load(spec).module, "_CHUNK_TORCH", {}).values())


def state_tolerance(spec: str, decay: str, dtype: str, backend: str = "triton") -> float:
    """Bound on the final state's relative error: fp32's (states are fp32), but see CHUNK_DERIVED_OPERANDS and
    HALF_NEAR1_STATE."""
    if backend == "chunk" and dtype != "fp32" and (spec in CHUNK_DERIVED_OPERANDS or spec in CHUNK_STORED_OPERANDS
                                                   or (dtype == "fp16" and spec in CHUNK_HALF_WY)):
        return tolerance(spec, decay, dtype, backend)
    if dtype != "fp32" and decay == "near-1" and (backend != "chunk" or _scan_chunked(spec)):
        return max(HALF_NEAR1_STATE, tolerance(spec, decay, "fp32", backend))
    return tolerance(spec, decay, "fp32", backend)


def grad_tolerance(spec: str, decay: str, dtype: str, backend: str = "chunk") -> float | None:
    """Bound on a row's gradient error (`grad_rel_err`), or None where the table has no gradient rows."""
    bound = GRAD_TOLERANCES.get(backend, {}).get(dtype)
    if bound is None:
        return None
    special = max(GRAD_CANCELLATION.get((spec, decay), {}).get(dtype, 0.0),
                  PARAM_GRAD_SUM.get((spec, decay), {}).get(dtype, 0.0) if backend == "triton" else 0.0)
    if backend == "chunk":
        special = max(special, CHUNK_HALF_GRAD.get(spec, {}).get(dtype, 0.0),
                      CHUNK_HALF_WY.get(spec, 0.0) if dtype == "fp16" else 0.0)
    return max(bound, CANCELLATION.get((spec, decay), 0.0), special)


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
    grad_rel_err: float | None = None  # worst per-tensor relative gradient error; None: backward not measured
    grad_worst: str = ""  # the gradient it came from (`dq`, `dh0`, ...)


def logdecay_inputs(spec: ir.Spec) -> list[str]:
    """Every log-decay tensor: inputs and params (simple_gla's per-head `g_gamma` adds to its per-token `g`)."""
    return [t.name for t in (*spec.inputs, *spec.params) if t.domain.logspace]


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
            top = max(top, float(e.detach().abs().max()))
    return err, top


def inputs_for(spec: ir.Spec, T: int, dtype: torch.dtype, decay: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Inputs in `dtype`; for a pinned decay every log-decay input and param is `value * U(0.5, 1.5)`."""
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


def _wide(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.complex128 if x.is_complex() else torch.float64)


def _zero_states(spec: ir.Spec, xs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """A zero initial state per state (fp32, or complex64), for the gradient of the initial state."""
    sizes = infer_sizes(spec, xs)
    return [torch.zeros(1, 1, *(sizes.dims[d] for d in s.ty.dims),
                        dtype=torch.complex64 if s.ty.complex else torch.float32) for s in spec.states]


def _upstream(tensors: Sequence[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """The upstream gradient of each output / final state: a seeded normal draw in that tensor's dtype."""
    gen = torch.Generator().manual_seed(seed + 1)
    return [torch.randn(t.shape, generator=gen, dtype=torch.complex128 if t.is_complex() else torch.float64)
            .to(t.dtype) for t in tensors]


def _representable(g: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Elements whose reference lies beyond the gradient dtype's finite range (fp16: 65504) are right when the
    gradient holds the reference rounded to that dtype (±inf): left out of the comparison (both zeroed). A gradient
    is stored in its tensor's dtype, so no kernel can do better there."""
    if not g.dtype.is_floating_point or g.dtype == torch.float64 or r.is_complex():
        return g, r
    beyond = r.abs() > torch.finfo(g.dtype).max
    if not bool(beyond.any()):
        return g, r
    rounded = beyond & (g.to(r.dtype) == r.to(g.dtype).to(r.dtype))
    return g.masked_fill(rounded, 0), r.masked_fill(rounded, 0)


def _grad_errors(names: Sequence[str], grads: Sequence[torch.Tensor | None],
                 ref_grads: Sequence[torch.Tensor | None]) -> tuple[float, str]:
    """(worst per-tensor relative error, its name); a gradient one side has and the other lacks counts as zero."""
    worst, where = 0.0, ""
    for n, g, r in zip(names, grads, ref_grads, strict=True):
        if g is None and r is None:
            continue
        r64 = torch.zeros(()) if r is None else r
        g64 = torch.zeros_like(r64) if g is None else g
        g64, r64 = _representable(g64, r64)
        err, top = _rel(g64, r64)
        rel = err / top if top else err
        if not rel <= worst:  # NaN wins
            worst, where = rel, n
    return worst, where


def _flat(x: object) -> list[torch.Tensor]:
    return [x] if isinstance(x, torch.Tensor) else list(x)  # type: ignore[call-overload]


def measure(name: str, backend: str, dtype: str, T: int, decay: str = "random", seed: int = 0,
            grad: bool = False) -> Row:
    """One row; with `grad`, also the backward pass (see the module docstring)."""
    rec = recurgen.load(name)
    xs = inputs_for(rec.spec, T, DTYPES[dtype], decay, seed)
    kwargs: dict[str, object] = {}
    if grad:
        xs = {n: x.requires_grad_() for n, x in xs.items()}
        h0 = [s.requires_grad_() for s in _zero_states(rec.spec, xs)]
        kwargs["initial_state"] = h0[0] if len(h0) == 1 else tuple(h0)
    with torch.enable_grad() if grad else torch.no_grad():
        ref_xs = {n: _wide(x.detach()).requires_grad_(grad) for n, x in xs.items()}
        ref_h0 = [_wide(s.detach()).requires_grad_() for s in h0] if grad else []
        start = time.perf_counter()
        out, final = rec(*xs.values(), output_final_state=True, **kwargs, **_call_kwargs(backend))
        seconds = time.perf_counter() - start
        ref_kwargs = {"initial_state": ref_h0[0] if len(ref_h0) == 1 else tuple(ref_h0)} if grad else {}
        ref_out, ref_final = recurgen.reference(rec, *ref_xs.values(), output_final_state=True, **ref_kwargs)
    abs_err, ref_max = _rel(out, ref_out)
    s_err, s_max = _rel(final, ref_final)
    g_err, g_where = None, ""
    if grad:
        results = [*_flat(out), *_flat(final)]
        ups = _upstream(results, seed)
        leaves = [*xs.values(), *h0]
        names = [*(f"d{n}" for n in xs), *(f"d{s.name}0" for s in rec.spec.states)]
        grads = torch.autograd.grad(results, leaves, ups, allow_unused=True)
        ref_grads = torch.autograd.grad([*_flat(ref_out), *_flat(ref_final)], [*ref_xs.values(), *ref_h0],
                                        [_wide(u) for u in ups], allow_unused=True)
        g_err, g_where = _grad_errors(names, grads, ref_grads)
    return Row(name, decay, backend, dtype, T, abs_err, ref_max, abs_err / ref_max if ref_max else abs_err,
               s_err / s_max if s_max else s_err, seconds, g_err, g_where)


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


NOT_MEASURED = "–"


def _fmt_grad(r: Row) -> str:
    if r.grad_rel_err is None:
        return NOT_MEASURED
    return f"{_fmt(r.grad_rel_err)} (`{r.grad_worst}`)" if r.grad_worst else _fmt(r.grad_rel_err)


def table(rows: Sequence[Row]) -> str:
    lines = ["| spec | decay | backend | dtype | T | max abs err | max \\|ref\\| | rel err (out) | rel err (state) "
             "| rel err (grad) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r.spec}` | {r.decay} | {r.backend} | {r.dtype} | {r.T} | {_fmt(r.abs_err)} | "
                     f"{_fmt(r.ref_max)} | {_fmt(r.rel_err)} | {_fmt(r.state_rel_err)} | {_fmt_grad(r)} |")
    return "\n".join(lines)


def summary(rows: Sequence[Row]) -> str:
    """Worst relative error per backend × dtype × T (outside the CANCELLATION rows), and which row it came from."""
    lines = ["| backend | dtype | T | rows | worst rel err (out) | where | worst rel err (state) | tolerance (tests) "
             "| rows with grad | worst rel err (grad) | where | grad tolerance (tests) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lengths = sorted({r.T for r in rows})
    for backend in BACKENDS:
        for dtype in DTYPES:
            for T in lengths:
                # The documented cancellation rows have their own bound; they would hide the kernels' worst case.
                sel = [r for r in rows if r.backend == backend and r.dtype == dtype and r.T == T
                       and (r.spec, r.decay) not in CANCELLATION
                       and (r.spec, r.decay, r.backend) not in INTERPRETER_EXP]
                if not sel:
                    continue
                worst = max(sel, key=lambda r: r.rel_err)
                worst_state = max(r.state_rel_err for r in sel)
                bound = (CHUNK_TOLERANCES if backend == "chunk" else TOLERANCES)[dtype]
                with_grad = [r for r in sel if r.grad_rel_err is not None and (r.spec, r.decay) not in GRAD_CANCELLATION
                             and not (backend == "chunk" and dtype in CHUNK_HALF_GRAD.get(r.spec, {}))]
                grad_cells = f"0 | {NOT_MEASURED} | | "
                if with_grad:
                    g = max(with_grad, key=lambda r: r.grad_rel_err)  # type: ignore[arg-type,return-value]
                    grad_cells = (f"{len(with_grad)} | {_fmt(g.grad_rel_err)} | `{g.spec}` {g.decay} `{g.grad_worst}` "
                                  f"| ")
                grad_bound = GRAD_TOLERANCES.get(backend, {}).get(dtype)
                grad_cells += f"{grad_bound:g}" if grad_bound is not None else NOT_MEASURED
                lines.append(f"| {backend} | {dtype} | {T} | {len(sel)} | {_fmt(worst.rel_err)} | "
                             f"`{worst.spec}` {worst.decay} | {_fmt(worst_state)} | {bound:g} | {grad_cells} |")
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


def _grad_coverage(rows: Sequence[Row]) -> str:
    """Which rows carry a gradient error, per backend, length and dtype."""
    out = []
    for backend in BACKENDS:
        for T in sorted({r.T for r in rows if r.backend == backend}):
            for dtype in DTYPES:
                sel = [r for r in rows if r.backend == backend and r.T == T and r.dtype == dtype
                       and r.grad_rel_err is not None]
                if sel:
                    cells = ", ".join(f"`{r.spec}` {r.decay}" for r in sel)
                    out.append(f"  - {backend}, T = {T}, {dtype}: {cells}.")
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
The `rel err (grad)` column (rows marked `–` were not measured) is the backward pass: with a zero initial
state passed (the forward is unchanged), the kernel's gradients of every input, param and the initial state
against the oracle's (autograd through its float64 per-token loop), both driven by the same upstream gradients
(a seeded normal draw for every output and final state, rounded to that tensor's dtype); the worst per-tensor
max |g − g_ref| / max |g_ref|, with the gradient it came from. Rows with a gradient error:
{_grad_coverage(rows)}

- **Modes.** `triton` is the fused recurrent kernel (`mode="recurrent"`), run here in Triton's CPU
  interpreter (no GPU was available; the interpreter computes in fp32 like the compiled kernel, but it is not
  a GPU measurement) at {triton_T}. `torch` is the pure-torch path (the same step, fp32) at
  {_lengths(rows, "torch")}. `chunk` is the chunked-parallel kernels (`mode="chunk"`, chunks of 64 tokens,
  interpreter) at {_lengths(rows, "chunk")}. {_no_chunk_sentence()}
  The interpreter is slow, but with recurgen's bit-identical speed-ups (`recurgen.testing.interpreter`, which
  this script installs) a chunk-mode forward takes 1–14 s at T = 4096 and 16 s to 6 min at T = 65536 on this
  shared machine (three or four runs at once on its 2 cores); a row with gradients takes 3–11 times its
  forward. Profiled, the interpreter's kernels are 97–99 % of a cell (the float64 oracle 1–3 %), and cost is
  linear in T. T = 65536 rows are forward only. Measured chunk cells (spec (decays)):
{_chunk_coverage(rows)}
- **bf16 under the interpreter.** Triton 3.9's interpreter truncates when it stores fp32 to bf16 (a one-line
  kernel storing 1.00703 gives 1.0 where torch gives 1.0078), so Triton bf16 rows show up to one bf16 ulp
  (2^-8 ≈ 3.9e-3 of a value, up to 2^-7 of max |ref|) where the torch path shows half an ulp. Compiled Triton
  on a GPU rounds to nearest. The kernels themselves compute in fp32 either way.
- **Decays.** Specs with `logdecay` inputs have three rows per backend × dtype: `random` (the spec's domain),
  `strong` (every log-decay input and param ≈ −5 per step, i.e. decay ≈ 0.007) and `near-1` (≈ −1e-4, decay
  ≈ 0.9999: over thousands of tokens almost nothing is forgotten). Other specs have `random` only. The only
  log-decay param is `simple_gla`'s per-head `g_gamma`, which adds to its per-token `g` (so its pinned decay is
  about twice the value); rows of `simple_gla` measured before params were pinned too had a near-1 row whose
  decay was in fact `g_gamma`'s random draw: they were re-measured.

## Summary

The tests (`tests/reliability/test_numerics.py`) pin the `tolerance (tests)` columns: the recurrent and torch
bounds at T = 16 (every torch row, the Triton fp32 rows and the Triton bf16 rows of each spec's own domain;
`-m slow` runs every row at T = 256), the chunk bounds at T = {CHUNK_TEST_T} (fp32 rows of each chunked spec's own
domain in the default run; `-m slow` runs every chunk row at T = {CHUNK_SLOW_T}), and the chunk-mode gradient
bound (`grad tolerance`) at T = {CHUNK_TEST_T} (fp32, each spec's own domain; the costliest backward kernels, and
every decay at T = {CHUNK_SLOW_T}, under `-m slow`). Gradient bounds exist only where the table has gradient rows
(`–`: none). The exceptions (see their rows below):

- `hgrn2` with near-1 decay computes `1 − exp(g)`, which cancels in fp32 (g ≈ −1e-4 leaves ~4 significant
  digits), so its rows are allowed {CANCELLATION[("hgrn2", "near-1")]:g} in every dtype and backend (left out of the
  summary) — an error of the
  spec's arithmetic (an `expm1` rewrite would remove it), not of the kernel.
- {", ".join(f"`{n}` {d} ({b})" for n, d, b in INTERPRETER_EXP)} is allowed {", ".join(
f"{v:g}" for v in INTERPRETER_EXP.values())} (left out of the summary): the interpreter computes
  `exp` with numpy's float32 exp, which is biased (≈ −1.2e-8 relative near −2e-4, where torch's is
  unbiased), and a near-1 decay applied to the whole state every token compounds that bias over the
  ~1/(1 − decay) tokens the state remembers (1.1e-5 of the final state at T = 1024; the torch path shows
  2.2e-6 at T = 4096, chunk mode 5.6e-7). Whether a GPU's `exp` is biased the same way was not measured.
- Final states from bf16/fp16 inputs with near-1 decays on the token-by-token paths (triton, torch) and in
  the scan family's chunk mode (which also applies each token's decay in turn) are allowed {HALF_NEAR1_STATE:g} (the
  rows stay in the summary, which is why its bf16/fp16 state columns exceed fp32's bound): half-precision
  log-decays take few distinct values, so the fp32 `exp` rounding error repeats instead of averaging out and
  compounds over the tokens the state remembers (1.2e-5 to 1.4e-5 at T = 4096 on the torch path; in chunk mode
  for gateloop and hgrn 1.3e-5 to 1.6e-5 at T = 4096 and 3.6e-5 to 5.6e-5 at T = 65536; fp32 inputs give
  2.6e-6 at most).
- In chunk mode, tl.dot operands are in the input dtype; where one is a formula of the inputs ({", ".join(
f"`{n}`: {f}" for n, f in CHUNK_DERIVED_OPERANDS.items())}) it is rounded to bf16/fp16 there, so
  that spec's half-dtype chunk final states are allowed the dtype's output bound (and show it in the state
  column; these rows stay in the summary). The same holds for {", ".join(f"`{n}` ({f})" for n, f in
CHUNK_STORED_OPERANDS.items())}: stored in the input dtype (fp16; bf16 stays fp32 under the interpreter, whose
  bf16 stores truncate), they round as a GPU's dots round them. The chunk token kernels (docs/architecture.md)
  compute these formulas with the same rounding points (fp32 inside, one rounding to the input dtype where the
  operand is stored); outputs are stored in the input dtype from fp32, and each input's gradient is rounded once,
  after its two contributions (through the operands and through the readout) are added in fp32. Keeping the
  derived operands in fp32 needs them formed inside the families' kernels.
- The WY chunk core with fp16 inputs ({", ".join(f"`{n}`" for n in CHUNK_HALF_WY)}) runs as on a GPU, under the
  interpreter too: fp16 dot operands, and W, U, the new values U~, the chunk states and their gradients kept in
  fp16 between its kernels (2-3x fewer bytes). Each chunk's state update adds fp16-rounded U~, so its fp16 rows
  (outputs, final states, gradients) are allowed {", ".join(sorted({f"{v:g}" for v in CHUNK_HALF_WY.values()}))}
  and stay in the summary. Its bf16 rows still compute in fp32 under the interpreter (whose bf16 arithmetic is
  wrong); on a GPU the same operands are rounded to bf16. A single token's dβ is beyond that bound when it is a
  cancelling sum: dβ_t = Σ_v (k_tᵀ G)_v (v_t − S0ᵀ k_t)_v (G the cotangent of the updated state) adds V products whose
  magnitudes sum to ~37 times the result in the cases `recurgen verify` draws at T = 1, K = 3 (seeds of
  tests/testing/test_verify.py), and each product carries the fp16 rounding of dU~ and of S0 as a dot operand
  (2⁻¹¹): 37 · 2⁻¹¹ ≈ 1.8e-2 expected, 1.4e-2 (gated_delta_rule) and 2.5e-2 (delta_rule, another seed) measured
  — rounding of a cancelling sum, not a defect, and the same for any kernel that keeps these in fp16 (fla: bf16).
- Gradients: {", ".join(sorted({f"`{n}`" for n, _ in GRAD_CANCELLATION}))}'s `g_gamma` (one log-decay per head)
  has dg_gamma = Σ_t dg_t, a sum that cancels (Σ_t |dg_t| / |Σ_t dg_t| ≈ 250 here), so the chunk backward's
  per-token error (a few 1e-6 in fp32, as elsewhere) shows up to ~250 times larger relative to it (9.6e-4 at
  T = 100, 1.4e-5 at T = 4096), and more with strong decays (4.0e-2 at T = 300); its gradient rows are allowed
  {"; ".join(f"{d}: " + ", ".join(f"{t} {v:g}" for t, v in b.items()) for (_, d), b in GRAD_CANCELLATION.items())}
  and left out of the gradient summary.
- Recurrent gradients of per-head parameters summed over every token (mamba's A, rwkv5's w, rwkv6's u) carry the
  fp32 rounding of the two-sweep backward's state-sized terms, which cancel to a far smaller sum (the order of the
  sums is not the cause: with compensated sums in the kernel rwkv5's strong row measured 1.46e-3 against 1.50e-3;
  the partials of tiles and sequences are added by a kernel in a fixed order): allowed {"; ".join(
  f"`{n}` {d}: " + ", ".join(f"{t} {v:g}" for t, v in b.items()) for (n, d), b in PARAM_GRAD_SUM.items())}.
- A gradient whose exact value lies beyond its dtype's range is compared as that value rounded to the dtype:
  `rwkv5`'s dw with near-1 decays is ≈ 6.1e5 at T = 1024 (the state grows like T, and dw sums a state-sized
  term over every token), beyond fp16's 65504, so an fp16 `w` gets inf there from any backward (torch's own
  too); the rest of the row is compared as usual.
- Gradients in chunk mode, half dtypes: {", ".join(f"`{n}`" for n in CHUNK_HALF_GRAD)} rounds its derived key
  operand (above) to the input dtype, and its normaliser's division, h = C q / max(|n q|, exp(−m)), amplifies
  that rounding in the backward: its bf16/fp16 gradient rows are allowed {"; ".join(", ".join(
  f"{d} {v:g}" for d, v in b.items()) for b in CHUNK_HALF_GRAD.values())} and left out of the gradient
  summary (the recurrent kernel, which keeps everything in fp32, gives 2.4e-3 in bf16). Keeping that operand in
  fp32 brings the bf16 chunk gradients to 4.4e-3 (measured at T = 512); on a GPU it would also need fp32 (tf32)
  dots for that call, at a cost in tensor-core rate: not done yet.

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
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        spec, decay, backend, dtype, T, abs_err, ref_max, rel, state = cells[:9]
        grad, where = None, ""
        if len(cells) > 9 and cells[9] != NOT_MEASURED:  # older documents have no grad column
            value, _, rest = cells[9].partition(" ")
            grad, where = float(value), rest.strip("()` ")
        rows.append(Row(spec.strip("`"), decay, backend, dtype, int(T), float(abs_err), float(ref_max), float(rel),
                        float(state), 0.0, grad, where))
    took = re.search(r"(?:It took|Measuring took) (\d+) min", text)
    return rows, 60.0 * float(took.group(1)) if took else 0.0


def _key(r: Row) -> tuple[str, str, str, str, int]:
    return r.spec, r.decay, r.backend, r.dtype, r.T


def merged(old: Sequence[Row], new: Sequence[Row]) -> list[Row]:
    """`old` with `new` added; a new row replaces an old one of the same spec, decay, backend, dtype and T
    (a new forward-only row keeps the old row's gradient error: they measure the same computation)."""
    previous = {_key(r): r for r in old}
    fresh = {_key(r) for r in new}
    kept = [r for r in old if _key(r) not in fresh]
    for r in new:
        p = previous.get(_key(r))
        if r.grad_rel_err is None and p is not None and p.grad_rel_err is not None:
            r = dataclasses.replace(r, grad_rel_err=p.grad_rel_err, grad_worst=p.grad_worst)
        kept.append(r)
    rows = kept
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
    p.add_argument("--grad", action="store_true",
                   help="also measure the gradients (of every input, param and the initial state) against the oracle's")
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
        t0 = time.perf_counter()
        row = measure(name, backend, dtype, T, decay, grad=args.grad)
        rows.append(row)
        print(f"{name:18s} {decay:7s} {backend:6s} {dtype:5s} T={T:5d} rel={_fmt(row.rel_err)} "
              f"state={_fmt(row.state_rel_err)} grad={_fmt_grad(row)} (forward {row.seconds:.1f} s, "
              f"row {time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
        # written after every row: a long run stopped early still leaves what it measured
        out.write_text(document(merged(old, rows), seconds + time.perf_counter() - start), encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
