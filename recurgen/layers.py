"""layers: a generic token-mixing layer built from any spec (projections, gates, short conv, norm, output).

    layer = RecurrentLayer("gated_delta_rule", d_model=256, n_heads=4)
    y = layer(x)                                   # x, y: [B, T, d_model]
    y, cache = layer(x, return_cache=True)         # prefill: also the states and the short-conv window
    y_t, cache = layer.step(x_t, cache)            # decode one token, x_t: [B, d_model]

The spec says everything the layer needs: which per-token inputs exist and their shapes (`[H, *dims]`
per token), which value domain each input must lie in (so which activation maps a projection there),
and which per-head params exist (so which `nn.Parameter`s to hold and how to keep them in their domain).
Nothing below knows a model by name except the initialisers in `_NAMED_INITS`, which follow the papers'
conventions for well-known param names and fall back to a domain-driven default when the declared
domain does not match.

Layout of one layer (fla's `GatedDeltaNet` / `GatedLinearAttention` layers are the model):

    x ─ in_proj ─┬─ [causal depthwise conv + SiLU] ─ q/k/v-like inputs ─┐
                 └─ domain maps (logsigmoid/16, sigmoid, ±softplus, L2) ─┴─ recurrence ─ o (first output)
    o ─ RMSNorm per head ─ × SiLU(gate_proj(x)) ─ o_proj ─ y
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import api, ir
from .api import Recurrence, load
from .signature import by_public

# fla's GLA divides logsigmoid of the gate logit by 16 (`gate_logit_normalizer`). logsigmoid(x) alone
# gives a decay of exp(logsigmoid(0)) = 0.5 per token at initialisation, so the state forgets within
# a few tokens and the gradient through it vanishes; /16 gives exp(-0.69/16) ≈ 0.958, a memory of
# ~25 tokens at init, while the gate can still reach any decay in (0, 1) (logsigmoid(x)/16 → -∞ as
# x → -∞). Its derivative is also 16x smaller, which keeps early updates of the decay gentle.
GATE_LOGIT_NORMALIZER = 16.0

# Decay magnitudes targeted at initialisation by the time-invariant SSM params (LRU, S5, S4D), as in
# LRU's "ring" initialisation (Orvieto et al. 2023, §3.3: r_min = 0.9, r_max = 0.999).
DECAY_RANGE = (0.9, 0.999)


# ---------------------------------------------------------------------------------------------
# domains: unconstrained values -> values in the declared domain
# ---------------------------------------------------------------------------------------------
def constrain_input(x: torch.Tensor, domain: ir.Domain) -> torch.Tensor:
    """Map a projection (any real value) into an input's declared domain.

    `logdecay` → `hi + logsigmoid(x) / 16` (see GATE_LOGIT_NORMALIZER); a finite interval → a scaled
    sigmoid (`unit` is plain sigmoid); a lower bound only → `lo + softplus`; an upper bound only →
    `hi - softplus` (`negative` is −softplus); `normalized` → L2-normalised along the last dim.
    Softplus rather than exp for per-token values: it is linear for large inputs, so a large logit
    cannot produce an overflowing value in one step.
    """
    lo, hi = domain.lo, domain.hi
    if domain.logspace:
        hi = min(hi, 0.0)
    if math.isfinite(lo) and math.isfinite(hi):
        x = lo + (hi - lo) * torch.sigmoid(x)
    elif domain.logspace:
        x = hi + F.logsigmoid(x) / GATE_LOGIT_NORMALIZER
    elif math.isfinite(lo):
        x = lo + F.softplus(x)
    elif math.isfinite(hi):
        x = hi - F.softplus(x)
    if domain.normalized:
        x = F.normalize(x, dim=-1)
    return x


def constrain_param(raw: torch.Tensor, domain: ir.Domain) -> torch.Tensor:
    """Map a stored (unconstrained) param into its declared domain.

    Half-lines use `exp` (Mamba's `A = -exp(A_log)`, LRU's `nu = exp(nu_log)`): a param's magnitude often
    spans orders of magnitude across channels (Mamba's A is 1..N), which exp covers with evenly spaced
    raw values. A log-decay param is `hi - exp(raw)`. Finite intervals use a scaled sigmoid.
    """
    lo, hi = domain.lo, domain.hi
    if domain.logspace:
        hi = min(hi, 0.0)
    x = raw
    if math.isfinite(lo) and math.isfinite(hi):
        x = lo + (hi - lo) * torch.sigmoid(raw)
    elif math.isfinite(lo):
        x = lo + torch.exp(raw)
    elif math.isfinite(hi):
        x = hi - torch.exp(raw)
    if domain.normalized:
        x = F.normalize(x, dim=-1)
    return x


def unconstrain_param(value: torch.Tensor, domain: ir.Domain) -> torch.Tensor:
    """The inverse of `constrain_param` (for values strictly inside the domain)."""
    lo, hi = domain.lo, domain.hi
    if domain.logspace:
        hi = min(hi, 0.0)
    if math.isfinite(lo) and math.isfinite(hi):
        return torch.logit((value - lo) / (hi - lo))
    if math.isfinite(lo):
        return torch.log(value - lo)
    if math.isfinite(hi):
        return torch.log(hi - value)
    return value


# ---------------------------------------------------------------------------------------------
# param initialisation: the papers' conventions for well-known names, else from the domain
# ---------------------------------------------------------------------------------------------
def _decays(shape: tuple[int, ...]) -> torch.Tensor:
    """Decay magnitudes r with r² uniform in DECAY_RANGE² (LRU's ring initialisation)."""
    r_min, r_max = DECAY_RANGE
    return torch.sqrt(torch.rand(shape) * (r_max**2 - r_min**2) + r_min**2)


def _inv_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


def _init_mamba_a(shape: tuple[int, ...]) -> torch.Tensor:
    if len(shape) == 1:  # [H] (Mamba2, a scalar per head): A ~ -U(1, 16)
        return -(1 + 15 * torch.rand(shape))
    # Mamba1's S4D-real init: A[..., n] = -(n + 1) along the state dim N (the last)
    return -torch.arange(1, shape[-1] + 1, dtype=torch.float32).expand(shape).clone()


def _init_dt_bias(shape: tuple[int, ...]) -> torch.Tensor:
    # Mamba: dt = softplus(dt_raw + dt_bias) starts log-uniform in [1e-3, 1e-1]
    dt = torch.exp(torch.rand(shape) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    return _inv_softplus(dt)


def _arange_last(shape: tuple[int, ...]) -> torch.Tensor:
    n = shape[-1] if shape[1:] else 1
    return torch.arange(n, dtype=torch.float32).expand(shape).clone()


# Values in the param's *domain* (not raw), by the name the papers use. S5 and S4D use S4D-Lin
# (λ_n = -1/2 + iπn, Gu et al. 2022) with the step chosen so that |exp(λΔ)| = r ∈ DECAY_RANGE.
_NAMED_INITS: dict[str, Callable[[tuple[int, ...]], torch.Tensor]] = {
    "A": _init_mamba_a,  # Mamba / Mamba2 (negative)
    "D": torch.ones,  # skip connections start as identity
    "d_skip": torch.ones,
    "dt_bias": _init_dt_bias,
    "delta_bias": _init_dt_bias,
    # LRU (Orvieto et al. 2023, Alg. 1): λ = exp(-exp(ν_log) + i exp(θ_log)), |λ| = r, θ ~ U(0, 2π)
    "nu_log": lambda s: torch.log(-torch.log(_decays(s))),
    "theta_log": lambda s: torch.log(2 * math.pi * torch.rand(s).clamp_min(1e-4)),
    "B_re": lambda s: torch.randn(s) / math.sqrt(2 * s[-1]),  # LRU: B ~ N(0, 1/(2 D)) per part
    "B_im": lambda s: torch.randn(s) / math.sqrt(2 * s[-1]),
    # S5: λ = lam_re + i lam_im, Δ = exp(log_step), |exp(λΔ)| = exp(lam_re Δ) = r
    "lam_re": lambda s: torch.full(s, -0.5),
    "lam_im": lambda s: math.pi * _arange_last(s),
    "log_step": lambda s: torch.log(-torch.log(_decays(s)) / 0.5),
    # S4D: A = -exp(log_A_real) + i A_imag, |exp(Δ A)| = exp(-Δ/2) = r
    "log_A_real": lambda s: torch.full(s, math.log(0.5)),
    "A_imag": lambda s: math.pi * _arange_last(s),
    "log_dt": lambda s: torch.log(-2 * torch.log(_decays(s))),
}


def _domain_default(shape: tuple[int, ...], domain: ir.Domain) -> torch.Tensor:
    """A value in the domain when no named convention applies."""
    if domain.logspace:
        return torch.log(_decays(shape))  # a per-head decay in DECAY_RANGE
    if len(shape) >= 3:  # [H, ..., fan_in] matrices: variance-preserving for `M @ x`
        return torch.randn(shape) / math.sqrt(shape[-1])
    if math.isfinite(domain.lo) or math.isfinite(domain.hi):
        return constrain_param(torch.zeros(shape), domain)  # 1 above / below a bound, or an interval's middle
    return torch.zeros(shape)  # biases and bonuses start neutral


def init_param(name: str, shape: tuple[int, ...], domain: ir.Domain) -> torch.Tensor:
    """The initial *raw* value of a param of shape `[H, *dims]` (pass it through `constrain_param`)."""
    value = None
    if name in _NAMED_INITS:
        value = _NAMED_INITS[name](shape).float()
        lo_ok = value > domain.lo if domain.lo_open else value >= domain.lo
        hi_ok = value < domain.hi if domain.hi_open else value <= domain.hi
        if domain.logspace:
            hi_ok &= value <= 0
        if not bool((lo_ok & hi_ok).all()):
            value = None  # a custom spec reused the name with another meaning: follow its domain instead
    if value is None:
        value = _domain_default(shape, domain)
    return unconstrain_param(value, domain)


# ---------------------------------------------------------------------------------------------
# the layer
# ---------------------------------------------------------------------------------------------
class _Shared:
    """Holds the compiled recurrence outside the module's state: `copy.deepcopy(layer)` (EMA, model
    surgery) shares it instead of trying to copy the generated Python module, and pickling rebuilds it
    from the spec text (same text and path, so the same cache entry)."""

    def __init__(self, rec: Recurrence) -> None:
        self.rec = rec

    def __deepcopy__(self, memo: dict[int, object]) -> _Shared:
        return self

    def __reduce__(self) -> tuple[Callable[[str, str], _Shared], tuple[str, str]]:
        return _shared_from_text, (self.rec.source.text, self.rec.source.path)


def _shared_from_text(text: str, path: str) -> _Shared:
    return _Shared(api.compile(text, path))


def _is_qkv_like(t: ir.Tensor) -> bool:
    """Feature vectors (q, k, v, x, B, C, ...) get the short conv; gates and scalars do not."""
    d = t.domain
    return bool(t.ty.dims) and not d.logspace and not math.isfinite(d.lo) and not math.isfinite(d.hi)


@dataclass
class LayerCache:
    """What a `RecurrentLayer` needs to go on decoding: the recurrence's states and the short-conv window.

    `states`: one fp32 (complex64) tensor `[B, H, *dims]` per state of the spec, in declaration order.
    `conv`: the last `conv_size - 1` projected (pre-convolution) values of the convolved inputs,
    `[B, channels, conv_size - 1]`, oldest first; None when the layer has no convolution.
    `step` updates both in place (decoding is inference: no autograd through the cache).
    """

    states: tuple[torch.Tensor, ...]
    conv: torch.Tensor | None

    def detach(self) -> LayerCache:
        """A copy cut from the autograd graph (a prefill under grad feeds an in-place decode)."""
        return LayerCache(tuple(s.detach().clone() for s in self.states),
                          None if self.conv is None else self.conv.detach().clone())


class RecurrentLayer(nn.Module):
    """A token-mixing layer `[B, T, d_model] -> [B, T, d_model]` around any recurrence spec.

    Args:
        spec: a bundled spec name, a path to a `.rec` file, or a loaded `Recurrence`.
        d_model: model width.
        n_heads: number of heads H; the recurrence runs per head.
        conv_size: width of the causal depthwise convolution (+ SiLU) applied to the q/k/v-like inputs
            (vector inputs without a declared domain; override with `conv_inputs`); 0 disables it.
        expand: the dims of the spec's output (V for attention-like specs, E or D for SSMs) default to
            `expand * d_model / n_heads`; every other free dim defaults to `d_model / n_heads`.
        backend: passed to the recurrence ("triton", "torch", or None for its default).
        mode: passed to the recurrence: "auto" (default: chunks from the module's CHUNK_AUTO_MIN_T tokens
            on; on the torch backend from TORCH_CHUNK_AUTO_MIN_T, measured in docs/cpu.md), "recurrent", or
            "chunk" (the chunked-parallel form; on the torch backend the chunk families
            in plain torch, much faster on CPU than walking tokens). A spec without a chunk form refuses
            "chunk".
        chunk_size: tokens per chunk in chunk mode (None: the module's CHUNK_SIZE).
        conv_inputs: names of the inputs that get the short convolution (default: see `conv_size`).
        conv_activation: apply SiLU after the convolution (fla's default with a short conv). Turning it
            off keeps q and k signed: after SiLU they are nearly non-negative, so for linear attention
            without a delta rule or a normalised key all keys overlap (not measured here).
        norm_eps: epsilon of the per-head output RMSNorm.
        **dims: explicit sizes of the spec's free dims, e.g. `K=32, V=64`.

    The spec's first output is the layer's output; further outputs (none of the bundled specs has
    any) are ignored. The spec's params are `self.params[name]`, held unconstrained and mapped into
    their declared domain on each call (`spec_params()`), so training cannot leave the domain.
    """

    def __init__(self, spec: str | Path | Recurrence, d_model: int, n_heads: int, *, conv_size: int = 4,
                 expand: float = 1.0, backend: str | None = None, mode: str = "auto",
                 chunk_size: int | None = None, conv_inputs: Collection[str] | None = None,
                 conv_activation: bool = True, norm_eps: float = 1e-5, **dims: int) -> None:
        super().__init__()
        self._shared = _Shared(spec if isinstance(spec, Recurrence) else load(spec))
        s = self.rec.spec
        if d_model % n_heads:
            raise ValueError(f"RecurrentLayer: d_model={d_model} is not divisible by n_heads={n_heads}")
        known = {d.name for d in s.dims}
        if unknown := sorted(set(dims) - known):
            raise ValueError(f"RecurrentLayer: `{s.name}` has no dim {', '.join(unknown)} "
                             f"(its dims: {', '.join(sorted(known)) or 'none'})")
        head_dim = d_model // n_heads
        out = s.outputs[0]
        self.sizes: dict[str, int] = {}
        for d in s.dims:
            if d.size is not None:
                if d.name in dims and dims[d.name] != d.size:
                    raise ValueError(f"RecurrentLayer: `{s.name}` fixes {d.name} = {d.size}, got {dims[d.name]}")
                self.sizes[d.name] = d.size
            elif d.name in dims:
                self.sizes[d.name] = int(dims[d.name])
            else:
                self.sizes[d.name] = max(1, int(expand * head_dim) if d.name in out.ty.dims else head_dim)
        self.d_model, self.n_heads, self.backend = d_model, n_heads, backend
        if mode not in ("recurrent", "chunk", "auto"):
            raise ValueError(f"RecurrentLayer: `mode` must be 'recurrent', 'chunk' or 'auto', got {mode!r}")
        if mode == "chunk" and self.rec.chunk_reason is not None:
            raise ValueError(f"RecurrentLayer: `{s.name}` has no chunk form ({self.rec.chunk_reason}); "
                             "use mode='recurrent' or 'auto'")
        self.mode, self.chunk_size = mode, chunk_size
        self.conv_activation = conv_activation

        conv_names = {t.name for t in s.inputs if _is_qkv_like(t)} if conv_inputs is None else set(conv_inputs)
        if unknown := sorted(conv_names - {t.name for t in s.inputs}):
            raise ValueError(f"RecurrentLayer: `{s.name}` has no input {', '.join(unknown)}")
        if conv_size <= 0:
            conv_names = set()
        # conv inputs first, so the convolution runs over one contiguous slice of the projection
        self._inputs = sorted(s.inputs, key=lambda t: t.name not in conv_names)
        self._widths = [n_heads * math.prod(self.sizes[d] for d in t.ty.dims) for t in self._inputs]
        self._n_conv = sum(w for t, w in zip(self._inputs, self._widths, strict=True) if t.name in conv_names)
        self.conv_names = frozenset(conv_names)
        self.in_proj = nn.Linear(d_model, sum(self._widths), bias=True)
        self._init_gate_bias()
        self.conv = (nn.Conv1d(self._n_conv, self._n_conv, conv_size, groups=self._n_conv,
                               padding=conv_size - 1, bias=False) if self._n_conv else None)

        self.params = nn.ParameterDict({
            p.name: nn.Parameter(init_param(p.name, (n_heads, *(self.sizes[d] for d in p.ty.dims)), p.domain))
            for p in s.params
        })

        self.out_dim = math.prod(self.sizes[d] for d in out.ty.dims)  # per head
        self.norm_eps = norm_eps
        self.norm_weight = nn.Parameter(torch.ones(self.out_dim))  # shared by the heads, as in fla
        self.gate_proj = nn.Linear(d_model, n_heads * self.out_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * self.out_dim, d_model, bias=False)

    def _init_gate_bias(self) -> None:
        """Zero biases, except that log-decay gates start at decays r spread over DECAY_RANGE per channel.

        With a zero bias every gate starts at logsigmoid(0)/16, a decay of 0.958: a pair stored 50 tokens
        ago is down to 0.12 while a repeated token keeps adding ~24x its weight, so recall must wait for
        the decays to be learnt first (slowly: the /16 also divides their gradient). Spreading decays
        over (0.9, 0.999), as LRU's ring init and Mamba's dt init do, gives every head short and long
        memories from the start.
        """
        with torch.no_grad():
            self.in_proj.bias.zero_()
            start = 0
            for t, width in zip(self._inputs, self._widths, strict=True):
                if t.domain.logspace:
                    log_r = torch.log(_decays((width,)))
                    lo, hi = t.domain.lo, min(t.domain.hi, 0.0)
                    if math.isfinite(lo):  # interval map lo + (hi - lo) sigmoid(b)
                        frac = ((log_r.clamp(lo, hi) - lo) / (hi - lo)).clamp(1e-4, 1 - 1e-4)
                        bias = torch.logit(frac)
                    else:  # hi + logsigmoid(b) / 16 = log r  ⇒  sigmoid(b) = exp(16 (log r - hi))
                        p = torch.exp(GATE_LOGIT_NORMALIZER * (log_r - hi)).clamp(1e-6, 1 - 1e-6)
                        bias = torch.logit(p)
                    self.in_proj.bias[start:start + width] = bias
                start += width

    @property
    def rec(self) -> Recurrence:
        """The compiled recurrence (shared by copies of the layer)."""
        return self._shared.rec

    def extra_repr(self) -> str:
        dims = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        conv = ",".join(sorted(self.conv_names)) or "none"
        return (f"spec={self.rec.name}, d_model={self.d_model}, n_heads={self.n_heads}, {dims}, conv=[{conv}], "
                f"mode={self.mode}")

    def spec_params(self) -> dict[str, torch.Tensor]:
        """The spec's params `[H, *dims]`, mapped into their declared domains."""
        s = self.rec.spec
        return {p.name: constrain_param(self.params[p.name], p.domain) for p in s.params}

    def spec_inputs(self, x: torch.Tensor, window: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The recurrence's per-token inputs `[B, T, H, *dims]` for hidden states `x: [B, T, d_model]`.

        `window`: the projections of the `conv_size - 1` tokens before `x` (a cache's `conv`); None: zeros.
        """
        return self._project(x, window)[0]

    def _project(self, x: torch.Tensor, window: torch.Tensor | None) -> tuple[dict[str, torch.Tensor], Opt]:
        """The inputs, and the conv window after `x` (the last conv_size - 1 pre-conv projections)."""
        B, T, _ = x.shape
        z = self.in_proj(x)
        after = None
        if self.conv is not None:
            width = self.conv.kernel_size[0] - 1
            raw = z[..., : self._n_conv].transpose(1, 2)  # [B, channels, T]
            if window is None:
                window = raw.new_zeros(B, self._n_conv, width)
            full = torch.cat([window.to(raw.dtype), raw], dim=-1)  # the zeros are the conv's own left padding
            after = full[..., full.shape[-1] - width:]
            c = F.conv1d(full, self.conv.weight, groups=self._n_conv).transpose(1, 2)
            z = torch.cat([F.silu(c) if self.conv_activation else c, z[..., self._n_conv:]], dim=-1)
        inputs = {}
        for t, part in zip(self._inputs, z.split(self._widths, dim=-1), strict=True):
            part = part.reshape(B, T, self.n_heads, *(self.sizes[d] for d in t.ty.dims))
            inputs[t.name] = constrain_input(part, t.domain)
        return inputs, after

    def _readout(self, o: torch.Tensor | tuple[torch.Tensor, ...], x: torch.Tensor) -> torch.Tensor:
        """The recurrence's output `[B, T, H, *dims]` → the layer's `[B, T, d_model]` (norm, gate, projection)."""
        if isinstance(o, tuple):
            o = o[0]  # several outputs: the first is the layer's (documented above)
        B, T = x.shape[:2]
        o = o.reshape(B, T, self.n_heads, self.out_dim)
        o = F.rms_norm(o, (self.out_dim,), self.norm_weight, self.norm_eps)
        o = o.reshape(B, T, -1) * F.silu(self.gate_proj(x))
        return self.o_proj(o)

    def forward(self, x: torch.Tensor, cache: LayerCache | None = None, return_cache: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, LayerCache]:
        """`x: [B, T, d_model]` → `[B, T, d_model]`; with `return_cache`, also the `LayerCache` after `x`.

        `cache` continues from an earlier prefill or decode (its states and conv window; not modified). With
        `return_cache` and mode "auto", a spec with a chunk form prefills in chunk mode.
        """
        inputs, window = self._project(x, None if cache is None else cache.conv)
        values: Mapping[str, torch.Tensor] = {**inputs, **self.spec_params()}
        mode = self.mode
        if return_cache and mode == "auto" and self.rec.chunk_reason is None:
            mode = "chunk"
        want_state = return_cache or cache is not None
        o, final = self.rec(*(values[n] for n in self.rec.spec.arg_order), backend=self.backend, mode=mode,
                            chunk_size=self.chunk_size, initial_state=None if cache is None else cache.states,
                            output_final_state=want_state)
        y = self._readout(o, x)
        if not return_cache:
            return y
        states = (final,) if isinstance(final, torch.Tensor) else tuple(final)
        return y, LayerCache(states, window)

    def empty_cache(self, batch_size: int, device: torch.device | str | None = None,
                    dtype: torch.dtype | None = None) -> LayerCache:
        """The cache before the first token: zero states, a zero conv window (the conv's own left padding)."""
        device = device if device is not None else self.in_proj.weight.device
        dtype = dtype if dtype is not None else self.in_proj.weight.dtype
        states = tuple(torch.zeros(batch_size, self.n_heads, *(self.sizes[d] for d in s.ty.dims), device=device,
                                   dtype=torch.complex64 if s.ty.complex else torch.float32)
                       for s in self.rec.spec.states)
        conv = None
        if self.conv is not None:
            conv = torch.zeros(batch_size, self._n_conv, self.conv.kernel_size[0] - 1, device=device, dtype=dtype)
        return LayerCache(states, conv)

    @torch.no_grad()
    def step(self, x: torch.Tensor, cache: LayerCache) -> tuple[torch.Tensor, LayerCache]:
        """Decode one token: `x: [B, d_model]` → `([B, d_model], cache)`; the cache is updated in place.

        Equal to `forward` on the whole sequence at this position (tests/layers/test_decode.py).
        """
        spec = self.rec.spec
        inputs, window = self._project(x.unsqueeze(1), cache.conv)
        if cache.conv is not None and window is not None:
            cache.conv.copy_(window)
        values = {n: v[:, 0] for n, v in inputs.items()} | self.spec_params()
        o = self.rec.step(**by_public(spec, {n: values[n] for n in spec.arg_order}), state=list(cache.states),
                          backend=self.backend)
        if isinstance(o, tuple):
            o = o[0]
        return self._readout(o.unsqueeze(1), x.unsqueeze(1))[:, 0], cache


Opt = torch.Tensor | None

__all__ = ["GATE_LOGIT_NORMALIZER", "LayerCache", "RecurrentLayer", "constrain_input", "constrain_param", "init_param"]
