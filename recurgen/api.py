"""api: the public entry points — load a spec (bundled name, path, or text) as a callable recurrence."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from . import ir, oracle, pipeline, signature
from .errors import InternalError, SpecError
from .source import Source, resolve

MODES = ("auto", "recurrent", "chunk")


@dataclass(frozen=True)
class Recurrence:
    """A compiled spec: call it like the model's library function; `.step` decodes one token."""

    spec: ir.Spec
    module: ModuleType
    source: Source

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, *args: Any, mode: str = "auto", **kwargs: Any) -> Any:
        """`o, final_state = rec(*inputs_and_params, scale=None, initial_state=None, output_final_state=False)`."""
        if mode not in MODES:
            raise ValueError(f"{self.name}: `mode` must be one of {', '.join(MODES)}, got {mode!r}")
        fn = getattr(self._variant(args, kwargs).module, f"fused_recurrent_{self.name}")
        return fn(*args, mode=mode, **kwargs)

    @property
    def chunk_reason(self) -> str | None:
        """Why this spec has no chunk form (None: `mode="chunk"` runs chunked-parallel kernels)."""
        return self.module.CHUNK_REASON

    def step(self, *args: Any, **kwargs: Any) -> Any:
        """Decode one token: inputs `[B, H, ...]`, `state` updated in place; returns this token's output."""
        return self._variant(args, kwargs).module.step(*args, **kwargs)

    def _variant(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Recurrence:
        """The spec's variant for the switch options a call sets (`normalize=True`): compiled on first use."""
        asked = signature.switch_values(self.spec, args, kwargs)
        current = dict(self.spec.switches)
        if all(current[n] == v for n, v in asked.items()):
            return self
        return _build(self.source, {**current, **asked})

    def reference(self, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """The float64 oracle, called like the recurrence itself."""
        return reference(self.spec, *args, **kwargs)


_by_hash: dict[tuple[str, str, tuple[tuple[str, float], ...]], Recurrence] = {}


def _build(src: Source, switches: dict[str, float] | None = None) -> Recurrence:
    key = (src.sha256, src.path, tuple(sorted((switches or {}).items())))
    if key not in _by_hash:
        try:  # a spec either compiles or raises SpecError; anything else is a recurgen bug, named as such
            spec, module = pipeline.load(src, switches)
        except SpecError:
            raise
        except InternalError as e:
            if e.spec:
                raise
            raise InternalError(e.stage, e.detail, src.path) from e
        except Exception as e:
            raise InternalError("compile", f"{type(e).__name__}: {e}", src.path) from e
        _by_hash[key] = Recurrence(spec, module, src)
    return _by_hash[key]


def load(spec: str | Path) -> Recurrence:
    """A bundled spec by name (`"gla"`) or a path to a `.rec` file, compiled (and cached) on first use.

    Raises:
        SpecError: the spec has errors (rendered with file, line, column and a caret).
        FileNotFoundError: no such file or bundled spec.
        InternalError: a recurgen bug, with the stage and the spec's path.
    """
    return _build(resolve(spec))


def compile(text_or_path: str | Path, name: str = "<spec>") -> Recurrence:
    """Like `load`, from spec text (or a path)."""
    if isinstance(text_or_path, Path) or (isinstance(text_or_path, str) and "\n" not in text_or_path
                                          and text_or_path.endswith(".rec")):
        return load(text_or_path)
    return _build(Source(str(text_or_path), name))


def reference(spec: ir.Spec | Recurrence | str | Path, *args: Any, initial_state: Any = None,
              output_final_state: bool = False, cu_seqlens: torch.Tensor | None = None,
              **kwargs: Any) -> tuple[Any, Any]:
    """Run the float64 oracle with the same call convention as a compiled recurrence."""
    if isinstance(spec, Recurrence):
        spec = spec.spec
    elif not isinstance(spec, ir.Spec):
        spec = pipeline.front(resolve(spec))[0]
    asked = signature.switch_values(spec, args, kwargs)
    if any(dict(spec.switches)[n] != v for n, v in asked.items()):  # the variant the call asks for
        spec = pipeline.front(Source(spec.source, spec.path), {**dict(spec.switches), **asked})[0]
    # the public call's names, order, optional tensors and layout (recurgen.signature), then the oracle
    bound, calls = signature.bind(spec, args, {**kwargs, "initial_state": initial_state,
                                               "output_final_state": output_final_state, "cu_seqlens": cu_seqlens})
    initial_state, output_final_state, cu_seqlens = (calls.get(n) for n in ("initial_state", "output_final_state",
                                                                           "cu_seqlens"))
    option_names = {o.name for o in spec.options}
    tensors = {n: x for n, x in bound.items() if n not in option_names}
    options = {n: float(x) for n, x in bound.items() if n in option_names and x is not None}
    options |= signature.presence(spec, tensors)
    tensors, initial_state, flat = signature.add_heads(spec, tensors, initial_state)
    tensors = _ungroup(spec, signature.fill_defaults(spec, tensors))
    if cu_seqlens is None:
        outs, finals = oracle.run(spec, tensors, options=options, initial_state=initial_state)
    else:
        outs, finals = _run_packed(spec, tensors, options, initial_state, cu_seqlens)
    if flat:  # `layout [B, T]`: back to the call's layout, without the head axis
        outs, finals = {n: x.squeeze(2) for n, x in outs.items()}, {n: x.squeeze(1) for n, x in finals.items()}
    o = _single(outs)
    return o, (_single(finals) if output_final_state else None)


def _ungroup(spec: ir.Spec, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Grouped heads (an argument with fewer heads than the largest, dividing it) repeated to full heads."""
    inputs = {t.name for t in spec.inputs}

    def heads(n: str) -> int:  # 0: not a tensor of the expected rank (the oracle will say so)
        x = tensors[n]
        axis = 2 if n in inputs else 0
        return int(x.shape[axis]) if x.dim() > axis else 0

    counts = [heads(n) for n in spec.arg_order if n in tensors and isinstance(tensors[n], torch.Tensor)]
    H = max(counts, default=0)
    out = dict(tensors)
    for t in (*spec.inputs, *spec.params):
        x = tensors.get(t.name)
        h = heads(t.name) if isinstance(x, torch.Tensor) else 0
        if isinstance(x, torch.Tensor) and 0 < h < H and H % h == 0:
            out[t.name] = x.repeat_interleave(H // h, dim=2 if t in spec.inputs else 0)
    return out


def _run_packed(spec: ir.Spec, tensors: dict[str, torch.Tensor], options: dict[str, float], initial_state: Any,
                cu_seqlens: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The oracle over packed sequences: each slice of the time axis from its own initial state."""
    inputs = {t.name for t in spec.inputs}
    h0 = (initial_state,) if isinstance(initial_state, torch.Tensor) else initial_state
    bounds = [int(x) for x in cu_seqlens.tolist()]
    outs: list[dict[str, torch.Tensor]] = []
    finals: list[dict[str, torch.Tensor]] = []
    for i, (bos, eos) in enumerate(itertools.pairwise(bounds)):
        sub = {n: (x[:, bos:eos] if n in inputs else x) for n, x in tensors.items()}
        state = tuple(x[i : i + 1] for x in h0) if h0 is not None else None
        o, f = oracle.run(spec, sub, options=options, initial_state=state)
        outs.append(o)
        finals.append(f)
    return ({n: torch.cat([o[n] for o in outs], dim=1) for n in outs[0]},
            {n: torch.cat([f[n] for f in finals], dim=0) for n in finals[0]})


def _single(d: Mapping[str, torch.Tensor]) -> Any:
    vals = tuple(d.values())
    return vals[0] if len(vals) == 1 else vals
