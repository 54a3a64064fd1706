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
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

import recurgen

from . import common
from .counters import Launch, count
from .traffic import cotangents, counting

Adapter = Callable[..., Any]


def available() -> tuple[bool, str]:
    """(importable, why not)."""
    try:
        import fla.ops  # type: ignore[import-not-found]  # noqa: F401
    except Exception as e:  # any failure (missing, broken on CPU) means: not available, say why
        return False, f"{type(e).__name__}: {e}"
    return True, ""


def adapters() -> dict[str, Adapter]:
    """Spec name -> fn(tensors by recurgen name, initial_state, output_final_state) -> (o, ht)."""
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
    """Spec name -> fn(tensors by recurgen name) -> (o, ht) through fla's `chunk_*` kernels."""
    from fla.ops.delta_rule import chunk_delta_rule  # type: ignore[import-not-found]
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule  # type: ignore[import-not-found]
    from fla.ops.gla import chunk_gla  # type: ignore[import-not-found]
    from fla.ops.hgrn import chunk_hgrn  # type: ignore[import-not-found]
    from fla.ops.linear_attn import chunk_linear_attn  # type: ignore[import-not-found]
    from fla.ops.retention import chunk_retention  # type: ignore[import-not-found]
    from fla.ops.rwkv6 import chunk_rwkv6  # type: ignore[import-not-found]
    from fla.ops.simple_gla import chunk_simple_gla  # type: ignore[import-not-found]

    return {
        "gla": lambda x: chunk_gla(x["q"], x["k"], x["v"], x["g"]),
        "simple_gla": lambda x: chunk_simple_gla(x["q"], x["k"], x["v"], g=x["g"]),
        "retention": lambda x: chunk_retention(x["q"], x["k"], x["v"]),
        "linear_attn": lambda x: chunk_linear_attn(x["q"], x["k"], x["v"], normalize=False),
        "delta_rule": lambda x: chunk_delta_rule(x["q"], x["k"], x["v"], x["beta"]),
        "gated_delta_rule": lambda x: chunk_gated_delta_rule(x["q"], x["k"], x["v"], g=x["g"], beta=x["beta"]),
        "hgrn": lambda x: chunk_hgrn(x["x"].flatten(2), x["g"].flatten(2)),
        "rwkv6": lambda x: chunk_rwkv6(x["r"], x["k"], x["v"], x["w"], x["u"]),
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
    with loop_vars_as_tensors():
        xs = common.make_inputs(spec, B, T, H, sz)
        with torch.no_grad(), counting(out, "fwd"):
            fn(xs)
        xs = common.make_inputs(spec, B, T, H, sz, requires_grad=True)
        with counting(out, "fwd_train"):
            o, _ = fn(xs)
        grads = cotangents(o)
        with counting(out, "bwd"):
            torch.autograd.backward((o,), grads)
    return out


def run_fla_recurrent(name: str, B: int, T: int, H: int, sz: dict[str, int]) -> dict[str, list[Launch]]:
    """Count fla's launches for fwd (inference), fwd+bwd (training) and a one-token step.

    fla has no separate decode kernel for these models: its step is the fused recurrent forward at T=1
    with an initial state and the final state out (what its layers call in generation).
    """
    fn = adapters()[name]
    spec = recurgen.load(name).spec
    out: dict[str, list[Launch]] = {}
    xs = common.make_inputs(spec, B, T, H, sz)
    with torch.no_grad(), count() as tally:
        fn(xs, None, False)
    out["fwd"] = tally.launches
    xs = common.make_inputs(spec, B, T, H, sz, requires_grad=True)
    try:
        with count() as tally:
            o, _ = fn(xs, None, False)
        out["fwd_train"] = tally.launches
        with count() as tally:
            o.float().sum().backward()
        out["bwd"] = tally.launches
    except Exception:  # fla ships some fused recurrent kernels forward-only: no bwd to compare
        out.pop("fwd_train", None)
    xs1 = common.make_inputs(spec, B, 1, H, sz)
    states = common.zero_states(spec, B, H, sz)
    with torch.no_grad(), count() as tally:
        fn(xs1, states[0], True)
    out["step"] = tally.launches
    return out
