"""chunk_render: ChunkPlan -> the chunk-mode section of a generated module.

The kernel families come rendered from templates/chunk/ (chunk_core); this module prints the two
spec-specific functions around them with the torch printer, vectorised over [B, T, H]:
`_chunk_prepare` (one token's formulas for the canonical q, k, v, g, β or a, b, c) and
`_chunk_readout` (the outputs from what the kernels return). Both are plain torch, so autograd
gives the gradients of everything the kernels do not compute (gates, skips, normalisers, params).
An output that is a state's read times a scalar the same for every token (`scale * (q @ S)`) is finished
in the kernels' epilogue instead (`_chunk_scales`): scaled and stored in the input dtype, no torch pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .. import ir
from ..analysis.result import Analysis
from ..ir import Apply, Expr, Kind, Op, Var
from .chunk_core import render_common, render_core
from .chunk_plan import CHUNK_SIZE, ChunkPlan, CoreCall, ShiftCall, prev_read
from .chunk_token import TOKEN_BLOCK, TokenPlan, fusable, plan_tokens
from .step import unroll
from .templating import environment
from .torch_printer import TorchPrinter

ARG_NAMES = {"matmul": ("q", "k", "v", "g"), "wy": ("q", "k", "v", "beta", "g"), "scan": ("a", "b", "c"),
             "dplr": ("q", "k", "v", "u", "w", "g")}
_DOT_OPERANDS = frozenset({"q", "k", "v"})  # tl.dot operands: bf16/fp16 on a GPU when the inputs are
_NATIVE = frozenset({"matmul", "wy", "dplr"})  # families whose kernels take g, beta (dplr: u, w) in any float dtype
_EPILOGUE = frozenset({"matmul", "wy", "dplr"})  # families whose o epilogue applies a scale and the output dtype
AUTO_MIN_T = {"matmul": 256, "wy": 256, "dplr": 256}  # scan families: the fused recurrent kernel is already a scan


@dataclass(frozen=True, slots=True)
class CallView:
    state: str
    family: str
    prefix: str
    arg_names: tuple[str, ...]
    transposed: bool
    vector: bool
    steps: int
    readout: str  # scan: "contract" or "state"; "" for the other families
    dims: tuple[str, ...]  # the family's state dims ([K, V], [P, Q]; one dim for a vector state)
    flags: tuple[tuple[str, object], ...]  # the family's template flags (also the torch families' keywords)
    epilogue: bool  # the kernels finish this state's output (its readout's scale and the output dtype)
    stage: int = 0  # its query reads the read-outs of earlier stages' calls

    @property
    def flag_dict(self) -> dict[str, object]:
        return dict(self.flags)


@dataclass(frozen=True, slots=True)
class ChunkSection:
    chunkable: bool
    reason: str | None
    form_lines: tuple[str, ...]
    cores: tuple[str, ...]
    calls: tuple[CallView, ...]
    prepare: str
    readout: str
    auto_min_t: int | None
    chunk_size: int
    running: str  # `_chunk_running`: the running maxes' sequences ({} when the spec has none)
    has_running: bool = False  # emit the running-max helper
    has_prev: bool = False  # emit `_chunk_prev`: a readout reads `prev(S)` of a scan-family state
    has_shift: bool = False  # emit `_chunk_shift`: a memoryless state's sequence shifted by one token
    scales: str = ""  # `_chunk_scales`: per state finished in the kernels' epilogue, its readout's scale
    token: TokenPlan | None = None  # the token kernels (chunk_token), when the spec has formulas around the families
    token_kernels: tuple[str, ...] = ()
    token_block: int = TOKEN_BLOCK
    token_leaves: tuple[tuple[str, str], ...] = ()  # (kind, name) in the kernels' order
    token_operands: tuple[tuple[object, ...], ...] = ()  # the operands through the token kernels
    token_direct: tuple[tuple[str, str, str, bool], ...] = ()  # (state, argument, input, dot operand): as they are
    token_outputs: tuple[tuple[int, str, tuple[str, ...]], ...] = ()  # (index, output, dims) of the epilogue's
    token_folded: tuple[tuple[int, str], ...] = ()  # (output index, state) of the outputs the families finish
    token_grads: tuple[tuple[str, str], ...] = ()
    token_kernel_names: tuple[str, ...] = ()
    kernels: bool = True  # the Triton families are rendered (False: a blocked-scan forward replaces them)


def _printer(spec: ir.Spec) -> tuple[TorchPrinter, list[str]]:
    """A torch printer over the spec's leaves as [B, T, H, ...] tensors, and the lines that bind them."""
    leaves: dict[Expr, str] = {}
    lines = ["_device = values[INPUTS[0][0]].device",
             "_dtype = torch.float32"]
    for i in spec.inputs:
        leaves[Var(i.name, Kind.INPUT, i.ty)] = f"x_{i.name}"
        lines.append(f"x_{i.name} = values[{i.name!r}].to(_dtype)")
    for p in spec.params:
        leaves[Var(p.name, Kind.PARAM, p.ty)] = f"p_{p.name}"
        lines.append(f"p_{p.name} = values[{p.name!r}].to(_dtype)[None, None]")
    for o in spec.options:
        leaves[Var(o.name, Kind.OPTION, ir.SCALAR)] = f"opt_{o.name}"
        lines.append(f"opt_{o.name} = opts[{o.name!r}]")
    for c in spec.consts:
        leaves[Var(c.name, Kind.CONST, ir.SCALAR)] = f"c_{c.name}"
    pr = TorchPrinter(leaves, frozenset(f"opt_{o.name}" for o in spec.options))
    if any(isinstance(n, Var) and n.kind is Kind.HEAD for c in spec.consts for n in ir.walk(c.value)):
        lines.append("_heads = torch.arange(H, dtype=_dtype, device=_device)[None, None, :]")
    const_lines = [f"c_{c.name} = {pr.value(c.value)}" for c in spec.consts]
    lines += pr.lines + const_lines
    pr.lines.clear()
    return pr, lines


def _used(bindings: list[str], body: list[str]) -> list[str]:
    """The leaf bindings (`x_q = ...`) that the body or a later kept binding reads (`rp_S` reads `r_S`): no copy of
    an argument nothing uses."""
    text = "\n".join(body)
    out = []
    for line in reversed(bindings):
        name = line.split(" = ", 1)[0]
        leaf = name.startswith(("x_", "p_", "opt_", "m_", "mp_", "rp_", "r_"))
        if not leaf or re.search(rf"\b{re.escape(name)}\b", text):
            out.append(line)
            text += "\n" + line
    return out[::-1]


def _shape(dims: tuple[str, ...]) -> str:
    return "(B, T, H" + "".join(f", sz[{d!r}]" for d in dims) + ")"


def _arg(pr: TorchPrinter, call: CoreCall, name: str, e: Expr, target: tuple[str, ...]) -> str:
    """One token's value of canonical argument `name`, aligned to `target` dims and the family's layout."""
    as_is = isinstance(e, Var) and e.kind is Kind.INPUT and e.ty.dims == target
    if as_is and not (call.transposed and len(target) == 2):
        return f"values[{e.name!r}]"  # an input as it is: no fp32 round trip for the kernels' bf16 operands
    code = pr.align(pr.value(e), e.ty.dims, target)
    if call.transposed and len(target) == 2 and not pr._is_number(code):  # a number broadcasts either way
        code = f"{code}.transpose(-1, -2)"
    return code


def _targets(call: CoreCall, t_dims: tuple[str, ...]) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Per argument: (dims in the spec's order to align to, dims of the family's layout for the shape)."""
    key = call.dims[0]
    if call.family == "scan":
        state = (t_dims, call.dims)
        return {"a": state, "b": state, "c": ((call.dims[-1],), (call.dims[-1],))}
    value = call.dims[-1] if not call.vector else None
    out = {"q": ((key,), (key,)), "k": ((key,), (key,)), "u": ((key,), (key,)), "w": ((key,), (key,)),
           "v": (((value,), (value,)) if value else ((), ())), "beta": ((), ())}
    out["g"] = ((), ()) if dict(call.flags).get("decay") == "scalar" else ((key,), (key,))
    return out


def _bind_running(pr: TorchPrinter, lines: list[str], plan: ChunkPlan, output: bool) -> None:
    """Running maxes as [B, T, H, ...] leaves: `m` is m_(t-1) in an update (a kernel argument) and m_t in an
    output, `prev(m)` is m_(t-1) (running[m] holds both)."""
    for r in plan.running:
        ty = plan.spec.tensor(r.state).ty
        leaves = {Var(r.state, Kind.STATE, ty): f"m_{r.state}" if output else f"mp_{r.state}"}
        if output:
            leaves[Var(r.state, Kind.PREV_STATE, ty)] = f"mp_{r.state}"
            lines.append(f"m_{r.state} = running[{r.state!r}][1]")
        lines.append(f"mp_{r.state} = running[{r.state!r}][0]")
        pr.leaves = {**pr.leaves, **leaves}


def _running(plan: ChunkPlan) -> str:
    pr, lines = _printer(plan.spec)
    entries: list[str] = []
    index = {st.name: i for i, st in enumerate(plan.spec.states)}  # h0 holds every state, in the spec's order
    for r in plan.running:
        i = index[r.state]
        shape = _shape(r.dims)
        h0 = f"None if h0 is None else h0[{i}]"
        if isinstance(r, ShiftCall):  # memoryless: its formula for every token, and shifted by one
            dtype = "torch.complex64" if plan.spec.tensor(r.state).ty.complex else "torch.float32"
            entries += [f"running[{r.state!r}] = _chunk_shift(_chunk_full({pr.value(r.value)}, {shape}, {dtype}, "
                        f"_device), {h0}, cu_seqlens)"]
            continue
        shift = "0.0" if r.shift is None else pr.value(r.shift)
        entries += [f"_a = _chunk_full({shift}, {shape}, _wide, _device)",
                    f"_b = _chunk_full({pr.value(r.floor)}, {shape}, _wide, _device)",
                    f"running[{r.state!r}] = _chunk_running_max(_a, _b, {h0}, cu_seqlens, backend)"]
    # the torch backend's closed form sums in float64; the Triton kernels scan fp32 maps (no long sums)
    wide = ['_wide = torch.float64 if backend == "torch" else torch.float32']
    tail = [*pr.lines, *wide, "running = {}", *entries, "return running"] if entries else ["return {}"]
    body = [
        "def _chunk_running(values, opts, sz, B, T, H, h0, cu_seqlens, backend):",
        '    """Per running max or memoryless state: (m_(t-1), m_t) for every token and its final value."""',
        *(f"    {ln}" for ln in (_used(lines, tail) if plan.running else []) + tail),
    ]
    return "\n".join(body)


def _prepare(plan: ChunkPlan, a: Analysis) -> str:
    """`_chunk_prepare` (the calls of stage 0) and, when a query reads earlier calls' read-outs, one function per
    later stage (`_chunk_prepare_1`, ... which also take `reads`); `_CHUNK_PREPARE` lists them by stage."""
    stages = range(1 + max(c.stage for c in plan.calls))
    fns = [_prepare_stage(plan, a, k) for k in stages]
    names = [f"_chunk_prepare_{k}" if k else "_chunk_prepare" for k in stages]
    table = f"({', '.join(names)}{',' if len(names) == 1 else ''})"
    return "\n\n\n".join([*fns, f"_CHUNK_PREPARE = {table}  # per stage: its calls' canonical arguments"])


def _prepare_stage(plan: ChunkPlan, a: Analysis, stage: int) -> str:
    spec = plan.spec
    pr, lines = _printer(spec)
    _bind_running(pr, lines, plan, output=False)
    for call in plan.calls:
        if call.stage < stage:  # an earlier call's read-out, which this stage's queries read
            pr.leaves = {**pr.leaves, call.read: f"r_{call.state}"}
            lines.append(f"r_{call.state} = reads[{call.state!r}].to(_dtype)")
    entries: list[str] = []
    for call in (c for c in plan.calls if c.stage == stage):
        t = a.state(call.state).transition
        targets = _targets(call, t.linear.ty.dims)
        loop = t.loop
        parts: list[str] = []
        for name in ARG_NAMES[call.family]:
            e = dict(call.args)[name]
            if e is None and not (name == "v" and call.family == "matmul"):
                parts.append(f"{name!r}: None")
                continue
            align, layout = targets[name]
            if call.vector and call.family == "scan" and name in ("a", "b"):
                layout = (*layout, "1")
            shape = _shape(layout).replace("sz['1']", "1")
            cplx = call.family == "scan" and bool(dict(call.flags)["complex"])
            dtype = "_low" if name in _DOT_OPERANDS and call.family != "scan" else \
                ("torch.complex64" if cplx else "torch.float32")
            values = []
            for j in range(call.steps):
                if e is None:  # a vector state: its "values" are ones
                    values.append(f"torch.ones({_shape(())[:-1]}, 1), dtype={dtype}, device=_device)")
                    continue
                if name == "q" and j < call.steps - 1:  # no output after the inner sub-steps
                    values.append(f"torch.zeros({shape}, dtype={dtype}, device=_device)")
                    continue
                code = _arg(pr, call, name, unroll(e, loop, j), align)
                native = code.startswith("values[") and call.family in _NATIVE and name not in _DOT_OPERANDS
                if call.vector and call.family == "scan" and name in ("a", "b") and not pr._is_number(code):
                    code = f"{code}[..., None]"
                if cplx:
                    code = f"torch.as_tensor({code}, dtype=torch.complex64, device=_device)"
                # an input as it is (native): the kernels load it in its own dtype
                values.append(f"_chunk_full({code}, {shape}, {'None' if native else dtype}, _device)")
            parts.append(f"{name!r}: [{', '.join(values)}]")
        entries.append(f"{call.state!r}: {{{', '.join(parts)}}}")
    tail = ["x0 = values[INPUTS[0][0]]",
            "_low = x0.dtype if x0.dtype in (torch.bfloat16, torch.float16) else torch.float32  # tl.dot operands",
            *pr.lines, "return {", *(f"    {e}," for e in entries), "}"]
    body = [
        f"def _chunk_prepare{f'_{stage}' if stage else ''}(values, opts, sz, B, T, H, running"
        f"{', reads' if stage else ''}):",
        '    """The chunk kernels\' canonical arguments, per state: the spec\'s formulas on [B, T, H, ...] tensors."""'
        if not stage else f'    """Stage {stage}: the arguments of the calls whose queries read the read-outs."""',
        *(f"    {ln}" for ln in _used(lines, tail) + tail),
    ]
    return "\n".join(body)


def _token_free(spec: ir.Spec, c: Expr) -> bool:
    """`c` is a scalar the same for every token and head: numbers, options, dims, consts of those."""
    consts = {k.name: k.value for k in spec.consts}
    for n in ir.walk(c):
        if isinstance(n, Var) and not (n.kind in (Kind.OPTION, Kind.DIM) or
                                       (n.kind is Kind.CONST and _token_free(spec, consts[n.name]))):
            return False
    return c.ty == ir.SCALAR and not c.ty.complex


def folded(plan: ChunkPlan) -> dict[str, tuple[int, Expr]]:
    """Per state whose output the kernels finish: (the output's index, the readout's scale). The output must be
    the state's read alone or times a token-free scalar, the only output reading the state, of the read's dims."""
    out: dict[str, tuple[int, Expr]] = {}
    for call in plan.calls:
        if call.family not in _EPILOGUE or call.steps != 1 or call.vector:
            continue
        reads = {call.read, prev_read(call)}
        if any(n in reads for c in plan.calls for _, e in c.args if e is not None for n in ir.walk(e)):
            continue  # a later stage's query reads it as it is (unscaled, fp32)
        users = [(i, e) for i, (_, e) in enumerate(plan.outputs) if any(n in reads for n in ir.walk(e))]
        if len(users) != 1:
            continue
        i, e = users[0]
        scale: Expr | None = ir.Const(1.0) if e == call.read else None
        if isinstance(e, Apply) and e.op is Op.MUL and call.read in e.args:
            c = e.args[1] if e.args[0] == call.read else e.args[0]
            scale = c if _token_free(plan.spec, c) else None
        if scale is not None and plan.spec.outputs[i].ty == call.read.ty:
            out[call.state] = (i, scale)
    return out


def _scales(plan: ChunkPlan) -> str:
    pr, lines = _printer(plan.spec)
    entries = [f"{state!r}: {pr.value(c)}" for state, (_, c) in folded(plan).items()]
    tail = [*pr.lines, f"return {{{', '.join(entries)}}}"]
    body = [
        "def _chunk_scales(values, opts, sz, B, T, H):",
        '    """Per state whose output the kernels finish: its readout\'s scale, applied in their epilogue."""',
        *(f"    {ln}" for ln in _used(lines, tail) + tail),
    ]
    return "\n".join(body)


def _readout(plan: ChunkPlan) -> str:
    spec = plan.spec
    fold = {i: state for state, (i, _) in folded(plan).items()}
    pr, lines = _printer(spec)
    _bind_running(pr, lines, plan, output=True)
    index = {st.name: i for i, st in enumerate(spec.states)}  # h0 holds every state, in the spec's order
    for call in plan.calls:
        pr.leaves = {**pr.leaves, call.read: f"r_{call.state}", prev_read(call): f"rp_{call.state}"}
        lines.append(f"r_{call.state} = reads[{call.state!r}]")
        lines.append(f"rp_{call.state} = _chunk_prev(r_{call.state}, None if h0 is None else "
                     f"h0[{index[call.state]}], cu_seqlens)")
    outs = []
    for i, ((_, e), o) in enumerate(zip(plan.outputs, spec.outputs, strict=True)):
        if i in fold:  # finished by the kernels: scaled, in the output's dtype
            outs.append(f"r_{fold[i]}")
            continue
        outs.append(f"_chunk_full({pr.value(e)}, {_shape(o.ty.dims)}, torch.float32, _device)")
    tail = [*pr.lines, f"return [{', '.join(outs)}]"]
    body = [
        "def _chunk_readout(values, opts, sz, B, T, H, reads, running, h0, cu_seqlens):",
        '    """The outputs from what the chunk kernels return (`reads`: per state, its read-out or its states)."""',
        *(f"    {ln}" for ln in _used(lines, tail) + tail),
    ]
    return "\n".join(body)


def core_prefix(plan: ChunkPlan, call: CoreCall) -> str:
    """Kernel and launcher names of one call: the spec and the family (`chunk_gla_matmul` ->
    `_chunk_gla_matmul_h_kernel`), so a profiler trace says what ran. Calls of one family with the same flags
    share one core (mLSTM's C and n); the state's name only tells apart two flavours of one family."""
    same = [c for c in plan.calls if c.family == call.family]
    if all(c.flags == call.flags for c in same):
        return f"chunk_{plan.spec.name}_{call.family}"
    return f"chunk_{plan.spec.name}_{call.family}_" + next(c.state for c in same if c.flags == call.flags)


def render_chunk_section(plan: ChunkPlan, a: Analysis, form_lines: tuple[str, ...],
                         kernels: bool = True) -> ChunkSection:
    """`kernels`: render the Triton families; False when Triton runs the spec's blocked-scan forward instead
    (codegen/scan_block.py): the section then keeps only what the torch backend's chunk path uses."""
    if not plan.chunkable:
        return ChunkSection(False, plan.reason, form_lines, (), (), "", "", None, CHUNK_SIZE, "")
    prefixes = [core_prefix(plan, c) for c in plan.calls]
    first: dict[str, CoreCall] = {}  # one core per prefix
    for p, c in zip(prefixes, plan.calls, strict=True):
        first.setdefault(p, c)
    common = render_common({c.family for c in plan.calls}).strip("\n") if kernels else ""
    cores = (*((common,) if common else ()),
             *(render_core(c.family, p, **dict(c.flags)).strip("\n") for p, c in first.items() if kernels))
    fold = folded(plan)
    calls = tuple(CallView(c.state, c.family, p, ARG_NAMES[c.family], c.transposed, c.vector, c.steps,
                           str(dict(c.flags).get("readout", "")), c.dims, c.flags, c.state in fold, c.stage)
                  for c, p in zip(plan.calls, prefixes, strict=True))
    mins = [AUTO_MIN_T.get(c.family) for c in plan.calls]
    auto = None if any(m is None for m in mins) else max(m for m in mins if m is not None)
    prevs = {prev_read(c) for c in plan.calls}
    has_prev = any(n in prevs for _, e in plan.outputs for n in ir.walk(e))
    shift = any(isinstance(r, ShiftCall) for r in plan.running)
    section = ChunkSection(True, None, form_lines, cores, calls, _prepare(plan, a), _readout(plan), auto, CHUNK_SIZE,
                           _running(plan), any(not isinstance(r, ShiftCall) for r in plan.running), has_prev or shift,
                           shift, _scales(plan), kernels=kernels)
    return _with_tokens(section, plan, fold) if kernels and fusable(plan, fold, ARG_NAMES) else section


def _with_tokens(section: ChunkSection, plan: ChunkPlan, fold: dict[str, tuple[int, Expr]]) -> ChunkSection:
    """The section with the token kernels (chunk_token) and the tables their host code reads; `fold`: folded(plan)."""
    tk = plan_tokens(plan, f"chunk_{plan.spec.name}", fold, ARG_NAMES)
    macro = environment().get_template("chunk/_common.py.jinja").module.token_kernel
    kernels = tuple(str(macro(k, tk.dims)).strip("\n") for k in (tk.prologue, tk.epilogue, tk.dreads, tk.leaves)
                    if k is not None)  # the ones with work to do
    leaves = (*(("input", n) for n in tk.inputs), *(("param", n) for n in tk.params),
              *(("running", m) for m in tk.running), *(("running_prev", f"prev:{m}") for m in tk.running))
    grads = (*(("input", n) for n in tk.input_grads), *(("param", n) for n in tk.param_grads),
             *(("running", m) for m in tk.running_grads), *(("running_prev", f"prev:{m}") for m in tk.running_grads))
    outputs = tuple((i, o.name, o.ty.dims) for i, o in enumerate(plan.spec.outputs) if o.name in tk.outputs)
    operands = tuple((o.state, o.name, o.source, o.input, o.key, o.dims, o.low) for o in tk.operands
                     if o.source != "direct")
    direct = tuple((o.state, o.name, o.input, o.low) for o in tk.operands if o.source == "direct")
    return replace(section, token=tk, token_kernels=kernels, token_leaves=leaves, token_operands=operands,
                   token_direct=direct, token_outputs=outputs, token_folded=tuple((i, s) for s, (i, _) in fold.items()),
                   token_grads=grads,
                   token_kernel_names=tuple(k.name for k in (tk.prologue, tk.epilogue, tk.dreads, tk.leaves) if k))
