"""checks: one generated kernel family against the float64 oracle, on one concrete case.

Everything `recurgen verify`, the pytest plugin and `assert_matches_reference` do goes through here, so the
three can never disagree about what "matches the reference" means:

- the kernels compute in fp32 and store in the input dtype, so the oracle is fed the *same rounded inputs*
  (cast up to float64): only the kernels' own error counts, never the rounding of the inputs;
- the error allowed is relative to the largest magnitude of each compared tensor, with one tolerance per
  storage dtype (TOLERANCES); final states are stored in fp32;
- gradients are checked for every input, param and initial state, through one random cotangent per output
  and final state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from recurgen import ir
from recurgen.signature import by_public
from recurgen.testing.compare import assert_close
from recurgen.testing.sampling import random_inputs, random_state, resolve_sizes

# Error allowed relative to the largest magnitude of each compared tensor: the storage dtype's rounding.
# The same numbers as the project's own kernel tests; do not loosen them to make a failure pass.
TOLERANCES: dict[torch.dtype, float] = {torch.float32: 2e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}
# The kernel families a spec can have. `chunk` and `torch-chunk` (the Triton chunk kernels and the same families
# in plain torch) exist for specs with a chunk form; one without is reported as "not generated".
MODES: tuple[str, ...] = ("recurrent", "chunk", "torch", "torch-chunk", "step")


@dataclass(frozen=True)
class Case:
    """One concrete example: shapes, dtype, initial state, checkpointing, tiling and the seed of the values.

    Values are a function of the seed (see `sampling`), so a Case printed in a report replays exactly.
    `tile_budget` (fp32 state elements per program) forces a state to be split across several programs;
    None keeps the module's own plan.
    """

    B: int = 1
    T: int = 4
    H: int = 1
    sizes: Mapping[str, int] = field(default_factory=dict)
    dtype: str = "fp32"
    initial_state: bool = True
    checkpoint_every: int = 16
    tile_budget: int | None = None
    seed: int = 0
    splits: tuple[int, ...] = ()  # variable-length batch: these sequence lengths packed into one row (cu_seqlens)

    def __post_init__(self) -> None:
        if self.splits and (self.B != 1 or sum(self.splits) != self.T or min(self.splits) < 1):
            raise ValueError(f"splits {list(self.splits)} need B=1 and positive lengths summing to T={self.T}")

    def __str__(self) -> str:
        return self.to_arg()

    def to_arg(self) -> str:
        """The `--replay` form: `B=1,T=1,H=1,K=3,dtype=fp32,h0=1,ckpt=16,tile=none,seed=0`."""
        dims = ",".join(f"{k}={v}" for k, v in sorted(self.sizes.items()))
        tile = "none" if self.tile_budget is None else str(self.tile_budget)
        parts = [f"B={self.B}", f"T={self.T}", f"H={self.H}", *([dims] if dims else []), f"dtype={self.dtype}",
                 f"h0={int(self.initial_state)}", f"ckpt={self.checkpoint_every}", f"tile={tile}",
                 f"seed={self.seed}"]
        if self.splits:
            parts.append("varlen=" + "+".join(map(str, self.splits)))
        return ",".join(parts)

    @classmethod
    def from_arg(cls, text: str) -> Case:
        """Parse `to_arg`'s form back.

        Raises:
            ValueError: an entry that is not KEY=VALUE, an unknown dtype, or a value that is not a number.
        """
        fields: dict[str, Any] = {}
        sizes: dict[str, int] = {}
        for item in filter(None, (s.strip() for s in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"expected KEY=VALUE, got `{item}`")
            if key in ("B", "T", "H"):
                fields[key] = int(value)
            elif key == "dtype":
                if value not in DTYPES:
                    raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got `{value}`")
                fields["dtype"] = value
            elif key == "h0":
                fields["initial_state"] = value not in ("0", "false", "False")
            elif key == "ckpt":
                fields["checkpoint_every"] = int(value)
            elif key == "tile":
                fields["tile_budget"] = None if value == "none" else int(value)
            elif key == "seed":
                fields["seed"] = int(value)
            elif key == "varlen":
                fields["splits"] = tuple(int(v) for v in value.split("+") if v)
            else:
                sizes[key] = int(value)
        return cls(sizes=sizes, **fields)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def inputs(self, spec: ir.Spec, device: torch.device | str = "cpu") -> Inputs:
        """The call arguments of this case: every input and param in `dtype`, and the initial state(s) in fp32."""
        base = random_inputs(spec, self.B, self.T, self.H, self.sizes, torch.float64, self.seed)
        xs: dict[str, Any] = {n: x.to(self.torch_dtype).to(device) for n, x in base.items()}
        rows = len(self.splits) if self.splits else self.B  # one initial/final state per sequence
        h0 = random_state(spec, rows, self.H, self.sizes, torch.float32, self.seed, device=device)
        xs["initial_state"] = h0 if self.initial_state else None
        if self.splits:
            bounds = [0]
            for n in self.splits:
                bounds.append(bounds[-1] + n)
            xs["cu_seqlens"] = torch.tensor(bounds, dtype=torch.int64, device=device)
        return Inputs(xs, case=self)


class Inputs(dict):  # type: ignore[type-arg]
    """Call arguments by name (inputs, params, `initial_state`), remembering the Case they were drawn from.

    A plain dict works as `rec(**inputs)`; the Case makes a hypothesis counterexample print as shapes and a
    seed rather than as pages of tensor values.
    """

    def __init__(self, values: Mapping[str, Any], case: Case | None = None) -> None:
        super().__init__(values)
        self.case = case

    def __repr__(self) -> str:
        if self.case is not None:
            return f"Inputs({self.case.to_arg()})"
        shapes = ", ".join(f"{k}={list(v.shape)}" for k, v in self.items() if isinstance(v, torch.Tensor))
        return f"Inputs({shapes})"


@dataclass
class Comparison:
    """One compared tensor: its label, the worst error relative to its largest magnitude, and the verdict."""

    label: str
    rel_error: float
    passed: bool
    message: str = ""


@dataclass
class Outcome:
    """Every comparison of one check on one case."""

    comparisons: list[Comparison] = dataclasses.field(default_factory=list)
    skipped: str = ""  # why the case says nothing (e.g. the oracle overflows the dtype)
    unchecked: list[str] = dataclasses.field(default_factory=list)  # what a foreign function could not be checked for

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons)

    @property
    def worst(self) -> float:
        return max((c.rel_error for c in self.comparisons), default=0.0)

    def failures(self) -> list[Comparison]:
        return [c for c in self.comparisons if not c.passed]


def _wide(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(torch.complex128 if x.is_complex() else torch.float64).cpu()


def compare(outcome: Outcome, label: str, actual: torch.Tensor | None, expected: torch.Tensor, tol: float) -> None:
    """Check `actual` against `expected` within `tol` of the largest |expected|; record, never raise."""
    if actual is None:
        outcome.comparisons.append(Comparison(label, math.inf, False, f"{label}: no value (expected one)"))
        return
    a, e = _wide(actual), _wide(expected)
    scale = float(e.abs().max()) if e.numel() else 1.0
    # an exactly-zero expected value (a decay's gradient at T = 1, an unused input's) is a cancellation of terms
    # of the inputs' size, which strategies draw of order 1: judge its roundoff against that unit scale. So is
    # one below the dtype's tolerance at that scale (Based's dq at T = 1: o = v φ / (φ + 1e-6), terms of size 1
    # cancelling to 1e-6), which the dtype's roundoff of those terms cannot resolve.
    floor = 1.0 if scale < tol else 1e-3
    rel = math.inf
    if tuple(a.shape) == tuple(e.shape):
        rel = float((a - e).abs().max()) / max(scale, floor) if e.numel() else 0.0
        if math.isnan(rel):
            rel = math.inf
    try:
        assert_close(label, a, e, atol=tol * max(scale, floor), rtol=tol)
    except AssertionError as err:
        outcome.comparisons.append(Comparison(label, rel, False, str(err)))
        return
    outcome.comparisons.append(Comparison(label, rel, True))


def _tuple(x: Any) -> tuple[torch.Tensor, ...]:
    if x is None:
        return ()
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _split(spec: ir.Spec, inputs: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
    missing = [n for n in spec.arg_order if n not in inputs]
    if missing:
        raise ValueError(f"{spec.name}: inputs lack {', '.join(missing)} (expected {', '.join(spec.arg_order)})")
    xs = {n: inputs[n] for n in spec.arg_order}
    return xs, _tuple(inputs.get("initial_state"))


def _tol(dtype: torch.dtype, rtol: float | None) -> float:
    return rtol if rtol is not None else TOLERANCES.get(dtype, TOLERANCES[torch.float32])


@contextlib.contextmanager
def tile_budget(module: Any, budget: int | None) -> Iterator[None]:
    """Force at most `budget` fp32 state elements per program (restored after: modules are shared and cached)."""
    if budget is None or not hasattr(module, "STATE_TILE_BUDGET"):
        yield
        return
    saved = module.STATE_TILE_BUDGET, getattr(module, "BWD_STATE_TILE_BUDGET", None)
    module.STATE_TILE_BUDGET = budget
    if saved[1] is not None:
        module.BWD_STATE_TILE_BUDGET = max(budget // 2, 1)
    try:
        yield
    finally:
        module.STATE_TILE_BUDGET = saved[0]
        if saved[1] is not None:
            module.BWD_STATE_TILE_BUDGET = saved[1]


def _oracle_copy(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(torch.complex128 if x.is_complex() else torch.float64).requires_grad_()


def _overflows(tensors: Sequence[torch.Tensor], dtype: torch.dtype) -> bool:
    """The exact result is not representable in `dtype`: no kernel can match it, so the case proves nothing."""
    limit = torch.finfo(dtype).max / 16
    return any(t.numel() and not bool((_wide(t).abs() < limit).all()) for t in tensors)


def check_forward_backward(rec: Any, inputs: Mapping[str, Any], *, fn: Any = None, backend: str | None = None,
                           grads: bool = True, rtol: float | None = None, checkpoint_every: int | None = None,
                           seed: int = 0) -> Outcome:
    """Outputs, final states and (with `grads`) the gradient of every input, param and initial state.

    Args:
        rec: a `recurgen.Recurrence` (its `.spec` feeds the oracle).
        fn: the entry point to check (default: the recurrent one, `rec.__call__`); the chunk kernels go here.
        backend: "triton", "torch" or None (the module's own choice).
        seed: of the random cotangents.
    """
    spec: ir.Spec = rec.spec
    xs, h0 = _split(spec, inputs)
    dtype = next(iter(xs.values())).dtype
    tol = _tol(dtype, rtol)
    state_tol = _tol(torch.float32, rtol) if dtype == torch.float32 else tol
    call = fn if fn is not None else rec
    outcome = Outcome()
    accepts = getattr(rec, "accepts", None)  # a foreign function (foreign.Subject): check what it has
    if accepts is not None and not accepts.cu_seqlens and inputs.get("cu_seqlens") is not None:
        outcome.skipped = "the function takes no `cu_seqlens`: packed sequences not checked"
        outcome.unchecked.append("variable-length batches (no `cu_seqlens` parameter)")
        return outcome
    if accepts is not None and not accepts.initial_state and h0:
        h0 = ()
        outcome.unchecked.append("initial state (no `initial_state` parameter: run from zero states)")
    kx = {n: x.detach().clone().requires_grad_(grads) for n, x in xs.items()}
    kh = [h.detach().clone().requires_grad_(grads) for h in h0]
    kwargs: dict[str, Any] = {"initial_state": kh or None, "output_final_state": True}
    if backend is not None:
        kwargs["backend"] = backend
    if checkpoint_every is not None:
        kwargs["checkpoint_every"] = checkpoint_every
    cu = inputs.get("cu_seqlens")
    varlen = {} if cu is None else {"cu_seqlens": cu}
    # by keyword: an api line may place a non-tensor argument (mamba2's chunk_size) between the tensors
    out, fin = call(**by_public(spec, kx), **kwargs, **varlen)
    # the oracle sees exactly the rounded inputs the kernel saw, in float64
    rx = {n: _oracle_copy(x) for n, x in xs.items()}
    rh = [_oracle_copy(h) for h in h0]
    from recurgen.api import reference

    rout, rfin = reference(spec, **by_public(spec, rx), initial_state=rh or None, output_final_state=True, **varlen)
    outs, routs, fins, rfins = _tuple(out), _tuple(rout), _tuple(fin), _tuple(rfin)
    if accepts is not None and fin is None and spec.states:
        fins = rfins = ()
        why = "no `output_final_state` parameter" if not accepts.output_final_state else "it returned None"
        outcome.unchecked.append(f"final state ({why})")
    if _overflows([*routs], dtype) or _overflows([*rfins], torch.float32):
        outcome.skipped = f"the exact result overflows {dtype}"
        return outcome
    for what, got, want in (("outputs", outs, spec.outputs), ("final states", fins, spec.states[: len(rfins)])):
        if len(got) != len(want):
            outcome.comparisons.append(Comparison(what, math.inf, False,
                                                  f"{what}: {getattr(rec, 'label', 'the module')} returned "
                                                  f"{len(got)} tensor(s), the spec "
                                                  f"declares {len(want)} ({', '.join(t.name for t in want)})"))
    if not outcome.passed:
        return outcome
    for o, ro, meta in zip(outs, routs, spec.outputs, strict=True):
        if o.dtype != dtype:
            outcome.comparisons.append(Comparison(f"output {meta.name}", math.inf, False,
                                                  f"output {meta.name}: dtype {o.dtype}, expected {dtype}"))
            continue
        compare(outcome, f"output {meta.name}", o, ro, tol)
    for f, rf, meta in zip(fins, rfins, spec.states[: len(rfins)], strict=True):
        compare(outcome, f"final state {meta.name}", f, rf, state_tol)
    if not grads:
        return outcome
    if accepts is not None and not any(x.requires_grad for x in (*outs, *fins)):
        outcome.unchecked.append("backward (the outputs do not require grad)")
        return outcome
    gen = torch.Generator().manual_seed(seed)
    cots = [torch.randn(ro.shape, generator=gen, dtype=ro.dtype) for ro in routs]
    cots += [torch.randn(rf.shape, generator=gen, dtype=rf.dtype) for rf in rfins]
    loss = sum((o.to(c.dtype) * c).sum() for o, c in zip(outs, cots, strict=False))
    loss = loss + sum((f.to(c.dtype) * c.conj()).real.sum() for f, c in zip(fins, cots[len(outs):], strict=True))
    rloss = sum((o * c).sum() for o, c in zip(routs, cots, strict=False))
    rloss = rloss + sum((f * c.conj()).real.sum() for f, c in zip(rfins, cots[len(outs):], strict=True))
    labels = [*kx, *(f"initial_state[{s.name}]" for s in spec.states[: len(kh)])]
    got = torch.autograd.grad(loss, [*kx.values(), *kh], allow_unused=True)
    want = torch.autograd.grad(rloss, [*rx.values(), *rh], allow_unused=True)
    if _overflows([g for g in want if g is not None], dtype):
        outcome.skipped = f"the exact gradients overflow {dtype}"
        return outcome
    for label, g, rg in zip(labels, got, want, strict=True):
        if rg is None:
            continue
        compare(outcome, f"gradient d{label}", g, rg, tol)
    return outcome


def check_step(rec: Any, inputs: Mapping[str, Any], *, backend: str | None = None, rtol: float | None = None
               ) -> Outcome:
    """`step` applied token by token (from the initial state, or zeros) against the oracle's forward.

    This is "decode equals the forward": the forward itself is checked against the oracle separately, so
    comparing with the oracle directly keeps a broken forward from being blamed on decode.
    """
    spec: ir.Spec = rec.spec
    xs, h0 = _split(spec, inputs)
    first = next(iter(xs.values()))
    dtype, T = first.dtype, int(first.shape[1])
    tol = _tol(dtype, rtol)
    state_tol = _tol(torch.float32, rtol) if dtype == torch.float32 else tol
    from recurgen.oracle import infer_sizes

    sizes = resolve_sizes(spec, infer_sizes(spec, xs).dims)
    B, H = int(first.shape[0]), int(first.shape[2])
    cu = inputs.get("cu_seqlens")
    # (first token, end, state rows): every batch row at once, or each packed sequence from its own state row
    bounds = [int(b) for b in cu.tolist()] if cu is not None else []
    segments = [(a, b, slice(n, n + 1)) for n, (a, b) in enumerate(itertools.pairwise(bounds))] if bounds \
        else [(0, T, slice(None))]
    rows = len(segments) if bounds else B
    if h0:
        state = [h.detach().clone() for h in h0]
    else:
        state = [torch.zeros_like(s) for s in random_state(spec, rows, H, sizes, torch.float32, device=first.device)]
    start = [s.clone() for s in state]
    per_token = [n in {t.name for t in spec.inputs} for n in xs]  # an api line may put params among inputs
    values = [x.detach() for x in xs.values()]
    steps = []
    kwargs = {} if backend is None else {"backend": backend}
    with torch.no_grad():
        for a, b, rows_of in segments:
            seg_state = [s[rows_of].clone() for s in state]
            for t in range(a, b):
                args = [x[:, t] if tok else x for x, tok in zip(values, per_token, strict=True)]
                steps.append(_tuple(rec.step(*args, state=seg_state, **kwargs)))
            for s, new_s in zip(state, seg_state, strict=True):
                s[rows_of] = new_s
    from recurgen.api import reference

    varlen = {} if cu is None else {"cu_seqlens": cu}
    exact = {n: _oracle_copy(x).detach() for n, x in zip(xs, values, strict=True)}
    rout, rfin = reference(spec, **by_public(spec, exact),
                           initial_state=[_oracle_copy(s).detach() for s in start], output_final_state=True, **varlen)
    outcome = Outcome()
    routs, rfins = _tuple(rout), _tuple(rfin)
    if _overflows([*routs], dtype) or _overflows([*rfins], torch.float32):
        outcome.skipped = f"the exact result overflows {dtype}"
        return outcome
    for i, (ro, meta) in enumerate(zip(routs, spec.outputs, strict=True)):
        got = torch.stack([s[i] for s in steps], dim=1) if steps else ro[:, :0]
        compare(outcome, f"step output {meta.name}", got, ro, tol)
    for s, rf, meta in zip(state, rfins, spec.states, strict=True):
        compare(outcome, f"step state {meta.name}", s, rf, state_tol)
    return outcome


def load_module_file(spec: str | Path | ir.Spec, path: str | Path) -> Any:
    """A `Recurrence` whose kernels come from a generated module file (e.g. one written by `recurgen compile`
    and then edited), checked against the oracle of `spec`.

    Import an edited module in a process of its own (as `recurgen verify --module` does): generated modules
    register torch.library ops named after the spec's hash, so an edited module and the one recurgen generates
    for the same spec would share them within one process.

    Raises:
        ImportError: the file cannot be imported.
        ValueError: the module was generated from a spec with another name.
    Warns:
        UserWarning: the module was generated from another version of the spec (its SPEC_SHA256 differs).
    """
    import warnings

    from recurgen.api import Recurrence
    from recurgen.frontend import Source, load_source, resolve
    from recurgen.runtime.cache import import_file

    path = Path(path)
    if isinstance(spec, ir.Spec):
        ir_spec, source = spec, Source("", spec.name)
    else:
        source = resolve(spec)
        ir_spec = load_source(source)[0]
    declared = re.search(r"^SPEC_NAME = ['\"](\w+)['\"]", path.read_text(encoding="utf-8"), re.MULTILINE)
    if declared is not None and declared.group(1) != ir_spec.name:  # before importing: its ops would register
        raise ValueError(f"{path} was generated for spec `{declared.group(1)}`, not `{ir_spec.name}`")
    module = import_file(f"recurgen_verify_module.{ir_spec.name}_{abs(hash(str(path.resolve()))):x}", path)
    got = getattr(module, "SPEC_NAME", None)
    if got != ir_spec.name:
        raise ValueError(f"{path} was generated for spec `{got}`, not `{ir_spec.name}`")
    sha = getattr(module, "SPEC_SHA256", None)
    if source.text and sha is not None and sha != source.sha256:
        # not an error (the point may be to test an edited module), but failures may come from the spec edit
        warnings.warn(f"{path} was generated from another version of `{ir_spec.name}` (sha256 {sha[:16]}, the "
                      f"spec is {source.sha256[:16]})", stacklevel=2)
    return Recurrence(ir_spec, module, source)
