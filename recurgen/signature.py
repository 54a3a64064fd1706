"""signature: the generated public call's parameters, in order, as the spec's `api` line and declarations set them.

One place decides the call so that the generated module, the float64 oracle (`recurgen.reference`) and
the catalog agree: the api line's arguments first (a library's names and order), then the tensors it
does not list, the options, and the call's own arguments (`initial_state`, ...). A call argument the
api line renames keeps its own name too, as a keyword at the end, because recurgen's tools
(layers, tests, `Recurrence.step`) pass it by that name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from . import ir


@dataclass(frozen=True, slots=True)
class Param:
    public: str  # the Python parameter name
    target: str  # what it feeds: an input, param or option of the spec, or one of ir.CALL_ARGS
    kind: str  # "tensor", "option", "call", or "alias" (a renamed call argument's own name)
    default: str | None  # Python source of the default; None: required


def signature(spec: ir.Spec) -> tuple[Param, ...]:
    tensors = {t.name: t for t in (*spec.inputs, *spec.params)}
    options = {o.name for o in spec.options if not ir.is_hidden(o.name)}

    def param(public: str, target: str) -> Param:
        if target in tensors:
            return Param(public, target, "tensor", None if tensors[target].default is None else "None")
        if target in options:
            return Param(public, target, "option", "None")
        return Param(public, target, "call", ir.CALL_ARGS[target])

    listed = [param(a.public, a.target) for a in spec.api.args]
    if not spec.api.args:
        listed = [param(n, n) for n in spec.arg_order]
    done = {p.target for p in listed}
    rest = [param(n, n) for n in (*spec.arg_order, *sorted(options, key=[o.name for o in spec.options].index),
                                  *ir.CALL_ARGS) if n not in done]
    aliases = [Param(p.target, p.target, "alias", p.default) for p in listed
               if p.kind == "call" and p.public != p.target]
    return (*listed, *rest, *aliases)


def by_public(spec: ir.Spec, values: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments keyed by the spec's names, re-keyed by the public call's (to pass them as keywords)."""
    return {spec.api.public(n): x for n, x in values.items()}


def switch_values(spec: ir.Spec, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, float]:
    """The switch options a call sets (by position or name), as 0.0 / 1.0; the ones it leaves out are absent."""
    params = [p for p in signature(spec) if p.kind != "alias"]
    out: dict[str, float] = {}
    for name, _ in spec.switches:
        public = spec.api.public(name)
        pos = next((i for i, p in enumerate(params) if p.public == public), len(args))
        value = args[pos] if pos < len(args) else kwargs.get(public)
        if value is not None:
            out[name] = float(bool(value))
    return out


def python_params(spec: ir.Spec) -> list[str]:
    """The parameter list of the generated public function, as source: `q`, `g=None`, ..."""
    return [p.public if p.default is None else f"{p.public}={p.default}" for p in signature(spec)]


def bind(spec: ir.Spec, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A call's arguments by what they feed: (tensors and options by spec name, call arguments by own name).

    Raises:
        TypeError: too many positional arguments, an unknown keyword, or an argument given twice.
    """
    params = [p for p in signature(spec) if p.kind != "alias"]
    if len(args) > len(params):
        raise TypeError(f"{spec.name}: takes at most {len(params)} positional arguments, got {len(args)}")
    by_public = {p.public: p for p in signature(spec)}
    bound: dict[str, Any] = {}
    calls: dict[str, Any] = {}
    for p, value in [*zip(params, args, strict=False), *((by_public.get(k), v) for k, v in kwargs.items())]:
        if p is None:
            unknown = next(k for k in kwargs if k not in by_public)
            raise TypeError(f"{spec.name}: unexpected argument `{unknown}`")
        into = calls if p.kind in ("call", "alias") else bound
        if p.target in into and _given(into[p.target]) and _given(value):
            raise TypeError(f"{spec.name}: `{p.target}` is given twice (once as `{p.public}`)")
        if p.target not in into or _given(value):
            into[p.target] = value
    return bound, calls


def _given(value: Any) -> bool:
    return value is not None and value is not False


def presence(spec: ir.Spec, tensors: Mapping[str, Any]) -> dict[str, float]:
    """The hidden options behind `given(x)`: whether the call passed each optional tensor."""
    return {ir.presence_option(t.name): float(tensors.get(t.name) is not None)
            for t in (*spec.inputs, *spec.params) if ir.presence_option(t.name) in {o.name for o in spec.options}}


def fill_defaults(spec: ir.Spec, tensors: dict[str, Any]) -> dict[str, Any]:
    """Omitted optional tensors as their default value, shaped from the given ones ([B, T, H, ...] layout)."""
    inputs = {t.name for t in spec.inputs}
    given = {n: x for n, x in tensors.items() if isinstance(x, torch.Tensor)}
    first = next((given[n] for n in spec.arg_order if n in inputs and n in given), None)
    if first is None:
        return tensors
    sizes = {d.name: d.size for d in spec.dims if d.size is not None}
    heads = 1
    for t in (*spec.inputs, *spec.params):
        x = given.get(t.name)
        lead = 3 if t.name in inputs else 1
        if x is not None and x.dim() == lead + len(t.ty.dims):
            heads = max(heads, int(x.shape[lead - 1]))
            sizes.update({d: int(s) for d, s in zip(t.ty.dims, x.shape[lead:], strict=True) if d not in sizes})
    out = dict(tensors)
    for t in (*spec.inputs, *spec.params):
        if t.default is not None and out.get(t.name) is None:
            lead = (*first.shape[:2], heads) if t.name in inputs else (heads,)
            out[t.name] = torch.full((*lead, *(sizes[d] for d in t.ty.dims)), t.default, dtype=first.dtype,
                                     device=first.device)
    return out


def add_heads(spec: ir.Spec, tensors: dict[str, Any], states: Any) -> tuple[dict[str, Any], Any, bool]:
    """`layout [B, T]`: tensors without a head axis get one of size 1 (those with one pass unchanged)."""
    first = next((t for t in spec.inputs if isinstance(tensors.get(t.name), torch.Tensor)), None)
    if spec.heads or first is None or tensors[first.name].dim() != 2 + len(first.ty.dims):
        return tensors, states, False
    inputs = {t.name for t in spec.inputs}
    out = {n: (x.unsqueeze(2 if n in inputs else 0) if isinstance(x, torch.Tensor) else x) for n, x in tensors.items()}
    if isinstance(states, torch.Tensor):
        states = states.unsqueeze(1)
    elif states is not None:
        states = tuple(s.unsqueeze(1) for s in states)
    return out, states, True
