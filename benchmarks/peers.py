"""peers: flash-linear-attention's fused recurrent and chunk kernels, run like recurgen's for side-by-side counts.

fla is an optional bench dependency, never a runtime one, and not an extra either (its pins would pull a
CUDA torch): `pip install --no-deps fla-core==0.6.0 flash-linear-attention==0.6.0 einops`. Nothing in
recurgen imports it.

Each adapter maps a bundled spec's arguments (recurgen's names, fla's [B, T, H, ...] layout) onto fla's
`fused_recurrent_*` call. Defaults that differ between the libraries are set to match the spec: linear
attention unnormalised, delta rules without in-kernel L2 norm (the inputs are already normalised), GLA's
gate passed as `gk`.

fla's chunk kernels index with loop variables (`i_t.to(tl.int64)`): compiled Triton makes them tensors,
the interpreter leaves them Python ints. `loop_vars_as_tensors()` makes the interpreter do what the
compiler does, for fla's kernels only: a `for` loop's variable goes through the interpreter's own
`to_tensor` at the top of each iteration (the interpreter already does that for every assignment).
Their bf16 `tl.dot` computes on bits in the interpreter (wrong values), which does not change what they
load and store.

fla picks its tile lists from the device when its modules are imported (`check_shared_mem`, the SM count,
TF32 support, Hopper or not). Without a GPU it falls back to small tiles (its `chunk_fwd_kernel_h` then runs 4x
the programs and moves 1.8x the bytes it moves on an H100): `import_fla()` imports it with an H100's properties
(`H100`) so it takes the tile lists it uses there, and every fla import in the benchmarks goes through it. Its
autotuner would then pick among those tiles by timing; the interpreter cannot time, so the counts are made
under two policies (`POLICIES`): its smallest tiles and its largest, the range a GPU run falls in. fla's
TileLang and FlashQLA backends need packages not installed here: these are its Triton kernels.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import math
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch
import triton
import triton.language as tl

import recurgen

from . import common
from .counters import Launch, count
from .traffic import cotangents, counting

Adapter = Callable[..., Any]

# What fla asks of the device when it picks tiles: an H100 SXM (sm_90).
H100 = {"name": "NVIDIA H100 80GB HBM3", "capability": (9, 0), "max_shared_mem": 232448, "multiprocessor_count": 132}
FLA_OPS = ("gla", "simple_gla", "retention", "linear_attn", "delta_rule", "gated_delta_rule", "hgrn", "rwkv6",
           "kda", "rwkv7")


class _H100Driver:
    """The two questions fla's `fla.utils.hardware` asks Triton's active driver: the target and its properties."""

    def __init__(self) -> None:
        self.utils = self

    def get_current_target(self) -> Any:
        from triton.backends.compiler import GPUTarget

        major, minor = H100["capability"]
        return GPUTarget("cuda", 10 * major + minor, 32)

    def get_device_properties(self, index: int | None = 0) -> dict[str, int]:
        return {"max_shared_mem": H100["max_shared_mem"], "multiprocessor_count": H100["multiprocessor_count"]}


def _h100_check_shared_mem(arch: str = "none", tensor_idx: int | None = 0) -> bool:
    # fla's check_shared_mem with every device an H100 (a CPU tensor's device index is None: fla's own fails)
    from fla.utils.hardware import Backend  # type: ignore[import-not-found]

    return int(H100["max_shared_mem"]) >= Backend.get_shared_memory(arch)


def _h100_sm_count(tensor_idx: int | None = 0, *, use_aicore: bool = False) -> int:
    return int(H100["multiprocessor_count"])


# fla binds `gather = tl.gather` by name; the interpreter patches `tl.*` inside kernels but not such an alias
# (RWKV7's chunk kernels then fail with "Did you forget to add @triton.jit?"): a jit function calling
# tl.gather stands in for it. A register shuffle: no memory traffic either way.
@triton.jit
def _gather(src, index, axis: tl.constexpr):  # type: ignore[no-untyped-def]
    return tl.gather(src, index, axis)


def import_fla() -> None:
    """Import fla as on an H100 (without a GPU): its import-time device checks see an H100, its call-time ones too.

    At import fla reads the active Triton driver (backend, shared memory, SM count) and torch.cuda (capability,
    name, device count); those are answered as an H100 for the import only, then restored, so nothing else in
    the process (recurgen) sees a fake device. fla's call-time checks (`check_shared_mem(arch, k.device.index)`,
    `get_multiprocessor_count`) are rebound in every fla module to H100 answers.

    Raises:
        RuntimeError: fla was imported before, with the real (CPU) device: its tile lists are already fixed.
    """
    if torch.cuda.is_available():  # a real GPU: fla sees it as it is
        for name in ("fla", "fla.ops", *(f"fla.ops.{op}" for op in FLA_OPS)):
            importlib.import_module(name)
        return
    fla = sys.modules.get("fla")
    if fla is not None:
        if getattr(fla, "_benchmarks_device", None) != H100["name"]:
            raise RuntimeError("fla was imported before benchmarks.peers.import_fla(): its tile lists were chosen "
                               "for this CPU; import it through import_fla() only")
        return
    cuda = torch.cuda
    saved = {n: getattr(cuda, n) for n in ("get_device_capability", "get_device_name", "device_count")}
    cuda.get_device_capability = lambda device=None: H100["capability"]  # type: ignore[assignment]
    cuda.get_device_name = lambda device=None: H100["name"]  # type: ignore[assignment]
    cuda.device_count = lambda: 1  # type: ignore[assignment]
    config = triton.runtime.driver
    active = config.__dict__.get("_active")  # None on a machine without a GPU (reset_active would raise)
    config.set_active(_H100Driver())
    try:
        import fla  # type: ignore[import-not-found]

        for name in ("fla.ops", *(f"fla.ops.{op}" for op in FLA_OPS)):
            importlib.import_module(name)
    finally:
        for n, f in saved.items():
            setattr(cuda, n, f)
        config._active = active
    for mod in [m for n, m in sys.modules.items() if n == "fla" or n.startswith("fla.")]:
        if getattr(mod, "check_shared_mem", None) is not None:
            mod.check_shared_mem = _h100_check_shared_mem
        if getattr(mod, "get_multiprocessor_count", None) is not None:
            mod.get_multiprocessor_count = _h100_sm_count
        if getattr(mod, "gather", None) is tl.gather:
            mod.gather = _gather
    fla._benchmarks_device = H100["name"]


def device_seen() -> dict[str, Any]:
    """What fla decided about the device (after `import_fla`): the flags its tile lists depend on."""
    import fla.utils as fu  # type: ignore[import-not-found]

    return {"is_nvidia": fu.IS_NVIDIA, "is_hopper": fu.IS_NVIDIA_HOPPER, "tf32": fu.IS_TF32_SUPPORTED,
            "smem >= hopper": fu.check_shared_mem("hopper"), "smem >= ampere": fu.check_shared_mem("ampere"),
            "SMs": fu.get_multiprocessor_count()}


def available() -> tuple[bool, str]:
    """(importable, why not), importing fla as on an H100."""
    try:
        import_fla()
    except Exception as e:  # any failure (missing, broken on CPU) means: not available, say why
        return False, f"{type(e).__name__}: {e}"
    return True, ""


def tile(config: Any) -> int:
    """A config's tile size: the product of its block sizes (kwargs named B*: BK, BV, BT, BS, ...)."""
    return math.prod(v for k, v in config.kwargs.items() if k.startswith("B") and isinstance(v, int))


# fla's autotuner picks by timing, which the interpreter cannot do: count at both ends of its tile lists
POLICIES: dict[str, Callable[[list[Any]], Any]] = {
    "smallest": lambda configs: min(configs, key=tile),
    "largest": lambda configs: max(configs, key=tile),
}


def is_fla(fn: Any) -> bool:
    return str(getattr(fn, "__module__", "")).startswith("fla.")


def adapters() -> dict[str, Adapter]:
    """Spec name -> fn(tensors by recurgen name, initial_state, output_final_state) -> (o, ht)."""
    import_fla()
    from fla.ops.delta_rule import fused_recurrent_delta_rule  # type: ignore[import-not-found]
    from fla.ops.gated_delta_rule import fused_recurrent_gated_delta_rule  # type: ignore[import-not-found]
    from fla.ops.gla import fused_recurrent_gla  # type: ignore[import-not-found]
    from fla.ops.hgrn import fused_recurrent_hgrn  # type: ignore[import-not-found]
    from fla.ops.linear_attn import fused_recurrent_linear_attn  # type: ignore[import-not-found]
    from fla.ops.retention import fused_recurrent_retention  # type: ignore[import-not-found]
    from fla.ops.rwkv6 import fused_recurrent_rwkv6  # type: ignore[import-not-found]
    from fla.ops.simple_gla import fused_recurrent_simple_gla  # type: ignore[import-not-found]

    def kw(h0: Any, final: bool) -> dict[str, Any]:
        return {"initial_state": h0, "output_final_state": final}

    return {
        "gla": lambda x, h0, f: fused_recurrent_gla(x["q"], x["k"], x["v"], gk=x["g"], **kw(h0, f)),
        "simple_gla": lambda x, h0, f: fused_recurrent_simple_gla(x["q"], x["k"], x["v"], g=x["g"], **kw(h0, f)),
        "retention": lambda x, h0, f: fused_recurrent_retention(x["q"], x["k"], x["v"], **kw(h0, f)),
        "linear_attn": lambda x, h0, f: fused_recurrent_linear_attn(x["q"], x["k"], x["v"], normalize=False,
                                                                    **kw(h0, f)),
        "delta_rule": lambda x, h0, f: fused_recurrent_delta_rule(x["q"], x["k"], x["v"], x["beta"], **kw(h0, f)),
        "gated_delta_rule": lambda x, h0, f: fused_recurrent_gated_delta_rule(
            x["q"], x["k"], x["v"], g=x["g"], beta=x["beta"], **kw(h0, f)),
        # fla's HGRN has no heads: [B, T, D] with D = H·D here, states [B, D]
        "hgrn": lambda x, h0, f: fused_recurrent_hgrn(x["x"].flatten(2), x["g"].flatten(2),
                                                      **kw(None if h0 is None else h0.flatten(1), f)),
        "rwkv6": lambda x, h0, f: fused_recurrent_rwkv6(x["r"], x["k"], x["v"], x["w"], x["u"], **kw(h0, f)),
    }


def chunk_adapters() -> dict[str, Adapter]:
    """Spec name -> fn(tensors by recurgen name, initial_state, output_final_state) -> (o, ht) through fla's
    `chunk_*` kernels."""
    import_fla()
    from fla.ops.delta_rule import chunk_delta_rule  # type: ignore[import-not-found]
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule  # type: ignore[import-not-found]
    from fla.ops.gla import chunk_gla  # type: ignore[import-not-found]
    from fla.ops.hgrn import chunk_hgrn  # type: ignore[import-not-found]
    from fla.ops.kda import chunk_kda  # type: ignore[import-not-found]
    from fla.ops.linear_attn import chunk_linear_attn  # type: ignore[import-not-found]
    from fla.ops.retention import chunk_retention  # type: ignore[import-not-found]
    from fla.ops.rwkv6 import chunk_rwkv6  # type: ignore[import-not-found]
    from fla.ops.rwkv7 import chunk_rwkv7  # type: ignore[import-not-found]
    from fla.ops.simple_gla import chunk_simple_gla  # type: ignore[import-not-found]

    def kw(h0: Any, final: bool) -> dict[str, Any]:
        return {"initial_state": h0, "output_final_state": final}

    return {
        "gla": lambda x, h0, f: chunk_gla(x["q"], x["k"], x["v"], x["g"], **kw(h0, f)),
        "simple_gla": lambda x, h0, f: chunk_simple_gla(x["q"], x["k"], x["v"], g=x["g"], **kw(h0, f)),
        "retention": lambda x, h0, f: chunk_retention(x["q"], x["k"], x["v"], **kw(h0, f)),
        "linear_attn": lambda x, h0, f: chunk_linear_attn(x["q"], x["k"], x["v"], normalize=False, **kw(h0, f)),
        "delta_rule": lambda x, h0, f: chunk_delta_rule(x["q"], x["k"], x["v"], x["beta"], **kw(h0, f)),
        "gated_delta_rule": lambda x, h0, f: chunk_gated_delta_rule(x["q"], x["k"], x["v"], g=x["g"],
                                                                    beta=x["beta"], **kw(h0, f)),
        "hgrn": lambda x, h0, f: chunk_hgrn(x["x"].flatten(2), x["g"].flatten(2),
                                            **kw(None if h0 is None else h0.flatten(1), f)),
        "rwkv6": lambda x, h0, f: chunk_rwkv6(x["r"], x["k"], x["v"], x["w"], x["u"], **kw(h0, f)),
        # KDA's gate is already the log decay and beta already in (0, 1): fla's in-kernel gate/sigmoid stay off
        "kda": lambda x, h0, f: chunk_kda(x["q"], x["k"], x["v"], x["g"], x["beta"], **kw(h0, f)),
        "rwkv7": lambda x, h0, f: chunk_rwkv7(x["r"], x["w"], x["k"], x["v"], x["a"], x["b"], **kw(h0, f)),
    }


def _loop_vars_transformer() -> Any:
    from triton.runtime import interpreter as itp

    class LoopVarsAsTensors(itp.ASTTransformer):
        """The interpreter's rewriter, plus `i = i` (hence `i = to_tensor(i)`) at the top of every for body."""

        def visit_For(self, node: ast.For) -> ast.For:
            node = self.generic_visit(node)
            if isinstance(node.target, ast.Name):
                name = node.target.id
                again = ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())],
                                   value=ast.Name(id=name, ctx=ast.Load()))
                node.body.insert(0, self.visit_Assign(ast.copy_location(again, node)))
                ast.fix_missing_locations(node)
            return node

    return LoopVarsAsTensors()


@contextlib.contextmanager
def loop_vars_as_tensors() -> Iterator[None]:
    """Interpret fla's kernels with tensor loop variables, as compiled Triton has them (see the module doc).

    Only functions of fla's modules are rewritten this way; the interpreter caches rewritten kernels, so
    recurgen's own kernels are never touched.
    """
    from triton.runtime import interpreter as itp

    orig = itp.FunctionRewriter.__dict__["_transform_ast"]
    ours = _loop_vars_transformer()

    def transform(self: Any, src: str) -> Any:
        if not getattr(self.fn, "__module__", "").startswith("fla."):
            return orig(self, src)
        self.ast_transformer = ours  # an instance attribute shadows the class's transformer
        try:
            return orig(self, src)
        finally:
            del self.ast_transformer

    itp.FunctionRewriter._transform_ast = transform  # type: ignore[method-assign]
    try:
        yield
    finally:
        itp.FunctionRewriter._transform_ast = orig  # type: ignore[method-assign]


def run_fla_chunk(name: str, B: int, T: int, H: int, sz: dict[str, int]) -> dict[str, list[Launch]]:
    """Count fla's chunk kernels (and the torch ops around them) for fwd, fwd_train and bwd."""
    fn = chunk_adapters()[name]
    spec = recurgen.load(name).spec
    out: dict[str, list[Launch]] = {}
    tiles = POLICIES["smallest"], is_fla  # the fair baseline's policy (module doc)
    with loop_vars_as_tensors():
        xs = common.make_inputs(spec, B, T, H, sz)
        with torch.no_grad(), counting(out, "fwd", *tiles):
            fn(xs, None, False)
        xs = common.make_inputs(spec, B, T, H, sz, requires_grad=True)
        with counting(out, "fwd_train", *tiles):
            o, _ = fn(xs, None, False)
        grads = cotangents(o)
        with counting(out, "bwd", *tiles):
            torch.autograd.backward((o,), grads)
    return out


def run_fla_recurrent(name: str, B: int, T: int, H: int, sz: dict[str, int]) -> dict[str, list[Launch]]:
    """Count fla's launches for fwd (inference), fwd+bwd (training) and a one-token step.

    fla has no separate decode kernel for these models: its step is the fused recurrent forward at T=1
    with an initial state and the final state out (what its layers call in generation).
    """
    fn = adapters()[name]
    tiles = POLICIES["smallest"], is_fla  # the fair baseline's policy (module doc)
    spec = recurgen.load(name).spec
    out: dict[str, list[Launch]] = {}
    xs = common.make_inputs(spec, B, T, H, sz)
    with torch.no_grad(), count(*tiles) as tally:
        fn(xs, None, False)
    out["fwd"] = tally.launches
    xs = common.make_inputs(spec, B, T, H, sz, requires_grad=True)
    try:
        with count(*tiles) as tally:
            o, _ = fn(xs, None, False)
        out["fwd_train"] = tally.launches
        with count(*tiles) as tally:
            o.float().sum().backward()
        out["bwd"] = tally.launches
    except Exception:  # fla ships some fused recurrent kernels forward-only: no bwd to compare
        out.pop("fwd_train", None)
    xs1 = common.make_inputs(spec, B, 1, H, sz)
    states = common.zero_states(spec, B, H, sz)
    with torch.no_grad(), count(*tiles) as tally:
        fn(xs1, states[0], True)
    out["step"] = tally.launches
    return out
