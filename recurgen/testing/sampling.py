"""sampling: inputs, params and states drawn from the value domains a spec declares.

Moved here from the project's tests so that users' test suites (and `recurgen verify`) draw inputs exactly as
the project's own kernel tests do. Values are drawn in float64 from a per-(seed, name) generator and only then
cast, so the same seed gives the same numbers (up to rounding) in every dtype — which is what comparing a
low-precision kernel against the float64 oracle needs, and what makes a counterexample replayable from its seed.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from recurgen import ir
from recurgen.oracle import complex_dtype

DEFAULT_DIM = 4  # size of a free dim the caller does not name: small, and not a power-of-two tile size


# --- sizes and generators ------------------------------------------------------------------------------

def resolve_sizes(spec: ir.Spec, sizes: Mapping[str, int] | None = None) -> dict[str, int]:
    """Every named dim of `spec`: fixed ones from the spec, free ones from `sizes` or DEFAULT_DIM.

    `sizes` may name dims the spec does not have, so one shape table (e.g. {"K": 64, "V": 32, "N": 16})
    serves every spec.

    Raises:
        ValueError: `sizes` contradicts a fixed `dim J = n`, or a size is below 1.
    """
    sizes = dict(sizes or {})
    out: dict[str, int] = {}
    for d in spec.dims:
        if d.size is not None:
            if sizes.get(d.name, d.size) != d.size:
                raise ValueError(f"{spec.name}: dim {d.name} is fixed to {d.size} by the spec, got {sizes[d.name]}")
            out[d.name] = d.size
        else:
            out[d.name] = int(sizes.get(d.name, DEFAULT_DIM))
            if out[d.name] < 1:
                raise ValueError(f"{spec.name}: dim {d.name} must be at least 1, got {out[d.name]}")
    return out


def _generator(seed: int, name: str) -> torch.Generator:
    # One stream per tensor name: adding an input to a spec does not change the values of the others.
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


# --- domains ---------------------------------------------------------------------------------------------

def sample_domain(domain: ir.Domain, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """float64 values strictly inside `domain`, drawn as a smooth function of a standard normal.

    - a bounded interval (lo, hi): lo + (hi - lo) * sigmoid(z)  (β ∈ (0, 1) comes out as sigmoid(z));
    - a log-decay (logspace, x <= hi): hi + logsigmoid(z), as fla draws gates, so decays exp(x) lie
      mostly in (0.05, 1) with a tail towards 0;
    - a half-line: lo + exp(z / 2) or hi - exp(z / 2) (e.g. Mamba's A = -exp(A_log));
    - unbounded: z;
    - normalized: then divided by its L2 norm along the last dim.

    Raises:
        ValueError: the draw would leave the domain (a normalised vector cannot meet the bounds).
    """
    z = torch.randn(tuple(shape), generator=generator, dtype=torch.float64)
    lo, hi = domain.lo, domain.hi
    if math.isfinite(lo) and math.isfinite(hi):
        x = lo + (hi - lo) * torch.sigmoid(z)
    elif domain.logspace and math.isfinite(hi):
        x = hi + F.logsigmoid(z)
    elif math.isfinite(lo):
        x = lo + torch.exp(0.5 * z)
    elif math.isfinite(hi):
        x = hi - torch.exp(0.5 * z)
    else:
        x = z
    if domain.normalized:
        x = x / x.norm(dim=-1, keepdim=True)
    if x.numel() and not all(domain.contains(v) for v in (x.min().item(), x.max().item())):
        raise ValueError(f"cannot draw values in domain `{domain}` for shape {list(shape)}")
    return x


def _draw(t: ir.Tensor, shape: Sequence[int], seed: int) -> torch.Tensor:
    gen = _generator(seed, t.name)
    x = sample_domain(t.domain, shape, gen)
    if t.ty.complex:
        # Domains describe the real part; the imaginary part is a plain normal.
        x = torch.complex(x, torch.randn(tuple(shape), generator=gen, dtype=torch.float64))
    return x


def _finish(x: torch.Tensor, dtype: torch.dtype, device: torch.device | str, requires_grad: bool) -> torch.Tensor:
    x = x.to(dtype=complex_dtype(dtype) if x.is_complex() else dtype).to(device)
    return x.requires_grad_(requires_grad)


def tensor_shape(spec: ir.Spec, name: str, B: int, T: int, H: int, sizes: Mapping[str, int]) -> tuple[int, ...]:
    """The concrete shape of input or param `name`: `[B, T, H, *dims]` or `[H, *dims]`."""
    t = spec.tensor(name)
    lead = (B, T, H) if t in spec.inputs else (H,) if t in spec.params else (B, H)
    return (*lead, *(sizes[d] for d in t.ty.dims))


def random_inputs(spec: ir.Spec, B: int, T: int, H: int, sizes: Mapping[str, int] | None = None,
                  dtype: torch.dtype = torch.float32, seed: int = 0, *, device: torch.device | str = "cpu",
                  requires_grad: bool = False) -> dict[str, torch.Tensor]:
    """Every input `[B, T, H, *dims]` and param `[H, *dims]` of `spec`, drawn from its declared domain.

    Args:
        sizes: free dims by name (e.g. {"K": 16, "V": 32}); unnamed ones are DEFAULT_DIM.
        dtype: the real dtype of the result (complex params get its complex twin).
        seed: same seed, same values, whatever the dtype or device.
        requires_grad: return leaves that require grad.
    Returns:
        The tensors by name, in the spec's argument order (the order of the public call).
    """
    dims = resolve_sizes(spec, sizes)
    out: dict[str, torch.Tensor] = {}
    for name in spec.arg_order:
        x = _draw(spec.tensor(name), tensor_shape(spec, name, B, T, H, dims), seed)
        out[name] = _finish(x, dtype, device, requires_grad)
    return out


def random_state(spec: ir.Spec, B: int, H: int, sizes: Mapping[str, int] | None = None,
                 dtype: torch.dtype = torch.float32, seed: int = 0, *, device: torch.device | str = "cpu",
                 requires_grad: bool = False) -> tuple[torch.Tensor, ...]:
    """One initial state `[B, H, *dims]` per state of `spec`, in declaration order (complex where declared).

    Values are standard normal (states have no domain), from a stream distinct from the inputs' even when a
    state shares a name with an input.
    """
    dims = resolve_sizes(spec, sizes)
    out = []
    for s in spec.states:
        shape = (B, H, *(dims[d] for d in s.ty.dims))
        gen = _generator(seed, f"state:{s.name}")
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
        if s.ty.complex:
            x = torch.complex(x, torch.randn(shape, generator=gen, dtype=torch.float64))
        out.append(_finish(x, dtype, device, requires_grad))
    return tuple(out)


def random_cotangents(outputs: Mapping[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """A standard-normal gradient for each named output (e.g. `do`, `dht`), same shape, dtype and device
    (complex outputs get complex ones)."""
    out = {}
    for name, x in outputs.items():
        gen = _generator(seed, f"grad:{name}")
        g = torch.randn(tuple(x.shape), generator=gen, dtype=torch.float64)
        if x.is_complex():
            g = torch.complex(g, torch.randn(tuple(x.shape), generator=gen, dtype=torch.float64))
        out[name] = g.to(dtype=x.dtype, device=x.device)
    return out
