"""The blocked associative-scan core, templates/chunk/scan.py.jinja, under the Triton interpreter.

Canonical recurrence per sequence and head (elementwise, state [P, Q]):
    S_t = a_t * S_{t-1} + b_t,    o_t[p] = sum_q S_t[p, q] c_t[q]  (readout "contract")  or  o_t = S_t  ("state")
real and complex. Every case runs forward (o, final state) and backward (all gradients, torch's complex
convention) against a float64 / complex128 per-token loop differentiated by torch.autograd. The last tests
compile every kernel for sm_80 and sm_90 in a subprocess (compiling needs Triton without the interpreter).
"""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from recurgen.codegen.chunk_core import load_core, render_core

pytestmark = pytest.mark.interpret
ROOT = Path(__file__).parent.parent.parent
PREFIX = "scan_test"
VARIANTS = ((False, "contract"), (False, "state"), (True, "contract"), (True, "state"))
# allowed error relative to the largest magnitude of each compared tensor: the kernels compute in fp32
# (inputs are rounded before the float64 loop sees them, so only the kernels' own error counts)
TOL = 2e-4


@pytest.fixture(scope="module", params=VARIANTS, ids=[f"{'complex' if c else 'real'}-{r}" for c, r in VARIANTS])
def core(request: pytest.FixtureRequest) -> tuple[bool, str, ModuleType]:
    cx, readout = request.param
    return cx, readout, load_core("scan", PREFIX, complex=cx, readout=readout)


def loop(a, b, c, h0, cu_seqlens, readout: str):
    """Per-token loop of the recurrence in the inputs' dtype; o [B, T, H, P(, Q)] and final states [N, H, P, Q]."""
    B, T, H, P, Q = a.shape
    if cu_seqlens is None:
        seqs = [(i, 0, T) for i in range(B)]
    else:
        cu = cu_seqlens.tolist()
        seqs = [(0, cu[i], cu[i + 1]) for i in range(len(cu) - 1)]
    rows: list[list[torch.Tensor]] = [[] for _ in range(B)]
    finals = []
    for n, (i, s0, s1) in enumerate(seqs):
        S = h0[n] if h0 is not None else a.new_zeros(H, P, Q)
        for t in range(s0, s1):
            S = a[i, t] * S + b[i, t]
            rows[i].append((S * c[i, t][:, None, :]).sum(-1) if readout == "contract" else S)
        finals.append(S)
    shape = (H, P) if readout == "contract" else (H, P, Q)
    o = torch.stack([torch.stack(r) if r else a.new_zeros((0, *shape)) for r in rows])
    return o, torch.stack(finals)


def _decay(shape, kind: str, cx: bool, gen: torch.Generator) -> torch.Tensor:
    """a with |a| mid-range (0.5..1), near 1 (1 - 1e-3 .. 1) or tiny (strong decay, e^-20 .. e^-5)."""
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    mag = {"mid": 0.5 + 0.5 * u, "near1": 1 - 1e-3 * u, "tiny": torch.exp(-5 - 15 * u)}[kind]
    if not cx:
        sign = torch.where(torch.rand(shape, generator=gen) < 0.1, -1.0, 1.0).double()
        return (mag * sign).float()
    phase = (torch.rand(shape, generator=gen, dtype=torch.float64) - 0.5) * 2 * math.pi
    return torch.polar(mag, phase).to(torch.complex64)


def make(cx: bool, readout: str, B: int, T: int, H: int, P: int, Q: int, decays: tuple[str, ...], h0: bool,
         n_seq: int, seed: int = 0):
    """Inputs in fp32 / complex64; head h uses decay kind decays[h % len(decays)]."""
    gen = torch.Generator().manual_seed(seed)
    dt = torch.complex64 if cx else torch.float32

    def randn(*shape):
        if cx:
            return torch.complex(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)).to(dt)
        return torch.randn(shape, generator=gen)

    a = torch.stack([_decay((B, T, P, Q), decays[h % len(decays)], cx, gen) for h in range(H)], dim=2)
    b = randn(B, T, H, P, Q)
    c = randn(B, T, H, Q) if readout == "contract" else None
    init = randn(n_seq, H, P, Q) if h0 else None
    return a.contiguous(), b, c, init


def _wide(x):
    if x is None:
        return None
    return x.to(torch.complex128 if x.is_complex() else torch.float64).detach().requires_grad_()


def assert_near(x: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    assert x.shape == ref.shape, (what, x.shape, ref.shape)
    assert torch.isfinite(torch.view_as_real(x) if x.is_complex() else x).all(), what
    err = (x.to(ref.dtype) - ref).abs().max().item() if ref.numel() else 0.0
    scale = ref.abs().max().item() if ref.numel() else 0.0
    assert err <= TOL * scale + 1e-6, f"{what}: max error {err:.3g} vs scale {scale:.3g}"


def check(mod: ModuleType, cx: bool, readout: str, a, b, c, h0, cu_seqlens, final: bool, block_t: int,
          seed: int = 1) -> None:
    """Forward and backward of the core against the autograd of the float64 loop."""
    fwd, bwd = getattr(mod, f"{PREFIX}_fwd"), getattr(mod, f"{PREFIX}_bwd")
    o, ht = fwd(a, b, c, h0, cu_seqlens, final, block_t=block_t)
    wa, wb, wc, wh0 = (_wide(x) for x in (a, b, c, h0))
    o_ref, ht_ref = loop(wa, wb, wc, wh0, cu_seqlens, readout)
    assert o.dtype == (torch.complex64 if cx else torch.float32)
    assert_near(o, o_ref, "o")
    if final:
        assert_near(ht, ht_ref, "ht")
    else:
        assert ht is None

    gen = torch.Generator().manual_seed(seed)

    def cot(like: torch.Tensor) -> torch.Tensor:
        x = torch.randn(like.shape, generator=gen)
        if cx:
            x = torch.complex(x, torch.randn(like.shape, generator=gen))
        return x.to(like.dtype)

    do = cot(o)
    dht = cot(ht_ref.detach().to(o.dtype)) if final else None
    # a real loss whose gradient with respect to o (ht) is do (dht) in torch's convention
    loss = (o_ref * _wide(do).detach().conj()).real.sum()
    if final:
        loss = loss + (ht_ref * _wide(dht).detach().conj()).real.sum()
    wrt = [x for x in (wa, wb, wc, wh0) if x is not None]
    refs = iter(torch.autograd.grad(loss, wrt, allow_unused=True))
    da, db, dc, dh0 = bwd(a, b, c, h0, cu_seqlens, do, dht, block_t=block_t)
    for name, got, x in (("da", da, a), ("db", db, b), ("dc", dc, c), ("dh0", dh0, h0)):
        if x is None:
            assert got is None, name
            continue
        ref = next(refs)
        ref = torch.zeros_like(_wide(x)) if ref is None else ref
        assert got.dtype == x.dtype, name
        assert_near(got, ref, name)


# (name, B, T, H, P, Q, block_t, h0, final state, cu_seqlens, decay kinds per head)
CASES = {
    "T45-block16": (2, 45, 1, 2, 3, 16, True, True, None, ("mid",)),
    "T70-block64-no-h0": (1, 70, 2, 3, 2, 64, False, False, None, ("mid",)),
    "varlen": (1, 70, 1, 2, 3, 16, True, True, [0, 5, 40, 70], ("mid",)),
    "varlen-empty-seqs": (1, 9, 1, 2, 2, 4, True, True, [0, 0, 9, 9], ("mid",)),
    "Q1-no-h0": (2, 33, 1, 5, 1, 8, False, True, None, ("mid",)),
    "decay-near1-and-tiny": (1, 70, 2, 2, 2, 16, True, True, None, ("near1", "tiny")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_loop(core: tuple[bool, str, ModuleType], case: str) -> None:
    cx, readout, mod = core
    B, T, H, P, Q, block_t, h0, final, cu, decays = CASES[case]
    cu_seqlens = None if cu is None else torch.tensor(cu, dtype=torch.int32)
    n_seq = B if cu is None else len(cu) - 1
    a, b, c, init = make(cx, readout, B, T, H, P, Q, decays, h0, n_seq)
    check(mod, cx, readout, a, b, c, init, cu_seqlens, final, block_t)


def test_state_split_across_tiles(core: tuple[bool, str, ModuleType], monkeypatch: pytest.MonkeyPatch) -> None:
    """A register budget of one Q row per token makes every P row its own program (tile BP = 1): the readout
    gradient dc is then summed over P tiles on the host (varlen, so tiles also restart per sequence)."""
    cx, readout, mod = core
    monkeypatch.setattr(mod, f"{PREFIX}_FWD_BUDGET", 32)
    monkeypatch.setattr(mod, f"{PREFIX}_BWD_BUDGET", 32)
    assert getattr(mod, f"_{PREFIX}_tiles")(5, 3, 20, 8, 32) == (8, 1, 4)
    a, b, c, h0 = make(cx, readout, 1, 20, 1, 5, 3, ("mid",), True, 2)
    check(mod, cx, readout, a, b, c, h0, torch.tensor([0, 7, 20], dtype=torch.int32), True, 8)


def test_empty_sequence_launches_nothing(core: tuple[bool, str, ModuleType]) -> None:
    """T = 0: o is empty, the final state is h0 and its gradient passes dht through to dh0."""
    cx, readout, mod = core
    a, b, c, h0 = make(cx, readout, 2, 0, 2, 3, 2, ("mid",), True, 2)
    o, ht = getattr(mod, f"{PREFIX}_fwd")(a, b, c, h0, None, True)
    assert o.shape == ((2, 0, 2, 3) if readout == "contract" else (2, 0, 2, 3, 2))
    assert torch.equal(ht, h0)
    dht = torch.randn_like(ht)
    da, db, dc, dh0 = getattr(mod, f"{PREFIX}_bwd")(a, b, c, h0, None, torch.zeros_like(o), dht)
    assert da.shape == a.shape
    assert db.shape == b.shape
    assert (dc is None) == (readout == "state")
    assert torch.equal(dh0, dht)
    o, ht = getattr(mod, f"{PREFIX}_fwd")(a, b, c, None, None, True)
    assert torch.equal(ht, torch.zeros_like(h0))


LONG = [pytest.param(False, "contract", 1, 1, id="real-contract-P1-Q1")]
LONG += [pytest.param(cx, readout, 2, 2, marks=pytest.mark.slow, id=f"{'complex' if cx else 'real'}-{readout}-P2-Q2")
         for cx, readout in VARIANTS]


@pytest.mark.parametrize(("cx", "readout", "P", "Q"), LONG)
def test_long_sequence_numerics(cx: bool, readout: str, P: int, Q: int) -> None:
    """T = 4096 with near-1 decays (head 0: states grow to ~1/(1-|a|)) and strong ones (head 1: products underflow):
    finite and matching the float64 loop, forward and backward (the interpreter takes ~10 s per real P = Q = 1 run,
    a minute per complex P = Q = 2 one: the larger ones run under -m slow)."""
    mod = load_core("scan", PREFIX, complex=cx, readout=readout)
    a, b, c, h0 = make(cx, readout, 1, 4096, 2, P, Q, ("near1", "tiny"), True, 1, seed=3)
    check(mod, cx, readout, a, b, c, h0, None, True, 64)


def test_rendered_names_and_flags() -> None:
    """Pasted into generated modules: no imports unless standalone, every module-level name prefixed."""
    for cx, readout in VARIANTS:
        src = render_core("scan", "zz", complex=cx, readout=readout)
        tree = ast.parse(src)
        assert not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in tree.body)
        names = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        names += [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
        assert names
        assert all(x.startswith(("zz_", "_zz_")) for x in names), names
        assert {"zz_fwd", "zz_bwd", "zz_fwd_kernel", "zz_bwd_kernel"} <= set(names)
        std = ast.parse(render_core("scan", "zz", standalone=True, complex=cx, readout=readout))
        imported = {a.asname or a.name for n in std.body if isinstance(n, ast.Import) for a in n.names}
        assert {"math", "torch", "triton", "tl"} <= imported
    with pytest.raises(Exception, match="readout_must_be_contract_or_state"):
        render_core("scan", "zz", complex=False, readout="sum")


def test_autotune_pruning_respects_budgets(core: tuple[bool, str, ModuleType]) -> None:
    """The GPU autotuner only tries tiles within the register budget and warp counts that neither spill nor idle."""
    _, _, mod = core
    fwd_k, bwd_k = getattr(mod, f"{PREFIX}_fwd_kernel"), getattr(mod, f"{PREFIX}_bwd_kernel")
    fits = getattr(mod, f"_{PREFIX}_fits")
    for P, Q, BT in ((64, 16, 64), (1024, 1, 64), (3, 5, 16), (1, 1, 1)):
        BQ = 1 << (Q - 1).bit_length()
        kept = getattr(mod, f"_{PREFIX}_prune_fwd")(fwd_k.configs, {"P": P}, BT=BT, BQ=BQ)
        assert kept
        for cf in kept:
            assert cf.kwargs["BP"] <= max(1, 1 << (P - 1).bit_length())
            assert BT * cf.kwargs["BP"] * BQ <= max(getattr(mod, f"{PREFIX}_FWD_BUDGET"), BT * BQ)
        bt, bp, bq = getattr(mod, f"_{PREFIX}_tiles")(P, Q, 4096, BT, getattr(mod, f"{PREFIX}_BWD_BUDGET"))
        kept = getattr(mod, f"_{PREFIX}_prune_bwd")(bwd_k.configs, {"P": P}, BT=bt, BP=bp, BQ=bq)
        assert kept
        if bt * bp * bq >= 32:
            assert all(fits(bt * bp * bq, cf.num_warps, getattr(mod, f"{PREFIX}_BWD_PER_THREAD")) for cf in kept)


_COMPILE = r"""
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from recurgen.codegen.chunk_core import load_core
from recurgen.gpu import ARCHS, _usage

every = sys.argv[1] == "all"
P, Q, T, BLOCK_T = 64, 16, 4096, 64  # Mamba-like: 64 channels per head, state size 16
FLAGS = ("IS_VARLEN", "USE_INITIAL_STATE", "STORE_FINAL_STATE", "STORE_O", "SAVE_CKPT", "USE_FINAL_STATE_GRADIENT")
rows = []
for cx, readout in ((False, "contract"), (False, "state"), (True, "contract"), (True, "state")):
    p = "cc"
    mod = load_core("scan", p, complex=cx, readout=readout)
    for kind in ("fwd", "bwd"):
        kernel = getattr(mod, f"{p}_{kind}_kernel")
        fn = kernel.fn
        bt, bp, bq = getattr(mod, f"_{p}_tiles")(P, Q, T, BLOCK_T, getattr(mod, f"{p}_{kind.upper()}_BUDGET"))
        prune = getattr(mod, f"_{p}_prune_{kind}")
        if kind == "fwd":
            kept = [(c.kwargs["BP"], c.num_warps) for c in prune(kernel.configs, {"P": P}, BT=bt, BQ=bq)]
        else:
            kept = [(bp, c.num_warps) for c in prune(kernel.configs, {"P": P}, BT=bt, BP=bp, BQ=bq)]
        # by default the launcher's tile with the fewest warps the autotuner may try (the most registers per
        # thread); with "all", every configuration it may try
        todo = kept if every else [min((k for k in kept if k[0] == bp), key=lambda k: k[1])]
        for tile, warps in todo:
            consts = {"BT": bt, "BP": tile, "BQ": bq, **{f: True for f in FLAGS if f in fn.arg_names}}
            sig = {a: ("constexpr" if a in consts else "*i32" if a == "cu_seqlens"
                       else "i32" if a in ("T", "TT", "H", "P", "Q") else "*fp32") for a in fn.arg_names}
            for arch, cap in ARCHS.items():
                k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts),
                                   target=GPUTarget("cuda", cap, 32), options={"num_warps": warps})
                reg, local, stack, shared = _usage(k.asm["cubin"])
                rows.append(dict(variant=f"{'complex' if cx else 'real'}-{readout}", kernel=kind, arch=arch,
                                 BT=bt, BP=tile, BQ=bq, warps=warps, registers=reg, spills=local, stack=stack,
                                 shared=max(shared, int(k.metadata.shared))))
print(json.dumps(rows))
"""


def _compile(which: str) -> list[dict]:
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    res = subprocess.run([sys.executable, "-c", _COMPILE, which], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=1800, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _assert_compiled_clean(rows: list[dict]) -> None:
    seen = {(r["variant"], r["kernel"], r["arch"]) for r in rows}
    for cx, readout in VARIANTS:
        for kind in ("fwd", "bwd"):
            for arch in ("sm_80", "sm_90"):
                assert (f"{'complex' if cx else 'real'}-{readout}", kind, arch) in seen
    spilled = [r for r in rows if r["spills"] or r["stack"]]
    assert not spilled, "kernels that spill:\n" + "\n".join(map(str, spilled))


def test_compiles_for_gpus_without_spills() -> None:
    """Every kernel (fwd, bwd; real, complex; both readouts) builds for sm_80 and sm_90 at P = 64, Q = 16 with the
    launcher's tile and the fewest warps the autotuner may pick, without register spills."""
    _assert_compiled_clean(_compile("default"))


@pytest.mark.slow
def test_every_autotune_config_compiles_without_spills() -> None:
    _assert_compiled_clean(_compile("all"))
