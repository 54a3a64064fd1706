"""compare: tolerance checks that say where they failed, and a forward/backward runner that collects gradients.

Moved here from the project's tests (which re-export it) so that `recurgen.testing` and `recurgen verify` use the
very checks the project's own kernel tests use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from recurgen import ir
from recurgen.oracle import run as run_reference

# --- comparing -------------------------------------------------------------------------------------------

def rms_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Root-mean-square of `actual - expected`, in float64 (0 for empty tensors)."""
    if expected.numel() == 0:
        return 0.0
    d = _wide(actual) - _wide(expected)
    return float(d.abs().square().mean().sqrt())


def _wide(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(torch.complex128 if x.is_complex() else torch.float64).cpu()


def _where(flat_index: int, shape: torch.Size) -> tuple[int, ...]:
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat_index), shape))


def assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, *, atol: float, rtol: float,
                 ref: torch.Tensor | None = None, fudge: float = 2.0) -> None:
    """Elementwise |actual - expected| <= atol + rtol * |expected|, with a message that says where it failed.

    `expected` is the float64 golden. When `ref` (the same computation in the low-precision dtype) is given,
    also require rms(actual - expected) <= fudge * rms(ref - expected) (or <= atol when the reference is
    exact): a kernel may be as wrong as an honest low-precision computation, not more (FlexAttention's
    golden/ref/compiled scheme). Then atol/rtol can be loose sanity bounds; the ratio does the real work.

    Raises:
        AssertionError: naming `name`, the worst element (index, both values, error, allowed error), how many
            elements failed, the largest |expected|, and the RMS errors.
    """
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{name}: shape {list(actual.shape)} != expected {list(expected.shape)}")
    a, e = _wide(actual), _wide(expected)
    if e.numel() == 0:
        return
    bad_a, bad_e = ~torch.isfinite(a), ~torch.isfinite(e)
    # Non-finite values compare equal only when both are the same infinity; NaN never matches.
    mismatch = (bad_a | bad_e) & ~((a == e) & bad_a)
    if mismatch.any():
        idx = _where(int(mismatch.flatten().nonzero()[0]), a.shape)
        raise AssertionError(f"{name}: {int(mismatch.sum())}/{a.numel()} non-finite mismatch(es); first at "
                             f"{idx}: actual={a[idx].item()} expected={e[idx].item()}")
    finite = ~bad_a
    err = torch.where(finite, (a - e).abs(), torch.zeros((), dtype=torch.float64))
    allowed = atol + rtol * torch.where(finite, e.abs(), torch.zeros((), dtype=torch.float64))
    excess = err - allowed
    failed = excess > 0
    rms = rms_error(a[finite], e[finite])
    lines = []
    if failed.any():
        flat = int(excess.flatten().argmax())
        idx = _where(flat, a.shape)
        lines.append(f"{int(failed.sum())}/{a.numel()} elements differ by more than atol={atol:g} + rtol={rtol:g}"
                     f"*|expected|; worst at {idx}: actual={a[idx].item():.10g} expected={e[idx].item():.10g} "
                     f"|diff|={err[idx].item():.3e} (allowed {allowed[idx].item():.3e})")
    if ref is not None:
        if tuple(ref.shape) != tuple(expected.shape):
            raise AssertionError(f"{name}: ref shape {list(ref.shape)} != expected {list(expected.shape)}")
        ref_rms = rms_error(ref, expected)
        # An exact reference (error 0) leaves only atol to compare against.
        bound = fudge * ref_rms if ref_rms > 0 else atol
        if not rms <= bound:
            lines.append(f"rms error {rms:.3e} > {fudge:g} * rms error of the reference ({ref_rms:.3e})")
    if lines:
        lines.append(f"max |expected| = {e[finite].abs().max().item():.3e}, rms error = {rms:.3e}, "
                     f"shape {list(a.shape)}")
        raise AssertionError(f"{name}: " + "\n  ".join(lines))


# --- forward and backward --------------------------------------------------------------------------------

def _flatten(result: Any, prefix: str = "out") -> list[tuple[str, torch.Tensor | None]]:
    """Name the tensors of a (nested) result: mapping keys as they are, sequence items as `{prefix}{i}`."""
    if result is None or isinstance(result, torch.Tensor):
        return [(prefix, result)]
    if isinstance(result, Mapping):
        return [item for k, v in result.items() for item in _flatten(v, str(k))]
    if isinstance(result, (tuple, list)):
        if len(result) and all(isinstance(r, Mapping) for r in result):
            return [item for r in result for item in _flatten(r)]
        return [item for i, r in enumerate(result) for item in _flatten(r, f"{prefix}{i}")]
    raise TypeError(f"cannot collect outputs of type {type(result).__name__}")


def run_fwd_bwd(fn: Callable[..., Any], inputs: Mapping[str, Any],
                grad_outputs: Mapping[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
    """Call `fn(**inputs)` on fresh leaf copies, backpropagate `grad_outputs`, collect everything.

    Args:
        fn: returns a tensor, a tuple of tensors (named `out0`, `out1`, ...), a mapping of named tensors, or
            a tuple of mappings (as `reference.run` does: its outputs and final states by name); None
            entries (e.g. no final state) are skipped.
        inputs: keyword arguments of `fn`. Floating and complex tensors (and tuples of them, such as a
            multi-state `initial_state`) get gradients; anything else (options, None, integer offsets) is
            passed through. The caller's tensors are never modified.
        grad_outputs: the gradient of each output, by the names above; outputs left out (or None) get none.
    Returns:
        The forward outputs by name, and the gradient of each differentiable input as `d<name>` (`dq`,
        `dinitial_state`; tuple entries as `dinitial_state0`, ...). An input the outputs do not depend on
        gets zeros, so tests can compare it like any other.
    Raises:
        KeyError: `grad_outputs` names an output `fn` did not return.
        ValueError: two outputs share a name, or an output name collides with a gradient name.
    """
    leaves: dict[str, torch.Tensor] = {}

    def leaf(name: str, x: Any) -> Any:
        if isinstance(x, torch.Tensor) and (x.is_floating_point() or x.is_complex()):
            leaves[name] = x.detach().clone().requires_grad_(True)
            return leaves[name]
        return x

    call_args = {}
    for name, x in inputs.items():
        if isinstance(x, (tuple, list)):
            call_args[name] = type(x)(leaf(f"{name}{i}", xi) for i, xi in enumerate(x))
        else:
            call_args[name] = leaf(name, x)
    named = [(n, t) for n, t in _flatten(fn(**call_args)) if t is not None]
    names = [n for n, _ in named]
    grads_named = {f"d{n}" for n in leaves}
    dup = {n for n in names if names.count(n) > 1} | (set(names) & grads_named)
    if dup:
        raise ValueError(f"ambiguous output name(s) {', '.join(sorted(dup))}")
    outputs = dict(named)
    unknown = [n for n in grad_outputs if n not in outputs]
    if unknown:
        raise KeyError(f"grad_outputs names {', '.join(unknown)}, but the outputs are {', '.join(names)}")
    pairs = [(outputs[n], g) for n, g in grad_outputs.items() if g is not None and outputs[n].requires_grad]
    result = {n: t.detach() for n, t in outputs.items()}
    grads: Sequence[torch.Tensor | None] = [None] * len(leaves)
    if pairs and leaves:
        grads = torch.autograd.grad([o for o, _ in pairs], list(leaves.values()),
                                    [g.to(dtype=o.dtype, device=o.device) for o, g in pairs],
                                    allow_unused=True)
    for (n, x), g in zip(leaves.items(), grads, strict=True):
        result[f"d{n}"] = torch.zeros_like(x) if g is None else g.detach()
    return result


def reference_fn(spec: ir.Spec, options: Mapping[str, float | torch.Tensor | None] | None = None,
                 dtype: torch.dtype = torch.float64) -> Callable[..., tuple[dict, dict]]:
    """`recurgen.oracle.run` as a keyword function `fn(initial_state=None, **tensors)`, for `run_fwd_bwd`."""

    def fn(initial_state: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
           **tensors: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return run_reference(spec, tensors, options=options, initial_state=initial_state, dtype=dtype)

    return fn
