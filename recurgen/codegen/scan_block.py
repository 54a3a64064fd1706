"""scan_block: the blocked-scan forward of an elementwise recurrence, printed from the IR (chunk mode, scan family).

When every state is updated elementwise, S_t = a_t ⊙ S_{t-1} + b_t, with a_t and b_t free of states (the scan
family of chunk_plan), a program can take BT tokens at once: it loads a block of every input ([BT, ...] tiles),
forms a_t and b_t of the whole block in registers from the spec's own formulas, scans the block in parallel
(tl.associative_scan with (a2, X2) ∘ (a1, X1) = (a2 a1, a2 X1 + X2)), and evaluates the outputs on the block's
states. a_t and b_t never reach memory.

The per-token formulas are printed by the Triton printer once they are *lifted*: every token-varying leaf gets a
leading time dim `tok_`, products with a contraction become a broadcast multiply and a masked sum (`outer`,
`@`), so each printed tile is [BT, ...]. Formulas the lift cannot express (indexing, transposes, diagonals),
`prev(S)` readouts, loops and running maxes keep the canonical scan core (plan: None).

The kernel has the fused recurrent forward kernel's arguments (one more constexpr, BT) and writes the same
checkpoints, so the training backward is the fused recurrent backward (the adjoint printed from the same IR).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .. import ir
from ..ir import Apply, Const, Expr, Kind, Op, Type, Var
from .chunk_plan import ChunkPlan
from .kernel_text import _names, _val, numel
from .simplify import simplify
from .step import _substitute
from .triton_printer import TritonPrinter

TOK = "tok_"  # the time dim of a block: tiles [Btok_, ...]
_ELEMENTWISE = ir.ELEMENTWISE_UNARY | ir.ELEMENTWISE_BINARY


class NoLift(Exception):
    """A formula has no blocked form here."""


@dataclass(frozen=True, slots=True)
class ScanBlock:
    """Printed pieces of the blocked-scan forward kernel (templates/chunk/scan.py.jinja lays them out)."""

    prologue: str  # per head: what depends on no token (e.g. a time-invariant decay)
    loads: str  # [BT, ...] tiles of the inputs
    body: str  # a_t, b_t of the block (and what the outputs need)
    scan: str  # per state: the block's states from the carried one, and the carry
    outputs: str  # the outputs of the block, printed
    stores: str
    combine: tuple[bool, ...]  # the combine functions to emit: False real, True complex


def _lift_type(ty: Type) -> Type:
    return Type((TOK, *ty.dims), ty.complex)


def _lifted(e: Expr) -> bool:
    return TOK in e.ty.dims


def lift(e: Expr, varying: frozenset[Expr]) -> Expr:
    """`e` over a block of tokens: the `varying` leaves gain the dim `tok_`, and so does every node above one."""
    memo: dict[Expr, Expr] = {}

    def go(n: Expr) -> Expr:
        if n in memo:
            return memo[n]
        if n in varying:
            assert isinstance(n, Var)
            out: Expr = replace(n, ty=_lift_type(n.ty))
        elif isinstance(n, Var | Const):
            out = n
        else:
            out = _lift_apply(n, tuple(go(a) for a in n.args))
        memo[n] = out
        return out

    return go(e)


def _lift_apply(n: Apply, args: tuple[Expr, ...]) -> Expr:
    if not any(_lifted(a) for a in args):
        return replace(n, args=args) if args != n.args else n
    ty = _lift_type(n.ty)
    op = n.op
    if op in _ELEMENTWISE:
        return Apply(op, args, ty, n.attr)
    if op is Op.OUTER:
        a, c = n.args
        if set(a.ty.dims) & set(c.ty.dims):
            raise NoLift("an outer product of a dim with itself")
        return Apply(Op.MUL, args, ty)
    if op is Op.MATMUL:
        a, c = n.args
        k = a.ty.dims[-1]
        dims = (TOK, *a.ty.dims, *c.ty.dims[1:])
        if len(set(dims)) != len(dims):
            raise NoLift("a contraction that repeats a dim")
        prod = Apply(Op.MUL, args, Type(dims, ty.complex))
        return Apply(Op.SUM, (prod,), ty, k)
    if op is Op.SUM:
        x = args[0]
        if n.attr:
            return Apply(Op.SUM, args, ty, n.attr)
        for d in n.args[0].ty.dims:  # a sum over every dim: one dim at a time, the time dim kept
            x = Apply(Op.SUM, (x,), Type(tuple(e for e in x.ty.dims if e != d), ty.complex), d)
        return x
    if op is Op.BROADCAST:
        return Apply(op, args, ty, n.attr)
    raise NoLift(f"`{op.value}` over a block of tokens")


def _row_offsets(dims: tuple[str, ...]) -> tuple[str, str]:
    """(offsets, mask) of a [BT, *dims] tile of a row-major [tokens, *dims] tensor whose rows are `r_x`."""
    n = len(dims) + 1

    def ix(i: int) -> str:
        return "[" + ", ".join(":" if j == i else "None" for j in range(n)) + "]"

    offs = [f"r_x{ix(0)} * {numel(dims)}"] if dims else ["r_x"]
    masks = [f"m_tok_{ix(0)}" if dims else "m_tok_"]
    for i, d in enumerate(dims):
        stride = " * ".join(dims[i + 1:])
        offs.append(f"o_{d}{ix(i + 1)}" + (f" * {stride}" if stride else ""))
        masks.append(f"m_{d}{ix(i + 1)}")
    return " + ".join(offs), " & ".join(masks)


def _token_rows(name: str | None) -> str:
    """Rows of the block's tokens in a [B, T, H_x, ...] tensor (outputs: every head)."""
    heads = "H" if name is None else f"H_{name}"
    head = "i_h" if name is None else f"i_h // (H // H_{name})"
    return f"(i_t0 + o_tok_) * {heads} + {head}"


def _full(code: str, src: tuple[str, ...], dims: tuple[str, ...]) -> str:
    """`code` (dims `src`) as a full [BT, *dims] tile."""
    zero = f"tl.zeros([{', '.join(f'B{d}' for d in (TOK, *dims))}], dtype=tl.float32)"
    literal = code.lstrip("-").replace(".", "", 1).isdigit()  # e.g. the imaginary part of a real value
    return f"{TritonPrinter.align(code, src, (TOK, *dims))} + {zero}" if literal or src != (TOK, *dims) else code


def plan_scan_block(chunk: ChunkPlan) -> ScanBlock | None:
    """The blocked-scan forward of a spec whose every state is in the scan family; None when it has none."""
    spec = chunk.spec
    if not chunk.chunkable or chunk.running or any(c.family != "scan" or c.steps != 1 for c in chunk.calls):
        return None
    if any(u.loop is not None for u in spec.updates):
        return None
    outputs = [(o.name, simplify(_substitute(o.value, {}))) for o in spec.outputs]
    if any(ir.uses(e, {Kind.PREV_STATE}) for _, e in outputs):
        return None
    varying = frozenset([*(Var(i.name, Kind.INPUT, i.ty) for i in spec.inputs),
                         *(Var(s.name, Kind.STATE, s.ty) for s in spec.states)])
    try:
        calls = {c.state: (lift(dict(c.args)["a"], varying), lift(dict(c.args)["b"], varying)) for c in chunk.calls}
        outs = [(n, lift(e, varying)) for n, e in outputs]
    except NoLift:
        return None
    return _print(spec, calls, outs)


def _print(spec: ir.Spec, calls: dict[str, tuple[Expr, Expr]],
           outs: list[tuple[str, Expr]]) -> ScanBlock:
    # params, consts and options under the names the fused recurrent prologue loads them as
    leaves: dict[Expr, object] = {Var(p.name, Kind.PARAM, p.ty): f"b_{p.name}" for p in spec.params}
    leaves |= {Var(x.name, kind, ir.SCALAR): f"{pre}_{x.name}"
               for kind, pre, xs in ((Kind.OPTION, "opt", spec.options), (Kind.CONST, "c", spec.consts)) for x in xs}
    loads = []
    for i in spec.inputs:
        leaves[Var(i.name, Kind.INPUT, _lift_type(i.ty))] = f"b_{i.name}"
        offs, m = _row_offsets(i.ty.dims)
        loads.append(f"r_x = {_token_rows(i.name)}\n"
                     f"b_{i.name} = tl.load(x_{i.name} + {offs}, mask={m}, other=0.0).to(tl.float32)")
    states = {s.name: s for s in spec.states}
    for s in spec.states:
        leaves[Var(s.name, Kind.STATE, _lift_type(s.ty))] = _val(_names(f"b_st_{s.name}", s.ty.complex))
    pr = TritonPrinter(leaves, _lifted, prefix="b_k")  # type: ignore[arg-type]
    scan = []
    for name, (a, b) in calls.items():
        s = states[name]
        dims = s.ty.dims
        av, bv = pr.value(a), pr.value(b)
        last = f"o_tok_[:{', None' * len(dims)}] == Btok_ - 1"
        mt = f"m_tok_[:{', None' * len(dims)}]"
        st = _names(f"b_st_{name}", s.ty.complex)
        carry = _names(f"b_{name}", s.ty.complex)
        lift_c = f"[None{', :' * len(dims)}]" if dims else ""
        if not s.ty.complex:
            scan += [f"# {name}: tokens past the end are the identity (a = 1, b = 0)",
                     f"b_a = tl.where({mt}, {_full(str(av), a.ty.dims, dims)}, 1.0)",
                     f"b_b = tl.where({mt}, {_full(str(bv), b.ty.dims, dims)}, 0.0)",
                     f"b_ca, b_cx = tl.associative_scan((b_a, b_b), 0, _{spec.name}_scan_combine)",
                     f"{st[0]} = b_ca * {carry[0]}{lift_c} + b_cx",
                     f"{carry[0]} = tl.sum(tl.where({last}, {st[0]}, 0.0), axis=0)"]
            continue
        (ar, ai), (br, bi) = (v if isinstance(v, tuple) else (v, "0.0") for v in (av, bv))
        full = [_full(x, e.ty.dims, dims) for x, e in ((ar, a), (ai, a), (br, b), (bi, b))]
        sr, si = st
        cr, ci = carry
        scan += [f"# {name}: tokens past the end are the identity (a = 1, b = 0); complex as (re, im)",
                 f"b_ar = tl.where({mt}, {full[0]}, 1.0)", f"b_ai = tl.where({mt}, {full[1]}, 0.0)",
                 f"b_br = tl.where({mt}, {full[2]}, 0.0)", f"b_bi = tl.where({mt}, {full[3]}, 0.0)",
                 f"b_car, b_cai, b_cxr, b_cxi = tl.associative_scan((b_ar, b_ai, b_br, b_bi), 0, "
                 f"_{spec.name}_scan_combine_c)",
                 f"{sr} = b_car * {cr}{lift_c} - b_cai * {ci}{lift_c} + b_cxr",
                 f"{si} = b_car * {ci}{lift_c} + b_cai * {cr}{lift_c} + b_cxi",
                 f"{cr} = tl.sum(tl.where({last}, {sr}, 0.0), axis=0)",
                 f"{ci} = tl.sum(tl.where({last}, {si}, 0.0), axis=0)"]
    body = list(pr.body)
    pr.body.clear()
    stores = []
    for o, (name, e) in zip(spec.outputs, outs, strict=True):
        v = pr.real(e)
        offs, m = _row_offsets(o.ty.dims)
        stores.append(f"r_x = {_token_rows(None)}\n"
                      f"tl.store(y_{name} + {offs}, ({_full(v, e.ty.dims, o.ty.dims)}).to(y_{name}.dtype.element_ty), "
                      f"mask={m})")
    cplx = tuple(sorted({states[n].ty.complex for n in calls}))
    return ScanBlock("\n".join(pr.prologue), "\n".join(loads), "\n".join(body), "\n".join(scan),
                     "\n".join(pr.body), "\n".join(stores), cplx)
