"""kernel_text: the printed pieces of the fused recurrent kernels shared by the planners (plan, sweeps).

Offsets, masks, loads and stores of named-dim tiles, the state-gradient setup and the gradient stores and param
accumulations: text for the templates, from names and dims only (no decisions; plan.py and sweeps.py decide).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .. import ir
from ..errors import InternalError
from ..ir import Apply, Expr, Var, base_dim
from .triton_printer import TritonPrinter, Val

# the row of a program's partial param gradient in dp_<p> [NV, N, H, ...] (summed over tiles and sequences on the host)
DPARAM_ROW = "((i_v * NB + i_b.to(tl.int64)) * H + i_h)"


def kernel_names(spec: ir.Spec) -> frozenset[str]:
    """The tile names kernels give the spec's own names (`b_<name>`): printer temporaries must avoid them."""
    named = (*spec.inputs, *spec.params, *spec.states, *spec.outputs, *spec.options, *spec.consts)
    return frozenset(f"b_{x.name}" for x in named)


def times(a: str, b: str) -> str:
    """`a * b` as printed index arithmetic, with the literal factors 1 and 0 folded."""
    if "0" in (a, b):
        return "0"
    return a if b == "1" else b if a == "1" else f"{a} * {b}"


def plus(*terms: str) -> str:
    """`a + b + ...` as printed index arithmetic, without the literal terms 0."""
    kept = [x for x in terms if x != "0"]
    return " + ".join(kept) if kept else "0"


def group(x: str) -> str:
    """`x` in parentheses unless it is one name or number, or already one parenthesised group."""
    if x.replace("_", "").isalnum():
        return x
    if x.startswith("(") and x.endswith(")"):
        depth = 0
        for i, ch in enumerate(x):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0 and i < len(x) - 1:
                break
        else:
            return x
    return f"({x})"


def _offsets(dims: tuple[str, ...], index: str, size: str) -> str:
    """Row-major offsets of a tile: `index` names each dim's offsets, `size` its extent (both formats)."""
    if not dims:
        return "0"
    n = len(dims)
    terms = []
    for i, d in enumerate(dims):
        idx = ", ".join(":" if j == i else "None" for j in range(n))
        o = f"{index.format(d)}[{idx}]" if n > 1 else index.format(d)
        stride = " * ".join(size.format(x) for x in dims[i + 1:])
        terms.append(f"{o} * {stride}" if stride else o)
    return " + ".join(terms)


def global_offsets(dims: tuple[str, ...]) -> str:
    """Offsets of a tile inside one contiguous row of shape `dims` (runtime sizes)."""
    return _offsets(dims, "o_{}", "{}")


def block_offsets(dims: tuple[str, ...]) -> str:
    """Offsets of a tile in a compact block-shaped buffer (no masks needed)."""
    return _offsets(dims, "l_{}", "B{}")


def numel(dims: tuple[str, ...]) -> str:
    return " * ".join(dims) if dims else "1"


def block_numel(dims: tuple[str, ...]) -> str:
    return " * ".join(f"B{d}" for d in dims) if dims else "1"


def tile_shape(dims: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"B{d}" for d in dims) + "]"


def mask(dims: tuple[str, ...]) -> str | None:
    return TritonPrinter.mask(dims) if dims else None


def _load(ptr: str, row: str, dims: tuple[str, ...], cplx: bool, extra: str = "",
          row_dims: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """`tl.load` expressions (one, or re and im) of a tile of a row-major tensor.

    `row_dims` are the dims of one whole row when the tile is a slice of it (`k[j]` of a [J, K] row).
    """
    offs = global_offsets(dims)
    m = mask(dims)
    mk = f", mask={m}, other=0.0" if m else ""
    base = plus(times(row, numel(row_dims if row_dims is not None else dims)), extra or "0")
    if not cplx:
        return (f"tl.load({plus(ptr, base, offs)}{mk}).to(tl.float32)",)
    return tuple(f"tl.load({plus(ptr, times(group(plus(base, offs)), '2'), str(c))}{mk}).to(tl.float32)"
                 for c in (0, 1))


def _store(ptr: str, row: str, dims: tuple[str, ...], vals: tuple[str, ...]) -> list[str]:
    offs = global_offsets(dims)
    m = mask(dims)
    mk = f", mask={m}" if m else ""
    base = times(row, numel(dims))
    if len(vals) == 1:
        return [f"tl.store({plus(ptr, base, offs)}, {vals[0]}.to({ptr}.dtype.element_ty){mk})"]
    return [f"tl.store({plus(ptr, times(group(plus(base, offs)), '2'), str(c))}, {v}.to({ptr}.dtype.element_ty){mk})"
            for c, v in enumerate(vals)]


def _input_row(name: str) -> str:
    """The row of input `name` at token t: it may have fewer heads than the state (grouped heads)."""
    return f"(i_t * H_{name} + i_h // (H // H_{name}))"


def _names(base: str, cplx: bool) -> tuple[str, ...]:
    return (f"{base}_re", f"{base}_im") if cplx else (base,)


def _val(names: tuple[str, ...]) -> Val:
    return names if len(names) == 2 else names[0]  # type: ignore[return-value]


def _as_tuple(v: Val) -> tuple[str, ...]:
    return v if isinstance(v, tuple) else (v,)


def _tile_of(v: Val, dims: tuple[str, ...], cplx: bool, src: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Materialise a value (dims `src`) as full tiles of `dims`: scalars and literals get filled."""
    parts = _as_tuple(v)
    if cplx and len(parts) == 1:
        parts = (parts[0], "0.0")
    zero = f"tl.zeros({tile_shape(dims)}, dtype=tl.float32)"
    out = []
    for p in parts:
        literal = p.lstrip("-").replace(".", "", 1).isdigit()
        if dims and (literal or src is None or src != dims):
            p = f"{p} + {zero}" if src in (None, ()) or literal else \
                f"{TritonPrinter.align(p, src, dims)} + {zero}"
        out.append(p)
    return tuple(out)


# --- the plan -------------------------------------------------------------------------------------
def _leaf_dims_of_index(leaf: Apply) -> tuple[str, ...]:
    base = leaf.args[0]
    assert isinstance(base, Var)
    return base.ty.dims


def _dim_setup(dims: tuple[str, ...], split: str | None, aliases: tuple[str, ...] = (),
               even: bool = False) -> list[str]:
    """Per dim: its lanes, this program's offsets (the split dim's tile i_v) and mask; an alias of a repeated dim
    (`ir.alias_dim`) takes its dim's (the split dim has none: `plan.choose_split`). With `even`, a kernel whose
    constexpr EVEN_DIMS says every size is a multiple of its block gets masks that fold to true at compile time
    (`l < B`): no predicate registers, no selects (the two-sweep backward's K = 64 tile spills without that)."""
    def m(d: str) -> str:
        return f"(l_{d} < B{d}) if EVEN_DIMS else (o_{d} < {d})" if even else f"o_{d} < {d}"
    return [f"l_{d} = tl.arange(0, B{d})\no_{d} = {f'i_v * B{d} + ' if d == split else ''}l_{d}\nm_{d} = {m(d)}"
            for d in dims] + [f"o_{a} = o_{base_dim(a)}\nm_{a} = m_{base_dim(a)}" for a in aliases]


def _dstate_code(spec: ir.Spec, dstate_names: dict[str, tuple[str, ...]], split: str | None
                 ) -> tuple[list[str], list[str]]:
    """dS_T from the final state's cotangent, and the store of dS_0 (the initial state's gradient)."""
    dstate_init, dh0 = [], []
    for s in spec.states:
        names = dstate_names[s.name]
        dstate_init += [f"{n} = tl.zeros({tile_shape(s.ty.dims)}, dtype=tl.float32)" for n in names]
        loads = _load(f"dht_{s.name}", "i_bh64", s.ty.dims, s.ty.complex)
        if split is not None and split not in s.ty.dims:
            # every tile holds this whole state: its final-state cotangent enters once, in tile 0
            loads = tuple(f"tl.where(i_v == 0, {ld}, 0.0)" for ld in loads)
        dstate_init.append("if USE_FINAL_STATE_GRADIENT:")
        dstate_init += [f"    {n} += {ld}" for n, ld in zip(names, loads, strict=True)]
        # a state without the split dim gets a partial gradient per tile: its own slab, summed on the host
        row = "i_bh64" if split is None or split in s.ty.dims else "(i_v * NBH + i_bh64)"
        dh0 += _store(f"dh0_{s.name}", row, s.ty.dims, names)
    return dstate_init, dh0


def _used_loads(loads: list[str], code: list[str]) -> str:
    """The loads (`b_x = tl.load(...)`) whose name `code` reads."""
    text = "\n".join(code)
    return "\n".join(ld for ld in loads if re.search(rf"\b{re.escape(ld.split(' = ', 1)[0])}\b", text))


def sink_loads(loads: list[str], code: list[str]) -> list[str]:
    """`code` with each load it reads placed just before the first top-level statement (with its indented block)
    that reads it: a tile then lives from its first use, not from the top of the step (fewer registers when a
    split dim's vectors are replicated across the threads of the state tile)."""
    pending = {ld.split(" = ", 1)[0]: ld for ld in loads}
    blocks: list[list[str]] = []
    for line in "\n".join(code).splitlines():
        if blocks and line.startswith((" ", "\t")):
            blocks[-1].append(line)
        else:
            blocks.append([line])
    out: list[str] = []
    for block in blocks:
        text = "\n".join(block)
        for name in [n for n in pending if re.search(rf"\b{re.escape(n)}\b", text)]:
            out.append(pending.pop(name))
        out += block
    return out


def grad_stores(grads: Iterable[tuple[Expr, Expr]], bp: TritonPrinter, tiled_inputs: set[str],
                split: str | None) -> tuple[list[str], tuple[str, ...]]:
    """The stores of the input gradients (leaf: an input or its loop slice), and the inputs they cover."""
    stores: list[str] = []
    got: list[str] = []
    seen_whole: set[str] = set()
    for leaf, g in grads:
        if isinstance(leaf, Var):
            name, dims, extra = leaf.name, leaf.ty.dims, ""
            if name in seen_whole:
                raise InternalError("codegen", f"input `{name}` has two gradient leaves")
            seen_whole.add(name)
        else:
            base = leaf.args[0]
            assert isinstance(base, Var)
            name, dims = base.name, base.ty.dims[1:]
            extra = times(str(leaf.attr), numel(dims))
        v = bp.value(g)
        tile = _tile_of(v, dims, False, g.ty.dims)[0]
        # gradients are written with the full head count; the host sums grouped heads (and tiles)
        row = "i_tok" if name in tiled_inputs or split is None else "(i_v * NTOK + i_tok)"
        offs, m = global_offsets(dims), mask(dims)
        base_off = plus(times(row, numel(leaf.args[0].ty.dims if isinstance(leaf, Apply) else dims)), extra or "0")
        mk = f", mask={m}" if m else ""
        stores.append(f"tl.store({plus(f'dx_{name}', base_off, offs)}, {tile}.to(dx_{name}.dtype.element_ty){mk})")
        got.append(name)
    return stores, tuple(dict.fromkeys(got))


def param_accumulates(spec: ir.Spec, grads: Iterable[tuple[str, Expr]], bp: TritonPrinter
                      ) -> tuple[list[str], tuple[str, ...]]:
    """`b_dp_<p> += ...` per param gradient of one token, and the params they cover."""
    acc = []
    pgrads = []
    for pname, g in grads:
        p = spec.tensor(pname)
        v = bp.value(g)
        acc.append(f"b_dp_{pname} += {_tile_of(v, p.ty.dims, False, g.ty.dims)[0]}")
        pgrads.append(pname)
    return acc, tuple(dict.fromkeys(pgrads))
