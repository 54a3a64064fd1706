"""recurgen against flash-linear-attention 0.6 (fla): the same call, the same numbers.

Skipped unless fla is importable (`pip install -e '.[compat]'`, or on a CPU-only machine
`pip install --no-deps fla-core==0.6.0 flash-linear-attention==0.6.0 einops`, which keeps the CPU torch).
fla is never a runtime dependency of recurgen.

For every model fla implements, one dict of arguments spelled the way fla spells them is passed to
recurgen's function and to fla's own computation: outputs, final states and the gradients of every
tensor argument and of the initial state must agree to fp32 tolerance. fla's numbers come from its
`fused_recurrent_*` kernels run in Triton's CPU interpreter where they have a backward pass, else from
its torch references (`naive_*`; fla ships the fused kernels of gated DeltaNet, KDA and RWKV7
forward-only, and RWKV6's fused backward disagrees with its own reference in the interpreter). A second
test checks the call itself: recurgen's leading parameters are exactly those of fla's public function
(`chunk_*`, whose kernels do not run in the interpreter), so swapping one for the other is a one-line
change.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import recurgen
from tests.helpers import close

try:
    import fla.ops  # type: ignore[import-not-found]  # noqa: F401
except Exception as err:  # missing, or failing to import without a GPU: either way nothing to compare against
    pytest.skip(f"flash-linear-attention is not importable ({type(err).__name__})", allow_module_level=True)

B, T, H, K, V = 2, 6, 2, 16, 16  # fla's kernels want power-of-two head dims of at least 16
M = 32  # GSA's slots: unlike K and V, so a transposed slot state cannot pass
Args = dict[str, Any]


def _fla(path: str) -> Callable[..., Any]:
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(f"fla.ops.{module}"), name)


@dataclass(frozen=True)
class Case:
    spec: str
    api: str  # fla's public function: recurgen's call must take the same leading arguments
    ref: Callable[..., tuple[torch.Tensor, Any]]  # fla's numbers, called with the same arguments
    make: Callable[[torch.Generator], Args]
    extra: Args = field(default_factory=dict)  # arguments both sides take, e.g. a pinned scale
    fixed: tuple[str, ...] = ()  # arguments fla treats as constants: it returns no gradient for them


# --- fla's numbers ---------------------------------------------------------------------------------------------
def _fused(path: str, **renames: str) -> Callable[..., Any]:
    """fla's fused recurrent kernel; `renames` where its fused kernel spells an argument unlike its public op."""
    def run(**args: Any) -> Any:
        return _fla(path)(**{renames.get(n, n): x for n, x in args.items()})
    return run


def _naive(path: str) -> Callable[..., Any]:
    """fla's torch reference in the [B, T, H, ...] layout, returning (o, final state)."""
    def run(**args: Any) -> Any:
        return _fla(path)(**args)
    return run


def _rwkv7_ref(r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
               scale: float, initial_state: torch.Tensor, output_final_state: bool) -> Any:
    """fla's DPLR recurrence (RWKV7's `fused_recurrent_rwkv7` runs it, forward-only): head-first layout."""
    assert scale == K ** -0.5  # dplr_recurrence hard-codes this scale
    ref = _fla("generalized_delta_rule.dplr.naive.dplr_recurrence")
    o, s = ref(*(x.transpose(1, 2) for x in (r, k, v, a, b, w)), initial_state=initial_state,
               output_final_state=output_final_state)
    return o.transpose(1, 2), s


def _rwkv6_ref(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor,
               initial_state: torch.Tensor, output_final_state: bool) -> Any:
    """fla's RWKV6 torch reference (head-first layout). Its fused recurrent kernel agrees in the forward pass,
    but its backward, run in the interpreter, disagrees with its own reference (dk, dv, dw, dh0 far off)."""
    ref = _fla("rwkv6.recurrent_naive.naive_recurrent_rwkv6")
    o, s = ref(*(x.transpose(1, 2) for x in (r, k, v, w)), u, initial_state=initial_state,
               output_final_state=output_final_state)
    return o.transpose(1, 2), s


def _rwkv5_ref(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor,
              initial_state: torch.Tensor, output_final_state: bool) -> Any:
    """fla 0.6 has no RWKV5 op: RWKV6's reference with Eagle's time-invariant log decay w on every token
    (autograd sums fla's per-token decay gradients back onto w)."""
    w_t = w[None, None].expand(r.shape[0], r.shape[1], -1, -1)
    return _rwkv6_ref(r, k, v, w_t, u, initial_state=initial_state, output_final_state=output_final_state)


def _normalized_linear_attn_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, normalize: bool,
                                initial_state: tuple[torch.Tensor, torch.Tensor], output_final_state: bool) -> Any:
    """fla's linear attention with `normalize=True`; it keeps the key sum z as [B, 1, H, K], recurgen as [B, H, K]."""
    S0, z0 = initial_state
    o, (S, z) = _fla("linear_attn.fused_recurrent_linear_attn")(
        q, k, v, initial_state=(S0, z0.unsqueeze(1)), output_final_state=output_final_state, normalize=normalize)
    return o, (S, z.squeeze(1))


def _delta_product_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                       initial_state: torch.Tensor, output_final_state: bool) -> Any:
    """fla's gated DeltaProduct without a gate; it interleaves the J steps along T: [B, T*J, H, ...]."""
    J = k.shape[3]
    steps = [x.transpose(2, 3).flatten(1, 2) for x in (k, v, beta.unsqueeze(-1))]
    ref = _fla("gated_delta_product.naive.naive_recurrent_gated_delta_product")
    return ref(q, steps[0], steps[1], None, steps[2].squeeze(-1), K ** -0.5, initial_state=initial_state,
               output_final_state=output_final_state, num_householder=J)


# --- inputs, by fla's names ------------------------------------------------------------------------------------
def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen)


def _logdecay(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return F.logsigmoid(2 + _randn(gen, *shape))  # mostly slow decays, as trained gates are


def _unit_key(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return F.normalize(_randn(gen, *shape), dim=-1)


def _qkv(gen: torch.Generator, normal_k: bool = False, heads_v: int = H) -> Args:
    k = _unit_key(gen, B, T, H, K) if normal_k else _randn(gen, B, T, H, K)
    return {"q": _randn(gen, B, T, H, K), "k": k, "v": _randn(gen, B, T, heads_v, V)}


def _rwkv7(gen: torch.Generator) -> Args:
    kappa = _unit_key(gen, B, T, H, K)
    return {"r": _randn(gen, B, T, H, K), "w": -math.exp(-0.5) * torch.sigmoid(_randn(gen, B, T, H, K)),
            "k": _randn(gen, B, T, H, K), "v": _randn(gen, B, T, H, V), "a": -kappa,
            "b": kappa * torch.sigmoid(_randn(gen, B, T, H, K))}


CASES = [
    Case("gla", "gla.chunk_gla", _fused("gla.fused_recurrent_gla", g="gk"),
         lambda gen: {**_qkv(gen), "g": _logdecay(gen, B, T, H, K)}),
    Case("simple_gla", "simple_gla.chunk_simple_gla", _fused("simple_gla.fused_recurrent_simple_gla"),
         lambda gen: {**_qkv(gen), "g": _logdecay(gen, B, T, H)}),
    Case("simple_gla", "simple_gla.chunk_simple_gla", _fused("simple_gla.fused_recurrent_simple_gla"),
         lambda gen: {**_qkv(gen), "g_gamma": _logdecay(gen, H)}, fixed=("g_gamma",)),
    Case("retention", "retention.chunk_retention", _fused("retention.fused_recurrent_retention"), _qkv),
    Case("linear_attn", "linear_attn.chunk_linear_attn", _fused("linear_attn.fused_recurrent_linear_attn"), _qkv),
    # normalize=True: o_t / (q_tᵀ z_t), with positive features (elu + 1) as normalised linear attention uses
    Case("linear_attn", "linear_attn.chunk_linear_attn", _normalized_linear_attn_ref,
         lambda gen: {n: F.elu(x) + 1 if n in "qk" else x for n, x in _qkv(gen).items()}, {"normalize": True}),
    Case("delta_rule", "delta_rule.chunk_delta_rule", _fused("delta_rule.fused_recurrent_delta_rule"),
         lambda gen: {**_qkv(gen, normal_k=True), "beta": torch.sigmoid(_randn(gen, B, T, H))}),
    Case("gated_delta_rule", "gated_delta_rule.chunk_gated_delta_rule",
         _naive("gated_delta_rule.naive.naive_recurrent_gated_delta_rule"),
         lambda gen: {**_qkv(gen, normal_k=True), "g": _logdecay(gen, B, T, H),
                      "beta": torch.sigmoid(_randn(gen, B, T, H))}),
    Case("kda", "kda.chunk_kda", _naive("kda.naive.naive_recurrent_kda"),
         lambda gen: {**_qkv(gen, normal_k=True), "g": _logdecay(gen, B, T, H, K),
                      "beta": torch.sigmoid(_randn(gen, B, T, H))}),
    # grouped values: v, g and beta with more heads than q and k (each q/k head serves a group of them)
    Case("kda", "kda.chunk_kda", _naive("kda.naive.naive_recurrent_kda"),
         lambda gen: {**_qkv(gen, normal_k=True, heads_v=2 * H), "g": _logdecay(gen, B, T, 2 * H, K),
                      "beta": torch.sigmoid(_randn(gen, B, T, 2 * H))}),
    Case("rwkv6", "rwkv6.chunk_rwkv6", _rwkv6_ref,
         lambda gen: {"r": _randn(gen, B, T, H, K), "k": _randn(gen, B, T, H, K), "v": _randn(gen, B, T, H, V),
                      "w": _logdecay(gen, B, T, H, K), "u": _randn(gen, H, K)}),
    Case("rwkv7", "rwkv7.chunk_rwkv7", _rwkv7_ref, _rwkv7, {"scale": K ** -0.5}),
    Case("hgrn", "hgrn.fused_recurrent_hgrn", _fused("hgrn.fused_recurrent_hgrn"),
         lambda gen: {"x": _randn(gen, B, T, H * K), "g": _logdecay(gen, B, T, H * K)}),
    Case("rwkv5", "rwkv6.chunk_rwkv6", _rwkv5_ref,
         lambda gen: {"r": _randn(gen, B, T, H, K), "k": _randn(gen, B, T, H, K), "v": _randn(gen, B, T, H, V),
                      "w": _logdecay(gen, H, K), "u": _randn(gen, H, K)}),
    # Comba: fla's example draws the auxiliary key as p = k ⊙ d with one d ∈ (0, 1) per head
    Case("comba", "comba.chunk_comba", _naive("comba.naive.naive_recurrent_comba"),
         lambda gen: {**(qkv := _qkv(gen, normal_k=True)),
                      "p": qkv["k"] * torch.sigmoid(_randn(gen, H))[:, None],
                      "g": _logdecay(gen, B, T, H), "beta": torch.sigmoid(_randn(gen, B, T, H))}),
    # GSA: slot write weights s = 1 − α and log α as fla's layer computes them (its g, here passed apart)
    Case("gsa", "gsa.chunk_gsa", _fused("gsa.fused_recurrent_gsa"),
         lambda gen: {**_qkv(gen), "s": 1 - torch.exp(g := _logdecay(gen, B, T, H, M)), "g": g}),
    Case("delta_product", "gated_delta_product.chunk_gated_delta_product", _delta_product_ref,
         lambda gen: {"q": _randn(gen, B, T, H, K), "k": _unit_key(gen, B, T, H, 2, K),
                      "v": _randn(gen, B, T, H, 2, V), "beta": torch.sigmoid(_randn(gen, B, T, H, 2))}),
]
IDS = [f"{c.spec}-{'-'.join(sorted(c.make(torch.Generator())))}" for c in CASES]


@pytest.fixture(autouse=True)
def _first_config() -> Iterator[None]:
    """fla's kernels are autotuned, and the autotuner cannot time anything in the interpreter: pin its first
    config (recurgen's launcher does the same for its own kernels)."""
    from triton.runtime import autotuner

    run = autotuner.Autotuner.__dict__["run"]

    def first(self: Any, *args: Any, **kwargs: Any) -> Any:
        configs = self.configs
        self.configs = configs[:1]
        try:
            return run(self, *args, **kwargs)
        finally:
            self.configs = configs

    autotuner.Autotuner.run = first
    try:
        yield
    finally:
        autotuner.Autotuner.run = run


def _state_shapes(args: Args, spec_name: str) -> list[tuple[int, ...]]:
    if spec_name == "hgrn":
        return [(B, args["x"].shape[-1])]
    if spec_name == "gsa":
        return [(B, H, K, M), (B, H, M, V)]
    heads = max(x.shape[2] for x in args.values() if isinstance(x, torch.Tensor) and x.dim() >= 3)
    return [(B, heads, K, V)] + ([(B, heads, K)] if args.get("normalize") else [])  # normalize: the key sum z


# fp32 agreement relative to the tensor's magnitude (both sides accumulate in fp32, in different orders)
FLA_TOL = 2e-5


def _run(fn: Callable[..., Any], args: Args, h0: list[torch.Tensor]
         ) -> tuple[torch.Tensor, list[torch.Tensor], list[Any]]:
    """Forward with the final state(s), then the gradients of a fixed random projection of all of them."""
    leaves = {n: x.detach().clone().requires_grad_() for n, x in args.items() if isinstance(x, torch.Tensor)}
    states = [h.detach().clone().requires_grad_() for h in h0]
    o, ht = fn(**{**args, **leaves}, initial_state=states[0] if len(states) == 1 else tuple(states),
               output_final_state=True)
    hts = [ht] if isinstance(ht, torch.Tensor) else list(ht)
    gen = torch.Generator().manual_seed(7)
    loss = (o.float() * torch.randn(o.shape, generator=gen)).sum()
    loss = loss + sum((h * torch.randn(h.shape, generator=gen)).sum() for h in hts)
    loss.backward()
    return o.detach(), [h.detach() for h in hts], [leaves[n].grad for n in sorted(leaves)] + [s.grad for s in states]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_same_numbers_as_fla(case: Case) -> None:
    gen = torch.Generator().manual_seed(0)
    args = {**case.make(gen), **case.extra}
    h0 = [0.5 * _randn(gen, *shape).abs() for shape in _state_shapes(args, case.spec)]
    rec = recurgen.load(case.spec)
    o, ht, grads = _run(rec, args, h0)
    o_ref, ht_ref, grads_ref = _run(case.ref, args, h0)
    close(f"{case.spec}: output", o, o_ref, FLA_TOL, rtol=0.0, floor=1.0)
    assert len(ht) == len(ht_ref), f"{case.spec}: {len(ht)} final states, fla returns {len(ht_ref)}"
    for i, (h, h_ref) in enumerate(zip(ht, ht_ref, strict=True)):
        close(f"{case.spec}: final state {i}", h, h_ref, FLA_TOL, rtol=0.0, floor=1.0)
    names = [*sorted(n for n, x in args.items() if isinstance(x, torch.Tensor)),
             *(f"initial_state[{i}]" for i in range(len(h0)))]
    for n, g, g_ref in zip(names, grads, grads_ref, strict=True):
        assert g is not None, f"{case.spec}: no gradient for `{n}`"
        if g_ref is None:
            assert n in case.fixed, f"fla gives no gradient for `{n}`"
            continue
        close(f"{case.spec}: gradient of {n}", g, g_ref, FLA_TOL, rtol=0.0, floor=1.0)


def _params(fn: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(fn).parameters)


@pytest.mark.parametrize("case", [c for c in CASES if c.spec != "delta_product"], ids=lambda c: c.spec)
def test_same_call_as_fla(case: Case) -> None:
    """recurgen's tensor arguments are fla's leading parameters, in order; the common keywords exist in both."""
    ours = _params(getattr(recurgen.load(case.spec).module, f"fused_recurrent_{case.spec}"))
    theirs = _params(_fla(case.api))
    n_tensors = len(recurgen.load(case.spec).spec.arg_order)
    assert ours[:n_tensors] == theirs[:n_tensors]
    common = {"scale", "initial_state", "output_final_state", "cu_seqlens", "normalize"} & set(theirs)
    assert common <= set(ours), f"fla's {case.api} takes {sorted(common - set(ours))}; recurgen's call does not"


@pytest.mark.parametrize("use_norm", [True, False])
def test_based_same_numbers_as_fla(use_norm: bool) -> None:
    """Based has no state in fla's call (its kernels are parallel or chunked, fresh at t = 0): outputs and the
    gradients of q, k, v against fla's torch reference (head-first), with and without the normaliser. Based's
    feature dim is 16 (fla's kernels support no more)."""
    gen = torch.Generator().manual_seed(0)
    args = _qkv(gen)
    ref = _fla("based.naive.naive_parallel_based")

    def fla_based(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return ref(*(x.transpose(1, 2) for x in (q, k, v)), use_norm=use_norm).transpose(1, 2)

    outs, grads = [], []
    for fn in (lambda q, k, v: recurgen.load("based")(q, k, v, use_norm=use_norm)[0], fla_based):
        leaves = {n: x.detach().clone().requires_grad_() for n, x in args.items()}
        o = fn(**leaves)
        (o * torch.randn(o.shape, generator=torch.Generator().manual_seed(7))).sum().backward()
        outs.append(o.detach())
        grads.append([leaves[n].grad for n in sorted(leaves)])
    close(f"based (use_norm={use_norm}): output", outs[0], outs[1], FLA_TOL, rtol=0.0, floor=1.0)
    for n, g, g_ref in zip(sorted(args), *grads, strict=True):
        close(f"based (use_norm={use_norm}): gradient of {n}", g, g_ref, FLA_TOL, rtol=0.0, floor=1.0)


def test_based_same_call_as_fla() -> None:
    ours = _params(recurgen.load("based").module.fused_recurrent_based)
    theirs = _params(_fla("based.parallel_based"))
    assert ours[:5] == theirs[:5] == ["q", "k", "v", "scale", "use_norm"]
