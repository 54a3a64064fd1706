"""render: ModulePlans -> the module's Python source (header, Triton kernels, chunk section, host code).

The host code every module shares is copied from recurgen/runtime/host/ (real modules, linted and tested).

Templates only lay out what this module hands them (`StrictUndefined` catches a missing name). The plans
come from `recurgen.pipeline`; the output goes to `tidy`, which prunes, folds and compiles it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import ir
from ..analysis.result import Analysis
from ..errors import InternalError
from ..ir import Apply, Const, Expr, Kind, Op, Var
from ..runtime.host import sections as host_sections
from ..signature import python_params, signature
from ..version import __version__
from .chunk_plan import ChunkPlan, describe
from .chunk_render import render_chunk_section
from .plan import BWD_STATE_TILE_BUDGET, STATE_TILE_BUDGET, SWEEP_TILE_BUDGET, RecurrentPlan
from .scan_block import plan_scan_block
from .step import build_step, state_var
from .sweeps import SWEEP_SEGMENT
from .templating import environment
from .torch_printer import TorchPrinter


@dataclass(frozen=True, slots=True)
class ModulePlans:
    """What `render_module` lays out: the plan stage's output for one checked, analysed spec."""

    spec: ir.Spec
    analysis: Analysis
    recurrent: RecurrentPlan
    chunk: ChunkPlan
    sha256: str  # of the spec text, quoted in the header
    path: str  # what the header calls the spec file


def camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_") if p)


# module-level names of the generated code that a CamelCase class name must not replace
_MODULE_GLOBALS = frozenset({"Optional", "INPUTS", "PARAMS", "STATES", "OUTPUTS", "OPTIONS"})


def _class_name(spec_name: str) -> str:
    name = camel(spec_name)
    return f"{name}Recurrence" if name in _MODULE_GLOBALS or (name.isupper() and len(name) == 1) else name


def _py_scalar(e: Expr) -> str:
    """Python source of a scalar option default (numbers, dims, arithmetic, math functions)."""
    if isinstance(e, Const):
        return repr(e.value)
    if isinstance(e, Var):
        if e.kind is Kind.DIM:
            return f"sz[{e.name!r}]"
        if e.kind is Kind.HEADS:
            return "H"
        raise InternalError("render", f"option default reads {e.kind.value} `{e.name}`")
    assert isinstance(e, Apply)
    a = [_py_scalar(x) for x in e.args]
    binary = {Op.ADD: "+", Op.SUB: "-", Op.MUL: "*", Op.DIV: "/", Op.POW: "**"}
    if e.op in binary:
        return f"({a[0]} {binary[e.op]} {a[1]})"
    funcs = {Op.EXP: "math.exp", Op.LOG: "math.log", Op.SQRT: "math.sqrt", Op.ABS: "abs", Op.SIN: "math.sin",
             Op.COS: "math.cos"}
    if e.op is Op.NEG:
        return f"(-{a[0]})"
    if e.op in funcs:
        return f"{funcs[e.op]}({a[0]})"
    if e.op in (Op.MAX, Op.MIN):
        return f"{e.op.value}({a[0]}, {a[1]})"
    raise InternalError("render", f"option default uses `{e.op.value}`")


def _torch_step(spec: ir.Spec) -> str:
    step = build_step(spec)
    leaves: dict[Expr, str] = {}
    for s in spec.states:
        leaves[state_var(s)] = f"s_{s.name}"
    for i in spec.inputs:
        leaves[Var(i.name, Kind.INPUT, i.ty)] = f"x_{i.name}"
    for p in spec.params:
        leaves[Var(p.name, Kind.PARAM, p.ty)] = f"p_{p.name}"
    for o in spec.options:
        leaves[Var(o.name, Kind.OPTION, ir.SCALAR)] = f"opt_{o.name}"
    for c in spec.consts:
        leaves[Var(c.name, Kind.CONST, ir.SCALAR)] = f"c_{c.name}"
    pr = TorchPrinter(leaves, frozenset(f"opt_{o.name}" for o in spec.options))
    const_lines = [f"c_{c.name} = {pr.value(c.value)}" for c in spec.consts]
    pre = list(pr.lines)
    pr.lines.clear()
    news = [pr.value(e) for _, e in step.new_states]
    outs = [pr.value(e) for _, e in step.outputs]
    body = [
        "def _torch_step(states, xs, ps, opts, sz, H, _dtype, _device):",
        f'    """One token of `{spec.name}` on [B, H, ...] tensors: (new states, outputs)."""',
        f"    {', '.join(f's_{s.name}' for s in spec.states)}, = states",
        *(f"    x_{i.name} = xs[{i.name!r}]" for i in spec.inputs),
        *(f"    p_{p.name} = ps[{p.name!r}]" for p in spec.params),
        *(f"    opt_{o.name} = opts[{o.name!r}]" for o in spec.options),
    ]
    if any(isinstance(n, Var) and n.kind is Kind.HEAD for c in spec.consts for n in ir.walk(c.value)):
        body.append("    _heads = torch.arange(H, dtype=_dtype, device=_device)[None, :]")
    body += [f"    {ln}" for ln in pre + const_lines + pr.lines]
    body.append(f"    return [{', '.join(news)}], [{', '.join(outs)}]")
    return "\n".join(body)


def _call_context(spec: ir.Spec) -> dict[str, object]:
    """The public call's parameters (recurgen.signature decides them: api line, defaults, layout)."""
    sig = signature(spec)
    public = {p.target: p.public for p in sig if p.kind in ("tensor", "option")}
    tensors = [(n, public[n]) for n in spec.arg_order]
    options = [(o.name, public[o.name]) for o in spec.options if not ir.is_hidden(o.name)]
    optional = any(t.default is not None for t in (*spec.inputs, *spec.params))
    step = [n if p.default is None else f"{n}=None" for n, p in ((p.public, p) for p in sig if p.kind == "tensor")]
    return {
        "signature": python_params(spec), "tensor_args": tensors, "option_args": options,
        "call_forward": [f"{p.public}={p.public}" for p in sig],
        "call_aliases": [(p.target, next(q.public for q in sig if q.target == p.target and q.kind == "call"))
                         for p in sig if p.kind == "alias"],
        "step_signature": [*step, "state=None" if optional else "state", *(f"{o}=None" for _, o in options)],
        "defaults": {t.name: t.default for t in (*spec.inputs, *spec.params) if t.default is not None},
        "has_heads": spec.heads, "switches": {n: (spec.api.public(n), v) for n, v in spec.switches},
        "presence": [(ir.presence_option(t.name), t.name) for t in (*spec.inputs, *spec.params)
                     if ir.presence_option(t.name) in {o.name for o in spec.options}],
    }


def _kernel_args(plan: RecurrentPlan) -> dict[str, list[tuple[str, str]]]:
    s = plan.spec
    ins = [(f"x_{i.name}", f"xs[{i.name!r}]") for i in plan.inputs]
    prs = [(f"p_{p.name}", f"ps[{p.name!r}]") for p in plan.params]
    opts = [(f"opt_{o}", f"opts[{o!r}]") for o in plan.options]
    heads = [(f"H_{t.name}", f"hs[{t.name!r}]") for t in (*plan.inputs, *plan.params)]
    sizes = [("cu_seqlens", "cu"), ("T", "T"), ("H", "H"), *heads, *((d, f"sz[{d!r}]") for d in plan.dims),
             ("NV", "NV")]
    blocks = [(f"B{d}", f"blocks[{d!r}]") for d in plan.dims]
    fwd = [*ins, *prs, *((f"y_{o.name}", f"ys[{o.name!r}]") for o in plan.outputs),
           *((f"h0_{x.name}", f"h0r[{x.name!r}]") for x in s.states),
           *((f"ht_{x.name}", f"htr[{x.name!r}]") for x in s.states),
           *((f"ck_{x.name}", f"ck[{x.name!r}]") for x in s.states), *opts, *sizes]
    fwd_consts = [*blocks, ("CKPT", "ckpt_every"), ("IS_VARLEN", "varlen"),
                  ("USE_INITIAL_STATE", "h0 is not None"),
                  ("STORE_FINAL_STATE", "output_final_state"), ("SAVE_CKPT", "save_ckpt")]
    bwd = [*ins, *prs, *((f"dy_{o.name}", f"dyr[{o.name!r}]") for o in plan.outputs),
           *((f"ck_{x.name}", f"ck[{x.name!r}]") for x in s.states),
           *((f"sc_{x.name}", f"sc[{x.name!r}]") for x in s.states),
           *((f"dht_{x.name}", f"dhtr[{x.name!r}]") for x in s.states),
           *((f"dx_{n}", f"dx[{n!r}]") for n in plan.input_grads),
           *((f"dp_{n}", f"dp[{n!r}]") for n in plan.param_grads),
           *((f"dh0_{x.name}", f"dh0r[{x.name!r}]") for x in s.states), *opts, *sizes,
           ("NB", "NB"), ("NBH", "NBH"), ("NTOK", "NTOK")]
    bwd_consts = [*blocks, ("CKPT", "ckpt_every"), ("BCKPT", "bckpt"), ("SEG_ON_CHIP", "seg_on_chip"),
                  ("IS_VARLEN", "varlen"),
                  ("USE_INITIAL_STATE", "h0"),
                  ("USE_FINAL_STATE_GRADIENT", "use_final")]
    if plan.sweeps is not None:  # two sweeps: restart from the initial state; a_t of the decay per token
        bwd = [*ins, *prs, *((f"dy_{o.name}", f"dyr[{o.name!r}]") for o in plan.outputs),
               *((f"h0_{x.name}", f"h0r[{x.name!r}]") for x in s.states),
               *((f"za_{n}", f"za[{n!r}]") for n, _ in plan.sweeps.scratch),
               *((f"st_{x.name}", f"st[{x.name!r}]") for x in s.states),
               *((f"zg_{n}", f"zg[{n!r}]") for n, _ in plan.sweeps.segments),
               *bwd[len(ins) + len(prs) + len(plan.outputs) + 2 * len(s.states):]]
        bwd_consts = [*(c for c in bwd_consts if c[0] not in ("BCKPT", "SEG_ON_CHIP")), ("EVEN_DIMS", "even")]
    return {"fwd_args": fwd, "fwd_consts": fwd_consts, "bwd_args": bwd, "bwd_consts": bwd_consts}


def _comment_safe(text: str) -> str:
    """Text that cannot end a `#` comment: every control or line-separator character escaped."""
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


def _header(plan: RecurrentPlan, sha: str, path: str) -> str:
    s = plan.spec
    path = _comment_safe(path)
    split = f"split along {plan.tiled}" if plan.tiled else "not split (every dim is mixed by the step)"
    lines = [
        f"# Generated by recurgen {__version__} from {path} (spec `{s.name}`, sha256 {sha[:16]}) -- DO NOT EDIT.",
        f"# Regenerate: recurgen compile {path} -o <dir>",
        "#",
        f"# {_comment_safe(s.description)}" if s.description else f"# {s.name}",
        "#",
        "# Recurrence (per batch element and head; in updates a state name is its value after t-1,",
        "# in outputs after t, prev(S) after t-1):",
        *(f"#   {ln}" for ln in plan.math_comment.splitlines()),
        "#",
        f"# Fused recurrent kernels: one program per (state tile, batch x head); the state is {split}.",
        "# Backward: the adjoint of the step, derived by reverse-mode differentiation of the spec,",
        "# walks time backwards from a stored state every CHECKPOINT_EVERY tokens (recomputing the rest).",
        "# Chunk mode (mode=\"chunk\"): see the section `chunk mode` below for the derived chunk form and the",
        "# kernel families (templates/chunk/) it runs.",
    ]
    return "\n".join(lines)


def render_module(plans: ModulePlans) -> str:
    """The module's source as the templates lay it out (before `tidy`)."""
    spec, plan, chunk_plan, analysis = plans.spec, plans.recurrent, plans.chunk, plans.analysis
    env = environment()
    args = _kernel_args(plan)
    prefix = spec.name
    names = {
        "fwd_name": f"{prefix}_fused_recurrent_fwd_kernel", "bwd_name": f"{prefix}_fused_recurrent_bwd_kernel",
        "sweep_name": f"{prefix}_fused_recurrent_sweep_kernel",
        "fwd_launcher": f"fused_recurrent_{prefix}_fwd", "bwd_launcher": f"fused_recurrent_{prefix}_bwd",
        "fused_fn": f"fused_recurrent_{prefix}",
        "cls": _class_name(prefix),
    }
    key = ["H", *plan.dims]  # retune when a size changes
    kernels = env.get_template("fused_recurrent.py.jinja").render(plan=plan, autotune_key=key, **names, **args)
    block = plan_scan_block(chunk_plan)  # chunk mode of an elementwise spec: a blocked-scan forward kernel
    scan_block_name = f"{prefix}_chunk_scan_fwd_kernel" if block is not None else ""
    if block is not None:
        kernels = kernels.rstrip("\n") + "\n\n\n" + env.get_template("chunk/scan.py.jinja").render(
            block=block, plan=plan, name=scan_block_name, autotune_key=key, **args)
    outputs_doc = ", ".join(f"{o.name} `[B, T, H{''.join(', ' + d for d in o.ty.dims)}]`" for o in spec.outputs)
    forms = tuple(f"{sa.state}: {ln}" for sa in analysis.states for ln in sa.chunk.lines)
    chunk = env.get_template("chunk_mode.py.jinja").render(
        chunk=render_chunk_section(chunk_plan, analysis, forms if chunk_plan.chunkable else (), block is None),
        generated=[_comment_safe(ln) for ln in describe(chunk_plan, block is not None)], host=host_sections())
    sha = plans.sha256
    return env.get_template("module.py.jinja").render(
        host=host_sections(), chunk_section=chunk.strip("\n"), chunk_fn=f"chunk_{prefix}",
        header=_header(plan, sha, plans.path), spec_name=spec.name, spec_sha256=sha, version=__version__,
        doc=_comment_safe((spec.description or spec.name).replace("\\", "\\\\").replace('"', '\\"')),
        kernels=kernels.rstrip("\n"),
        inputs=[(t.name, t.ty.dims, False) for t in spec.inputs],
        params=[(t.name, t.ty.dims, False) for t in spec.params],
        states=[(t.name, t.ty.dims, t.ty.complex) for t in spec.states],
        outputs=[(o.name, o.ty.dims, False) for o in spec.outputs],
        options=[(o.name, _py_scalar(o.value)) for o in spec.options],
        arg_order=list(spec.arg_order), fixed_dims={d.name: d.size for d in spec.dims if d.size is not None},
        tiled=plan.tiled, state_tile_budget=SWEEP_TILE_BUDGET if plan.sweeps is not None else STATE_TILE_BUDGET,
        bwd_state_tile_budget=plan.sweeps.tile_budget if plan.sweeps is not None else BWD_STATE_TILE_BUDGET,
        bwd_tiled=plan.sweeps.split if plan.sweeps is not None else plan.tiled,
        torch_step=_torch_step(spec), bwd_num_warps=plan.bwd_num_warps, two_sweep=plan.sweeps is not None,
        sweep_scratch=list(plan.sweeps.scratch) if plan.sweeps is not None else [],
        sweep_segments=list(plan.sweeps.segments) if plan.sweeps is not None else [], sweep_segment=SWEEP_SEGMENT,
        input_grads=list(plan.input_grads), param_grads=list(plan.param_grads), outputs_doc=outputs_doc,
        scan_block_name=scan_block_name,
        **names, **args, **_call_context(spec),
    )
