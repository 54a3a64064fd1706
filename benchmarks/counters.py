"""counters: exact global-memory traffic and FLOPs of Triton kernels, counted in the CPU interpreter.

`with count() as tally: ...` patches Triton's interpreter (TRITON_INTERPRET=1) for the duration of the
block and records one `Launch` per kernel launch:

- bytes loaded / stored: for every `tl.load` / `tl.store` (masked or not, scalar or block), the number of
  lanes whose mask is true times the element size of the pointer's type. Masked-off lanes move no data on a
  GPU either, so they are excluded. Loads and stores are counted as issued: a value loaded twice counts
  twice (the GPU's L1/L2 may absorb some of that; this is traffic the kernel asks for, an upper bound on
  DRAM traffic and the quantity a kernel author controls).
- FLOPs: floating-point elementwise arithmetic (add, sub, mul, div, min, max, neg: 1 per element of the
  result; fma: 2), `tl.dot` (2·M·N·K), and reductions / scans (one combine per element folded in).
  Transcendentals (exp, log, sqrt, sin, …) are counted separately as `sfu` (special-function-unit ops),
  one per element. Integer index arithmetic, comparisons, selects and casts are not FLOPs.
  Every lane of an elementwise op counts, masked or not: the hardware computes them all.

`with count_torch() as glue: ...` counts the other half of a call: the memory traffic of the torch ops
around and between the kernel launches (the "glue": casts, gating formulas, readouts, sums of partial
gradients). One `Launch` record per aten op, with the bytes of its tensor inputs (read) and outputs
(written); views, metadata-only and allocation-only ops move nothing and count zero, and ops run by the
interpreter while it executes a kernel (its host copies) are not glue and are skipped. See `count_torch`.

We hook the interpreter's builder (`InterpreterBuilder`, whose `create_*` methods implement every
`tl.*` op on numpy arrays) rather than `triton.language`, because the interpreter rebinds `tl.*` to the
builder per launch; the builder is the one place every op passes through. The autotuner cannot time
anything in the interpreter, so inside `count()` an autotuned kernel runs its first config.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# ops that cost one FLOP per result element (floating point only: the builder names them create_f*)
_FLOP_OPS = ("create_fadd", "create_fsub", "create_fmul", "create_fdiv", "create_frem", "create_fneg",
             "create_precise_divf", "create_approx_divf", "create_minimumf", "create_maximumf",
             "create_minnumf", "create_maxnumf", "create_clampf")
_SFU_OPS = ("create_exp", "create_exp2", "create_log", "create_log2", "create_sqrt", "create_precise_sqrt",
            "create_rsqrt", "create_sin", "create_cos", "create_erf")


@dataclass
class Launch:
    """What one kernel launch did, summed over all its programs."""

    kernel: str
    grid: tuple[int, int, int]
    load_bytes: int = 0
    store_bytes: int = 0
    flops: int = 0  # all FLOPs, including dot_flops
    dot_flops: int = 0  # of which in tl.dot (tensor cores on a GPU)
    sfu: int = 0
    loads: int = 0  # load instructions (per program, summed)
    stores: int = 0

    @property
    def bytes(self) -> int:
        return self.load_bytes + self.store_bytes

    @property
    def programs(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]


@dataclass
class Tally:
    """The launches recorded inside one `count()` block, in order."""

    launches: list[Launch] = field(default_factory=list)

    def select(self, predicate: Callable[[str], bool]) -> list[Launch]:
        return [x for x in self.launches if predicate(x.kernel)]

    def total(self, predicate: Callable[[str], bool] = lambda _: True) -> dict[str, int]:
        sel = self.select(predicate)
        return {"load_bytes": sum(x.load_bytes for x in sel), "store_bytes": sum(x.store_bytes for x in sel),
                "flops": sum(x.flops for x in sel), "dot_flops": sum(x.dot_flops for x in sel),
                "sfu": sum(x.sfu for x in sel), "launches": len(sel)}


def _element_bytes(ptrs: Any) -> int:
    ty = ptrs.get_element_ty()
    return max(1, ty.primitive_bitwidth // 8)


def _active(ptrs: Any, mask: Any) -> int:
    # the mask may be a scalar or broadcast against the pointer block
    return int(np.count_nonzero(np.broadcast_to(np.asarray(mask.data, dtype=bool), ptrs.data.shape)))


def _is_float(handle: Any) -> bool:
    return np.issubdtype(np.asarray(handle.data).dtype, np.floating)


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (set TRITON_INTERPRET=1 before importing triton)."""
    import triton

    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# An autotuner's choice among its configs (the interpreter cannot time them): config list -> the one to run.
Choose = Callable[[list[Any]], Any]


def first(configs: list[Any]) -> Any:
    return configs[0]


@contextlib.contextmanager
def count(choose: Choose = first, chooses: Callable[[Any], bool] = lambda fn: True) -> Iterator[Tally]:
    """Count traffic and FLOPs of every interpreted kernel launch inside the block.

    An autotuned kernel runs the config `choose` picks from its list if `chooses(kernel function)`, else its
    first (the autotuner cannot time configs in the interpreter): a peer library's tile policy is set this way.

    Raises:
        RuntimeError: Triton is not in interpreter mode (counting needs the interpreter).
    """
    if not interpreting():
        raise RuntimeError("benchmarks.counters.count() needs TRITON_INTERPRET=1 set before triton is imported")
    from triton.runtime import autotuner
    from triton.runtime import interpreter as itp

    tally = Tally()
    current: list[Launch] = []  # the launch being executed (launches do not nest)
    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, new: Any) -> None:
        saved.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, new)

    builder = itp.InterpreterBuilder

    def on_load(orig: Any) -> Any:
        def create_masked_load(self: Any, ptrs: Any, mask: Any, other: Any, *a: Any) -> Any:
            if current:
                current[-1].load_bytes += _active(ptrs, mask) * _element_bytes(ptrs)
                current[-1].loads += 1
            return orig(self, ptrs, mask, other, *a)
        return create_masked_load

    def on_store(orig: Any) -> Any:
        def create_masked_store(self: Any, ptrs: Any, value: Any, mask: Any, *a: Any) -> Any:
            if current:
                current[-1].store_bytes += _active(ptrs, mask) * _element_bytes(ptrs)
                current[-1].stores += 1
            return orig(self, ptrs, value, mask, *a)
        return create_masked_store

    def on_elementwise(orig: Any, attr: str, per_element: int) -> Any:
        def op(self: Any, *args: Any) -> Any:
            out = orig(self, *args)
            if current and _is_float(out):
                setattr(current[-1], attr, getattr(current[-1], attr) + per_element * int(np.size(out.data)))
            return out
        return op

    def on_dot(orig: Any) -> Any:
        def create_dot(self: Any, a: Any, b: Any, d: Any, *rest: Any) -> Any:
            if current:
                *batch, m, k = a.data.shape
                n = b.data.shape[-1]
                flops = 2 * int(np.prod(batch, dtype=np.int64)) * m * n * k
                current[-1].flops += flops
                current[-1].dot_flops += flops
            return orig(self, a, b, d, *rest)
        return create_dot

    # create_load / create_store delegate to the masked versions (with an all-true mask), so only
    # the masked ones are hooked: no double counting.
    patch(builder, "create_masked_load", on_load(builder.__dict__["create_masked_load"]))
    patch(builder, "create_masked_store", on_store(builder.__dict__["create_masked_store"]))
    patch(builder, "create_dot", on_dot(builder.__dict__["create_dot"]))
    patch(builder, "create_fma", on_elementwise(builder.__dict__["create_fma"], "flops", 2))
    for name in _FLOP_OPS:
        patch(builder, name, on_elementwise(builder.__dict__[name], "flops", 1))
    for name in _SFU_OPS:
        patch(builder, name, on_elementwise(builder.__dict__[name], "sfu", 1))

    # The fast paths of reductions and scans (sum, min, max, cumsum, cumprod) are numpy calls that bypass
    # the builder; the generic path calls the combine function through the builder and is counted there.
    def on_reduce(orig: Any) -> Any:
        def fast(self: Any, tensor: Any, *a: Any, **kw: Any) -> Any:
            out = orig(self, tensor, *a, **kw)
            data = np.asarray(tensor.handle.data)
            if current and np.issubdtype(data.dtype, np.floating):
                first = out[0] if isinstance(out, (tuple, list)) else out
                current[-1].flops += int(data.size) - int(np.size(first.handle.data))
            return out
        return fast

    def on_scan(orig: Any) -> Any:
        def fast(self: Any, tensor: Any) -> Any:
            out = orig(self, tensor)
            data = np.asarray(tensor.handle.data)
            if current and np.issubdtype(data.dtype, np.floating):
                lines = data.size // max(1, data.shape[self.axis]) if data.ndim else 1
                current[-1].flops += int(data.size) - int(lines)
            return out
        return fast

    patch(itp.ReduceOps, "sum", on_reduce(itp.ReduceOps.__dict__["sum"]))
    patch(itp.ReduceOps, "min_max", on_reduce(itp.ReduceOps.__dict__["min_max"]))
    patch(itp.ScanOps, "cumsum", on_scan(itp.ScanOps.__dict__["cumsum"]))
    patch(itp.ScanOps, "cumprod", on_scan(itp.ScanOps.__dict__["cumprod"]))

    grid_call = itp.GridExecutor.__dict__["__call__"]

    def on_launch(self: Any, *args: Any, **kwargs: Any) -> Any:
        # the grid may be a callable of the arguments; the builder knows the resolved one once set
        set_dim = itp.interpreter_builder.set_grid_dim
        launch = Launch(getattr(self.fn, "__name__", str(self.fn)), (1, 1, 1))

        def record_dim(nx: int, ny: int, nz: int) -> None:
            launch.grid = (int(nx), int(ny), int(nz))
            set_dim(nx, ny, nz)

        itp.interpreter_builder.set_grid_dim = record_dim  # type: ignore[method-assign]
        current.append(launch)
        try:
            return grid_call(self, *args, **kwargs)
        finally:
            current.pop()
            del itp.interpreter_builder.set_grid_dim
            tally.launches.append(launch)

    patch(itp.GridExecutor, "__call__", on_launch)

    # The autotuner cannot benchmark under the interpreter: run its first config (as `_launch` does for
    # recurgen's kernels, and as one would pin a config for a peer library's kernels).
    tuner_run = autotuner.Autotuner.__dict__["run"]

    def first_config(self: Any, *args: Any, **kwargs: Any) -> Any:
        configs = self.configs
        self.configs = [choose(configs) if chooses(self.base_fn) else configs[0]]
        try:
            return tuner_run(self, *args, **kwargs)
        finally:
            self.configs = configs

    patch(autotuner.Autotuner, "run", first_config)
    try:
        yield tally
    finally:
        for owner, name, orig in reversed(saved):
            setattr(owner, name, orig)


# --- torch glue ----------------------------------------------------------------------------------------

# ops that read only their input's shape and dtype, never its data
_SHAPE_ONLY = frozenset({"empty_like", "zeros_like", "ones_like", "full_like", "rand_like", "randn_like",
                         "new_empty", "new_zeros", "new_ones", "new_full", "new_empty_strided"})
# ops that allocate without writing: no traffic at all
_ALLOC_ONLY = frozenset({"empty", "empty_like", "new_empty", "empty_strided", "new_empty_strided"})
# in-place ops that overwrite their first argument without reading it
_OVERWRITE = frozenset({"copy_", "fill_", "zero_"})


def tensor_bytes(t: Any) -> int:
    """Bytes of the distinct elements of `t`: a broadcast (stride-0) dim is one element, read once.

    0-dim tensors are scalars (a kernel takes them as arguments, in registers): no memory traffic.
    Integer and bool tensors are index bookkeeping (sequence offsets, per-chunk tables: a few bytes per
    chunk and sequence, not per head): not data traffic, and left out so that glue stays exactly
    proportional to the data it moves.
    """
    if t.dim() == 0 or not (t.is_floating_point() or t.is_complex()):
        return 0
    return math.prod(n for n, st in zip(t.shape, t.stride(), strict=True) if st != 0) * t.element_size()


def _is_view(func: Any) -> bool:
    # a view returns an alias of an input without writing to it (in-place ops alias too, but write)
    return any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)


def _op_traffic(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, int]:
    """(bytes read, bytes written) by one aten op; each distinct input tensor is read once."""
    import torch
    from torch.utils import _pytree

    if _is_view(func):
        return 0, 0
    name = func._schema.name.split("::")[-1]
    inputs = [x for x in _pytree.tree_leaves((args, kwargs)) if isinstance(x, torch.Tensor)]
    if name in _OVERWRITE and inputs:
        inputs = inputs[1:]
    seen: dict[int, Any] = {id(x): x for x in inputs}  # x * x reads x once
    read = 0 if name in _SHAPE_ONLY else sum(tensor_bytes(x) for x in seen.values())
    outputs = [x for x in _pytree.tree_leaves(out) if isinstance(x, torch.Tensor)]
    written = 0 if name in _ALLOC_ONLY else sum(tensor_bytes(x) for x in outputs)
    return read, written


def _custom_op_body(func: Any) -> Callable[..., Any] | None:
    """The Python function a `torch.library.custom_op` runs, to be called with the mode active.

    Calling the op itself again from inside the mode would dispatch to the mode again (endless
    recursion); torch has no public way to get at the body, so this reads a private table and gives up
    (returns None) if it changed.
    """
    try:
        from torch._library.custom_ops import _maybe_get_opdef

        opdef = _maybe_get_opdef(func._schema.name)
    except (ImportError, AttributeError, RuntimeError):
        return None
    return getattr(opdef, "_init_fn", None) if opdef is not None else None


@contextlib.contextmanager
def count_torch(enter_custom_ops: bool | Callable[[str], bool] = True) -> Iterator[Tally]:
    """Count the global-memory traffic of every torch (aten) op run inside the block, one `Launch` per op.

    Reads are the op's distinct floating-point tensor inputs, writes its tensor outputs, each counted by
    its distinct elements (`tensor_bytes`): what a fused elementwise/reduction GPU kernel for that op must
    move at least. Not counted: integer index tables, views (no data moves), the data of inputs of
    shape-only ops (`zeros_like`), allocations (`empty`), and everything the Triton interpreter does while
    it runs a kernel (its copies to and from numpy are how it emulates the GPU, not glue: `count()`
    measures the kernel itself).
    A custom op (a kernel wrapper registered with `torch.library`) is not itself glue: its body is entered
    so the torch ops inside it are counted, its kernels by `count()` (`enter_custom_ops=False`: neither, to see
    only the glue around the custom ops; a predicate on the op's name: only the ops it accepts are entered).
    FLOPs of glue are not counted.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    tally = Tally()
    in_kernel = [0]
    restore: list[Callable[[], None]] = []
    with contextlib.suppress(ImportError):
        from triton.runtime import interpreter as itp

        grid_call = itp.GridExecutor.__dict__["__call__"]

        def in_launch(self: Any, *args: Any, **kwargs: Any) -> Any:
            in_kernel[0] += 1
            try:
                return grid_call(self, *args, **kwargs)
            finally:
                in_kernel[0] -= 1

        itp.GridExecutor.__call__ = in_launch  # type: ignore[method-assign]
        restore.append(lambda: setattr(itp.GridExecutor, "__call__", grid_call))

    class Glue(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                               kwargs: dict[str, Any] | None = None) -> Any:
            kwargs = kwargs or {}
            if func.namespace != "aten":
                enter = enter_custom_ops(func._schema.name) if callable(enter_custom_ops) else enter_custom_ops
                body = _custom_op_body(func) if enter else None
                if body is None:  # an op we cannot look into: neither glue nor counted
                    return func(*args, **kwargs)
                with self:  # a kernel wrapper: count the torch ops in its body, not its arguments
                    return body(*args, **kwargs)
            out = func(*args, **kwargs)
            if not in_kernel[0]:
                read, written = _op_traffic(func, args, kwargs, out)
                tally.launches.append(Launch(str(func), (1, 1, 1), load_bytes=read, store_bytes=written))
            return out

    try:
        with Glue():
            yield tally
    finally:
        for undo in reversed(restore):
            undo()
