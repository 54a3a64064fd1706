"""chunk_token: ChunkPlan -> TokenPlan, the spec's per-token formulas around the chunk kernel families as
generated Triton kernels (the prologue and epilogue of chunk mode), forward and backward.

A chunk family takes canonical operands (q, k, v, g, β, ...) and returns one read-out per state. What the spec
computes per token around it — the operands from the raw inputs (mLSTM's i'_t k_t, Mamba2's Δ_t x_t, ...) and the
outputs from the read-outs (RWKV6's bonus, Mamba2's skip and gate, mLSTM's normaliser) — are printed here from the
IR into four token-parallel kernels, so no torch op runs over a [B, T, H, ...] tensor:

  prologue   the operands that are not an input as it is, stored in the dtype the family loads (dot operands in
             the inputs' half dtype, the rest fp32)
  epilogue   the outputs from the read-outs and the token's inputs, stored in the inputs' dtype
  dreads     the read-outs' cotangents from the outputs' (the families' `do`), fp32
  leaves     every input's, param's and running max's gradient in one pass: the operands' cotangents (from the
             families' backward) pulled back through the prologue, plus the outputs' pulled back through the
             epilogue; stored in the input dtype, params as per-program partial sums (fixed order, no atomics)

The adjoints come from autodiff.vjp on the same expressions, so every spec gets them from the same code. Each
kernel is one program per (BT tokens, batch x head) walking its tokens; all of them share the leaves' loads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .. import ir
from ..ir import Apply, Const, Expr, Kind, Op, Var
from . import autodiff
from .chunk_plan import ChunkPlan, CoreCall
from .kernel_text import _load, _store, _tile_of, _used_loads, kernel_names, numel, tile_shape
from .step import unroll
from .triton_printer import TritonPrinter, Val

TOKEN_BLOCK = 64  # tokens per program of the token kernels
_DOT_OPERANDS = frozenset({"q", "k", "v"})  # tl.dot operands: stored in the inputs' half dtype


@dataclass(frozen=True, slots=True)
class Operand:
    """One canonical argument of one call: an input passed as it is, or a buffer the prologue writes."""

    state: str
    name: str
    source: str  # "input" (the input `input` as it is, through the token kernels) | "direct" (straight to the
    # family: no formula reads it) | "buffer"
    input: str  # the input's name (source "input"), else ""
    key: str  # the buffer's name (source "buffer"), else ""
    dims: tuple[str, ...]  # the buffer's trailing dims in the family's layout ("1": a vector state's ones)
    low: bool  # a dot operand: the inputs' half dtype (else fp32, or an input's own dtype)


@dataclass(frozen=True, slots=True)
class TokenKernel:
    name: str
    args: tuple[str, ...]  # pointer and scalar arguments, in order (then T, H, the dims, the block sizes)
    param_loads: str
    prologue: str  # token-free values (params, consts, options)
    loads: str  # per token
    body: str
    stores: str
    dparam_init: str = ""
    dparam_acc: str = ""
    dparam_store: str = ""


@dataclass(frozen=True, slots=True)
class TokenPlan:
    dims: tuple[str, ...]  # the dims the kernels need (runtime sizes and block sizes)
    inputs: tuple[str, ...]  # inputs the kernels read
    params: tuple[str, ...]
    options: tuple[str, ...]
    running: tuple[str, ...]  # running maxes the kernels read as (m_(t-1), m_t)
    operands: tuple[Operand, ...]  # per call and canonical argument, in the calls' order
    buffers: tuple[tuple[str, tuple[str, ...], bool], ...]  # (key, dims, low) of what the prologue writes
    outputs: tuple[str, ...]  # outputs the epilogue computes (the rest the families finish)
    reads: tuple[str, ...]  # states whose read-outs the epilogue takes
    steps: int  # sub-steps per token of every call (interleaved rows)
    prologue: TokenKernel | None
    epilogue: TokenKernel | None  # None when the families finish every output
    dreads: TokenKernel | None
    leaves: TokenKernel | None  # None when no leaf gets a gradient (operands of consts only)
    input_grads: tuple[str, ...]
    param_grads: tuple[str, ...]
    running_grads: tuple[str, ...]  # running maxes whose (m_(t-1), m_t) get a gradient


def _scalar(tile: str) -> str:
    """A value to store: it takes `.to(...)`, so a literal becomes a tensor and an expression gets parentheses."""
    try:
        float(tile)
    except ValueError:
        return f"({tile})" if " " in tile else tile
    return f"tl.full([], {tile}, tl.float32)"


def cot(name: str, ty: ir.Type) -> Var:
    return Var(f"∂{name}", Kind.INPUT, ty)


def _prev_running(e: Expr, running: set[str]) -> Expr:
    """In an update's operands a running max `m` means m_(t-1): written `prev(m)`, as the outputs read it."""
    def fn(n: Expr) -> Expr | None:
        if isinstance(n, Var) and n.kind is Kind.STATE and n.name in running:
            return replace(n, kind=Kind.PREV_STATE)
        return None
    return ir.rebuild(e, fn)


def _layout(call: CoreCall, name: str) -> tuple[str, ...]:
    """The dims of one token's operand in the family's layout (scan families never come here)."""
    key = call.dims[0]
    if name == "g":
        return () if dict(call.flags).get("decay") == "scalar" else (key,)
    if name == "beta":
        return ()
    if name == "v":
        return ("1",) if call.vector else (call.dims[-1],)
    return (key,)


def _as_is(e: Expr | None, dims: tuple[str, ...], steps: int) -> str | None:
    if steps == 1 and isinstance(e, Var) and e.kind is Kind.INPUT and e.ty.dims == dims:
        return e.name
    return None


def fusable(plan: ChunkPlan, fold: dict[str, tuple[int, Expr]], arg_names: dict[str, tuple[str, ...]]) -> bool:
    """The token kernels serve every family but the scan's (it forms its a_t, b_t itself); a spec needs them when
    an operand is not an input as it is or an output is not finished by the families. `fold`: the outputs the
    families finish (chunk_render.folded); `arg_names`: each family's operand names (chunk_render.ARG_NAMES)."""
    if not plan.chunkable or any(c.family == "scan" or c.stage for c in plan.calls):
        return False  # a staged query (GSA's softmax between two passes) is formed in torch between the calls
    if any(c.steps != 1 for c in plan.calls):  # sub-steps: the operands and read-outs are interleaved rows
        return False
    if len(fold) < len(plan.outputs):
        return True
    for c in plan.calls:
        for n in arg_names[c.family]:
            e = dict(c.args)[n]
            if e is None and not (n == "v" and c.family == "matmul"):
                continue
            if _as_is(e, _layout(c, n), c.steps) is None:
                return True
    return False


def plan_tokens(plan: ChunkPlan, prefix: str, fold: dict[str, tuple[int, Expr]],
                arg_names: dict[str, tuple[str, ...]]) -> TokenPlan:
    """The token kernels of `plan` (`fold`, `arg_names`: as for `fusable`)."""
    spec = plan.spec
    running = {r.state for r in plan.running}
    steps = plan.calls[0].steps
    folded_outputs = {i for i, _ in fold.values()}

    # operands: per call and argument, an input as it is or a buffer (one per distinct formula and layout)
    operands: list[Operand] = []
    buffers: dict[tuple[tuple[Expr, ...], tuple[str, ...], bool], str] = {}
    formulas: dict[str, tuple[Expr, ...]] = {}  # buffer key -> per sub-step value
    roots_fwd: list[tuple[Operand, tuple[Expr, ...]]] = []
    # an input passed as it is to one family and read by no formula skips the token kernels
    uses: dict[str, int] = {}
    for c in plan.calls:
        for n in arg_names[c.family]:
            e = dict(c.args)[n]
            name = _as_is(e, _layout(c, n), steps)
            for node in ir.walk(e) if e is not None else ():
                if isinstance(node, Var) and node.kind is Kind.INPUT:
                    uses[node.name] = uses.get(node.name, 0) + (1 if name is not None else 2)
    for i, (_, e) in enumerate(plan.outputs):
        if i not in folded_outputs:
            for node in ir.walk(e):
                if isinstance(node, Var) and node.kind is Kind.INPUT:
                    uses[node.name] = uses.get(node.name, 0) + 2
    direct = {n: k == 1 for n, k in uses.items()}
    for c in plan.calls:
        loop = spec.updates[[u.state for u in spec.updates].index(c.state)].loop
        for n in arg_names[c.family]:
            e = dict(c.args)[n]
            if e is None and not (n == "v" and c.family == "matmul"):
                continue
            dims = _layout(c, n)
            low = n in _DOT_OPERANDS
            name = _as_is(e, dims, steps)
            if name is not None and direct.get(name):  # its family's gradient is the input's whole gradient
                operands.append(Operand(c.state, n, "direct", name, "", dims, low))
                continue
            if name is not None:
                operands.append(Operand(c.state, n, "input", name, "", dims, low))
                roots_fwd.append((operands[-1], (e,)))
                continue
            vals = []
            for j in range(steps):
                if e is None:
                    vals.append(Const(1.0))  # a vector state's "values" are ones
                elif n == "q" and j < steps - 1:
                    vals.append(Const(0.0))  # no output after the inner sub-steps
                else:
                    vals.append(_prev_running(unroll(e, loop, j), running))
            key_of = (tuple(vals), dims, low)
            key = buffers.setdefault(key_of, f"a{len(buffers)}")
            formulas[key] = tuple(vals)
            operands.append(Operand(c.state, n, "buffer", "", key, dims, low))
            roots_fwd.append((operands[-1], tuple(vals)))

    outputs = [(o, e) for i, ((_, e), o) in enumerate(zip(plan.outputs, spec.outputs, strict=True))
               if i not in folded_outputs]
    reads = {c.read: c.state for c in plan.calls}
    used_reads = tuple(c.state for c in plan.calls
                       if any(n == c.read for _, e in outputs for n in ir.walk(e)))

    # every leaf the formulas read
    all_exprs = [v for vals in formulas.values() for v in vals] + [e for _, e in outputs] + \
        [e for _, vals in roots_fwd for e in vals]
    nodes = [n for e in all_exprs for n in ir.walk(e)]
    inputs = tuple(dict.fromkeys(n.name for n in nodes if isinstance(n, Var) and n.kind is Kind.INPUT
                                 and n not in reads))
    inputs += tuple(dict.fromkeys(n.args[0].name for n in nodes if isinstance(n, Apply) and n.op is Op.INDEX
                                  and isinstance(n.args[0], Var) and n.args[0].name not in inputs))
    params = tuple(p.name for p in spec.params if any(isinstance(n, Var) and n.kind is Kind.PARAM
                                                      and n.name == p.name for n in nodes))
    options = tuple(o.name for o in spec.options)
    run = tuple(r for r in dict.fromkeys(n.name for n in nodes if isinstance(n, Var)
                                         and n.kind in (Kind.STATE, Kind.PREV_STATE)) if r in running)

    dims = list(dict.fromkeys(d for t in (*spec.inputs, *spec.params, *spec.outputs) for d in t.ty.dims))
    dims += [d for op in operands for d in op.dims if d != "1" and d not in dims]
    dims += [d for c in plan.calls for d in c.dims if d not in dims]
    dims_t = tuple(dims)

    # leaves: loaded tiles
    leaves: dict[Expr, Val] = {}
    param_loads: list[str] = []
    for p in spec.params:
        if p.name in params:
            leaves[Var(p.name, Kind.PARAM, p.ty)] = f"b_{p.name}"
            param_loads.append(f"b_{p.name} = {_load(f'p_{p.name}', 'i_h', p.ty.dims, False)[0]}")
    for o in spec.options:
        leaves[Var(o.name, Kind.OPTION, ir.SCALAR)] = f"opt_{o.name}"
    taken = kernel_names(spec)  # no temporary may take an input's tile name (`b_t0` for input `t0`)
    cp = TritonPrinter(dict(leaves), lambda e: False, prefix="b_c", reserved=taken)
    const_lines = [f"c_{c.name} = {cp.real(c.value)}" for c in spec.consts]
    param_loads += cp.prologue + const_lines
    for c in spec.consts:
        leaves[Var(c.name, Kind.CONST, ir.SCALAR)] = f"c_{c.name}"

    loads: list[str] = []
    for i in spec.inputs:
        if i.name not in inputs:
            continue
        leaves[Var(i.name, Kind.INPUT, i.ty)] = f"b_{i.name}"
        loads.append(f"b_{i.name} = {_load(f'x_{i.name}', 'i_tok', i.ty.dims, False)[0]}")
        for j in range(steps) if i.ty.dims else ():  # the loop slices `k[j]` the formulas read
            sub = i.ty.dims[1:]
            node = Apply(Op.INDEX, (Var(i.name, Kind.INPUT, i.ty), Const(float(j))), ir.Type(sub), str(j))
            if node in nodes:
                leaves[node] = f"b_{i.name}_{j}"
                load = _load(f"x_{i.name}", "i_tok", sub, False, f"{j} * {numel(sub)}", i.ty.dims)[0]
                loads.append(f"b_{i.name}_{j} = {load}")
    for m in run:
        ty = spec.tensor(m).ty
        leaves[Var(m, Kind.STATE, ty)] = f"b_rm_{m}"
        leaves[Var(m, Kind.PREV_STATE, ty)] = f"b_rmp_{m}"
        loads.append(f"b_rm_{m} = {_load(f'rm_{m}', 'i_tok', ty.dims, False)[0]}")
        loads.append(f"b_rmp_{m} = {_load(f'rmp_{m}', 'i_tok', ty.dims, False)[0]}")
    for read, state in reads.items():
        if state in used_reads:
            leaves[read] = f"b_rd_{state}"
            loads.append(f"b_rd_{state} = {_load(f'rd_{state}', 'i_tok', read.ty.dims, False)[0]}")

    def varying(e: Expr) -> bool:
        return bool(ir.uses(e, {Kind.INPUT, Kind.STATE, Kind.PREV_STATE}))

    leaf_args = [*(f"x_{n}" for n in inputs), *(f"p_{n}" for n in params), *(f"rm_{m}" for m in run),
                 *(f"rmp_{m}" for m in run)]
    opt_args = [f"opt_{o}" for o in options]

    def kernel(name: str, extra: list[str], pr: TritonPrinter, stores: list[str], extra_loads: list[str],
               **kw: str) -> TokenKernel:
        code = [*pr.body, *stores, kw.get("dparam_acc", "")]
        return TokenKernel(f"_{prefix}_{name}_kernel", (*leaf_args, *extra, *opt_args), "\n".join(param_loads),
                           "\n".join(pr.prologue), _used_loads([*loads, *extra_loads], code), "\n".join(pr.body),
                           "\n".join(stores), **kw)

    def row(j: int) -> str:
        return "i_tok" if steps == 1 else f"((i_row * {steps} + {j}) * H + i_h)"

    # prologue
    prologue = None
    if formulas:
        pp = TritonPrinter(dict(leaves), varying, prefix="b_t", reserved=taken)
        stores = []
        for (vals, dims, _), key in buffers.items():
            sdims = tuple(d for d in dims if d != "1")
            for j, v in enumerate(vals):
                tile = _tile_of(pp.value(v), sdims, False, v.ty.dims if not isinstance(v, Const) else ())[0]
                stores += _store(f"a_{key}", row(j), sdims, (_scalar(tile),))
        prologue = kernel("prologue", [f"a_{k}" for k in formulas], pp, stores, [])

    # epilogue
    ep = TritonPrinter(dict(leaves), varying, prefix="b_t", reserved=taken)
    stores = []
    for o, e in outputs:
        tile = _tile_of(ep.value(e), o.ty.dims, False, e.ty.dims)[0]
        stores += _store(f"y_{o.name}", "i_tok", o.ty.dims, (_scalar(tile),))
    rd_args = [f"rd_{s}" for s in used_reads]
    epilogue = kernel("epilogue", [*rd_args, *(f"y_{o.name}" for o, _ in outputs)], ep, stores, [])

    # cotangents of the outputs
    dy_loads = []
    bleaves = dict(leaves)
    out_roots: list[tuple[Expr, Expr]] = []
    for o, e in outputs:
        v = cot(o.name, o.ty)
        bleaves[v] = f"b_dy_{o.name}"
        dy_loads.append(f"b_dy_{o.name} = {_load(f'dy_{o.name}', 'i_tok', o.ty.dims, False)[0]}")
        out_roots.append((e, v))

    def is_cot(e: Expr) -> bool:
        return any(isinstance(n, Var) and n.name.startswith("∂") for n in ir.walk(e))

    # dreads: the read-outs' cotangents
    dp = TritonPrinter(dict(bleaves), lambda e: varying(e) or is_cot(e), prefix="b_g", reserved=taken)
    grads = autodiff.vjp(out_roots)
    stores = []
    for c in plan.calls:
        if c.state in used_reads:
            g = grads.get(c.read)
            tile = _tile_of(dp.value(g), c.read.ty.dims, False, g.ty.dims)[0] if g is not None else \
                f"tl.zeros({tile_shape(c.read.ty.dims)}, dtype=tl.float32)" if c.read.ty.dims else "0.0"
            stores += _store(f"drd_{c.state}", "i_tok", c.read.ty.dims, (_scalar(tile),))
    dreads = kernel("dreads", [*rd_args, *(f"dy_{o.name}" for o, _ in outputs),
                               *(f"drd_{s}" for s in used_reads)], dp, stores, dy_loads)

    # leaves: the operands' cotangents through the prologue plus the outputs' through the epilogue
    da_loads = []
    roots = list(out_roots)
    for k, (op, vals) in enumerate(roots_fwd):  # the operands through the token kernels, in order
        sdims = tuple(d for d in op.dims if d != "1")
        for j, v in enumerate(vals):
            if isinstance(v, Const):
                continue
            dims_v = sdims if op.source == "buffer" else v.ty.dims  # a broadcast operand's cotangent sums back
            cv = cot(f"da{k}_{j}", ir.Type(dims_v))
            bleaves[cv] = f"b_da{k}_{j}"
            da_loads.append(f"b_da{k}_{j} = {_load(f'da_{k}', row(j), dims_v, False)[0]}")
            roots.append((v, cv))
    lp = TritonPrinter(dict(bleaves), lambda e: varying(e) or is_cot(e), prefix="b_g", reserved=taken)
    grads = autodiff.vjp(roots)
    stores, acc, dinit, dstore = [], [], [], []
    in_grads, p_grads, r_grads = [], [], []
    for i in spec.inputs:
        if i.name not in inputs:
            continue
        whole = grads.get(Var(i.name, Kind.INPUT, i.ty))
        parts = [(leaf, g) for leaf, g in grads.items() if isinstance(leaf, Apply) and leaf.op is Op.INDEX
                 and leaf.args[0].name == i.name]
        if whole is None and not parts:
            continue
        total: Val | None = None
        if whole is not None:
            total = _tile_of(lp.value(whole), i.ty.dims, False, whole.ty.dims)[0]
        for leaf, g in parts:
            emb = lp.value(Apply(Op.EMBED, (g,), i.ty, leaf.attr))
            total = emb if total is None else f"{total} + {emb}"
        tile = _tile_of(total, i.ty.dims, False, i.ty.dims)[0]
        stores += _store(f"dx_{i.name}", "i_tok", i.ty.dims, (_scalar(tile),))
        in_grads.append(i.name)
    for p in spec.params:
        g = grads.get(Var(p.name, Kind.PARAM, p.ty))
        if p.name not in params or g is None:
            continue
        dinit.append(f"b_dp_{p.name} = tl.zeros({tile_shape(p.ty.dims)}, dtype=tl.float32)"
                     if p.ty.dims else f"b_dp_{p.name} = 0.0")
        acc.append(f"b_dp_{p.name} += {_tile_of(lp.value(g), p.ty.dims, False, g.ty.dims)[0]}")
        dstore += _store(f"dp_{p.name}", "((i_b * NC + i_c) * H + i_h)", p.ty.dims, (f"b_dp_{p.name}",))
        p_grads.append(p.name)
    for m in run:
        ty = spec.tensor(m).ty
        for kind, ptr in ((Kind.STATE, f"drm_{m}"), (Kind.PREV_STATE, f"drmp_{m}")):
            g = grads.get(Var(m, kind, ty))
            tile = _tile_of(lp.value(g), ty.dims, False, g.ty.dims)[0] if g is not None else \
                (f"tl.zeros({tile_shape(ty.dims)}, dtype=tl.float32)" if ty.dims else "0.0")
            stores += _store(ptr, "i_tok", ty.dims, (_scalar(tile),))
        r_grads.append(m)
    extra = [*rd_args, *(f"dy_{o.name}" for o, _ in outputs), *(f"da_{k}" for k in range(len(roots_fwd))),
             *(f"dx_{n}" for n in in_grads), *(f"dp_{n}" for n in p_grads), *(f"drm_{m}" for m in r_grads),
             *(f"drmp_{m}" for m in r_grads)]
    leaves_k = kernel("leaves", extra, lp, stores, [*dy_loads, *da_loads], dparam_init="\n".join(dinit),
                      dparam_acc="\n".join(acc), dparam_store="\n".join(dstore))
    return TokenPlan(dims_t, inputs, params, options, run, tuple(operands),
                     tuple((k, d, lo) for (_, d, lo), k in buffers.items()), tuple(o.name for o, _ in outputs),
                     used_reads, steps, prologue, epilogue if outputs else None, dreads if outputs else None,
                     leaves_k if in_grads or p_grads or r_grads else None, tuple(in_grads), tuple(p_grads),
                     tuple(r_grads))
