"""report: render results/README.md (every table) and the PNG plots from results/data/*.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import common, fair, roofline, traffic
from .common import GPU_B, GPU_H, GPU_T, md_table, si
from .traffic import GLUE

KIND_LABEL = {"fwd": "fwd", "fwd_train": "fwd (training: + checkpoints)", "bwd": "bwd", "step": "step (decode)"}
T_REF = 4096  # the sequence length of the summary tables
PLOT_SPECS = ("gla", "gated_delta_rule", "mamba2")  # traffic vs T: chunk against recurrent
CHUNK = traffic.CHUNK_T[0]  # tokens per chunk: the chunk kernels' serial walk is T / CHUNK steps
SCALING_T = (256, 512, 1024, 2048, 4096, 8192, 16384)


def _load(data_dir: Path, part: str) -> dict[str, Any] | None:
    path = data_dir / f"{part}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _fits(block: dict[str, Any] | None) -> dict[str, dict[str, traffic.Fit]]:
    if not block:
        return {}
    return {name: traffic.from_json(d) for name, d in block.get("fits", {}).items()}


def _regs(comp: dict[str, Any] | None) -> dict[tuple[str, str], tuple[int, int]]:
    """(spec, kind) -> (registers, warps) on sm_90, from the inspect table."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for r in (comp or {}).get("inspect", []):
        kind = "bwd" if r["kernel"].endswith("_bwd_kernel") else "fwd"
        out[(r["spec"], kind)] = (r["registers"], r["warps"])
    return out


def _model(gpu: roofline.Gpu, fit: traffic.Fit, kind: str, T: int, regs: tuple[int, int] | None,
           mode: str = "recurrent") -> roofline.Estimate:
    counts = fit.at(GPU_B, 1 if kind == "step" else T, GPU_H)
    # the serial walk: tokens (recurrent) or chunks (chunk mode); bwd walks twice (recompute + adjoint)
    walk = T if mode == "recurrent" else T // CHUNK
    steps = 0 if kind == "step" else (2 * walk if kind == "bwd" else walk)
    programs = fit.programs * GPU_B * GPU_H
    resident = roofline.resident_per_sm(*(regs or (None, 4)))
    cycles = roofline.STEP_LATENCY_CYCLES if mode == "recurrent" else roofline.CHUNK_STEP_LATENCY_CYCLES
    return roofline.estimate(gpu, counts, max(steps, 1), programs, resident, cycles)


def _glue_model(gpu: roofline.Gpu, fits: dict[str, traffic.Fit], kind: str, T: int) -> roofline.Estimate | None:
    """Torch glue: every op one memory-bound launch (its FLOPs are not counted)."""
    fit = fits.get(kind + GLUE)
    if fit is None:
        return None
    return roofline.estimate(gpu, fit.at(GPU_B, 1 if kind == "step" else T, GPU_H), 1, 0, None)


def _reg(regs: dict[tuple[str, str], tuple[int, int]], name: str, kind: str, mode: str) -> tuple[int, int] | None:
    # the inspect table has the recurrent kernels' registers; chunk kernels: unknown (one wave, optimistic)
    return regs.get((name, "bwd" if kind == "bwd" else "fwd")) if mode == "recurrent" else None


def _seconds(gpu: roofline.Gpu, fits: dict[str, traffic.Fit], kind: str, T: int, reg: tuple[int, int] | None,
             mode: str) -> tuple[float, str]:
    """Modelled time of one kind, kernels + glue, and what bounds it (glue when glue takes longer)."""
    e = _model(gpu, fits[kind], kind, T, reg, mode)
    g = _glue_model(gpu, fits, kind, T)
    if g is None:
        return e.seconds, e.bound
    return e.seconds + g.seconds, ("glue" if g.seconds > e.seconds else e.bound)


def _commit(m: dict[str, Any]) -> str:
    """The commit a stamp was taken at, and whether the generator's working tree differed from it."""
    dirty = m.get("uncommitted")
    return m.get("commit", "?") + (f" + {len(dirty)} uncommitted generator files" if dirty else "")


def _when(measured: dict[str, Any] | None) -> str:
    """'Measured at commit c, date UTC; load average a at the start, b at the end.' from a part's stamps."""
    if not measured:
        return "Measured in an earlier run (commit and load not recorded)."
    start, end = measured.get("start", {}), measured.get("end", {})

    def load(m: dict[str, Any]) -> str:
        return "/".join(f"{x:.1f}" for x in m.get("load", [])) or "?"

    return (f"Measured at commit {_commit(start)}, {start.get('utc', '?')}–{end.get('utc', '?')[-5:]} UTC; "
            f"load average (1/5/15 min) {load(start)} at the start and {load(end)} at the end, on a 2-core machine "
            "shared with other jobs: the timings include that contention.")


def _ratio(x: float, y: float) -> str:
    return f"{x / y:.2f}" if y else "–"


def _bytes(c: dict[str, float]) -> float:
    return c["load_bytes"] + c["store_bytes"]


def _split(fits: dict[str, traffic.Fit], kind: str, T: int) -> tuple[float, float | None]:
    """(kernel bytes, glue bytes or None when glue was not counted) of one kind at the GPU shape."""
    T = 1 if kind == "step" else T
    glue = fits.get(kind + GLUE)
    return _bytes(fits[kind].at(GPU_B, T, GPU_H)), None if glue is None else _bytes(glue.at(GPU_B, T, GPU_H))


def _over_lb(fits: dict[str, traffic.Fit], kind: str, lb: float) -> str:
    """'total (glue g)' over the lower bound, or the kernels' ratio alone when glue was not counted."""
    if kind not in fits:
        return "–"
    k, g = _split(fits, kind, T_REF)
    if g is None:
        return _ratio(k, lb)
    return f"{_ratio(k + g, lb)} ({_ratio(g, lb)} glue)"


def _vs_peer(mine: dict[str, traffic.Fit], peer: dict[str, traffic.Fit] | None, kind: str) -> str:
    """Bytes recurgen / fla: totals when both sides' glue was counted, kernels only otherwise (marked)."""
    if not peer or kind not in peer or kind not in mine:
        return "–"
    mk, mg = _split(mine, kind, T_REF)
    pk, pg = _split(peer, kind, T_REF)
    if mg is None or pg is None:
        return f"{_ratio(mk, pk)} (kernels)"
    return _ratio(mk + mg, pk + pg)


def _linear(fits: dict[str, traffic.Fit]) -> str:
    return "yes" if all(f.verified for f in fits.values()) else "**no**"


def _modes(tr: dict[str, Any] | None) -> dict[str, tuple[dict[str, Any], dict[str, dict[str, traffic.Fit]]]]:
    """mode -> (its data block, its fits per spec), for the modes that were measured."""
    out = {}
    for mode in traffic.MODES:
        block = (tr or {}).get("modes", {}).get(mode)
        if block and block.get("fits"):
            out[mode] = (block, _fits(block))
    return out


def _summary(modes: dict[str, Any], vs_fla: dict[str, dict[str, float]], regs: Any, no_chunk: dict[str, str]) -> str:
    h100 = roofline.GPUS[0]
    rows = []
    for name in sorted({n for _, fits in modes.values() for n in fits} | set(no_chunk)):
        for mode, (block, fits) in modes.items():
            if name not in fits:
                if mode == "chunk" and name in no_chunk:
                    rows.append([f"`{name}`", mode, f"no chunk form ({no_chunk[name]})", *["–"] * 8])
                continue
            f = fits[name]
            lb = traffic.lower_bounds(name, GPU_B, T_REF, GPU_H, block["dims"][name])
            label = f"{mode} (scaled)" if name in block.get("scaled", {}) else mode
            cells: list[Any] = [f"`{name}`", label] + [_over_lb(f, k, lb[k]) for k in traffic.KINDS]
            fwd, bound = _seconds(h100, f, "fwd", T_REF, _reg(regs, name, "fwd", mode), mode)
            train = sum(_seconds(h100, f, k, T_REF, _reg(regs, name, k, mode), mode)[0] for k in ("fwd_train", "bwd"))
            cells += [f"{fwd * 1e3:.2f} ({bound})", si(GPU_B * T_REF / fwd), si(GPU_B * T_REF / train)]
            cells += [_vs_fair(vs_fla.get(f"{name}/{mode}")), _linear(f)]
            rows.append(cells)
    return md_table(["spec", "mode", "fwd bytes / LB", "fwd (train) / LB", "bwd / LB", "step / LB",
                     "H100 fwd ms (bound)", "H100 fwd tok/s", "H100 train tok/s",
                     "fwd+bwd bytes recurgen/fla (fair)", "linear"], rows)


def _vs_fair(row: dict[str, float] | None) -> str:
    """recurgen / fla forward + backward bytes against the fair baseline (`benchmarks.fair`): fla's smallest
    tiles (the issue's bound applies to it), its largest in brackets; bold when over the bound."""
    if row is None or "fla-smallest" not in row:
        return "–"
    small = row["recurgen"] / row["fla-smallest"]
    text = f"{small:.2f}" if small <= row["bound"] else f"**{small:.2f}**"
    large = row.get("fla-largest")
    return text + (f" ({row['recurgen'] / large:.2f})" if large else "")


def _detail(mode: str, block: dict[str, Any], fits: dict[str, dict[str, traffic.Fit]]) -> list[str]:
    rows = []
    for name, f in fits.items():
        sz = block["dims"][name]
        for kind in (k for k in traffic.KINDS if k in f):
            for T in ((1,) if kind == "step" else GPU_T):
                c = f[kind].at(GPU_B, T, GPU_H)
                g = f[kind + GLUE].at(GPU_B, T, GPU_H) if kind + GLUE in f else None
                lb = common.lower_bound(recurgen_spec(name), kind, GPU_B, T, GPU_H, sz)
                tot = _bytes(c) + (_bytes(g) if g else 0)
                ok = f[kind].verified and (g is None or f[kind + GLUE].verified)
                evidence = f[kind].evidence if not f[kind].verified else f.get(kind + GLUE, f[kind]).evidence
                rows.append([f"`{name}`", KIND_LABEL[kind], T, si(c["load_bytes"], "B"), si(c["store_bytes"], "B"),
                             "–" if g is None else si(_bytes(g), "B"), si(tot, "B"), si(lb, "B"),
                             _ratio(_bytes(c), lb), _ratio(tot, lb), si(c["flops"]), si(c["sfu"]),
                             f"{int(c['launches'])}" + ("" if g is None else f" + {int(g['launches'])}"),
                             ", ".join(f"`{k}`" for k in f[kind].kernels),
                             "yes" if ok else "**no**: " + evidence])
    ts = block.get("small_T", [])
    scaled = block.get("scaled", {})
    note = ""
    if scaled:
        note = (" **Scaled** (marked *(scaled)* in the summary): " + "; ".join(
            f"`{n}` counted at {how}" for n, how in sorted(scaled.items())) + ". Their chunk kernels (the scan "
            "family) give each program one row of the state at full width, so the kernels' counts are "
            "proportional to the number of rows and the glue is affine in it; both are checked exactly at a "
            "third size before extrapolating (`benchmarks.traffic.measure_reduced`).")
    return [f"## Counted traffic and FLOPs ({mode} mode, extrapolated)", "",
            f"Counted at T = {', '.join(map(str, ts))}. kernels: the Triton launches; glue: the torch ops around "
            "them (one launch each on a GPU). Ratios over the IO lower bound for the kernels alone and for "
            "kernels + glue. FLOPs and SFU ops: kernels only." + note, "",
            md_table(["spec", "kernel", "T", "kernels loaded", "kernels stored", "glue bytes", "total",
                      "IO lower bound", "kernels / LB", "total / LB", "FLOPs", "SFU ops",
                      "launches (kernels + glue ops)", "kernels", "linear"], rows), "",
            *_measured_note(block, fits), ""]


def _measured_note(block: dict[str, Any], fits: dict[str, Any]) -> list[str]:
    """When, at which commit and under which load each spec's counts were measured (the counts are exact and
    do not depend on the load; only the run time does)."""
    when = block.get("measured", {})
    rows = []
    for name in sorted(fits):
        m = when.get(name)
        if m:
            rows.append([f"`{name}`", _commit(m), m["utc"], f"{m.get('seconds', 0):.0f}",
                         "/".join(f"{x:.1f}" for x in m.get("load", []))])
        else:
            rows.append([f"`{name}`", "not recorded (an earlier tree: stale for code changed since)", "–", "–", "–"])
    return ["When each spec was counted (counts are exact; the load average, 1/5/15 min, only explains the run "
            "time):", "", md_table(["spec", "commit", "UTC", "seconds", "load average"], rows)]


def _peer_table(modes: dict[str, Any], peers: dict[str, dict[str, dict[str, traffic.Fit]]]) -> list[str]:
    rows = []
    for mode, pfits in peers.items():
        mine = modes.get(mode, ({}, {}))[1]
        for name, pf in pfits.items():
            if name not in mine:
                continue
            for kind in (k for k in traffic.KINDS if k in mine[name]):
                if kind not in pf:
                    rows.append([f"`{name}`", mode, KIND_LABEL[kind], "–", "–", "–", "–", "–", "–",
                                 "fla has no such kernel for this model" if kind != "step" else "–"])
                    continue
                mk, mg = _split(mine[name], kind, T_REF)
                pk, pg = _split(pf, kind, T_REF)
                T = 1 if kind == "step" else T_REF
                r, p = mine[name][kind].at(GPU_B, T, GPU_H), pf[kind].at(GPU_B, T, GPU_H)
                rows.append([f"`{name}`", mode, KIND_LABEL[kind], si(mk, "B"), "–" if mg is None else si(mg, "B"),
                             si(pk, "B"), "–" if pg is None else si(pg, "B"), _vs_peer(mine[name], pf, kind),
                             _ratio(r["flops"], p["flops"]),
                             ", ".join(f"`{k}`" for k in pf[kind].kernels) +
                             ("" if pf[kind].verified else " (**not linear**: " + pf[kind].evidence + ")")])
    return md_table(["spec", "mode", "kernel", "recurgen kernels", "recurgen glue", "fla kernels", "fla glue",
                     "bytes recurgen/fla", "kernel FLOPs recurgen/fla", "fla kernels"], rows).splitlines()


def write(out: Path) -> list[Path]:
    data_dir = out / "data"
    tr, fla, wall, comp, scal = (_load(data_dir, p) for p in ("traffic", "fla", "wallclock", "compile", "scaling"))
    written: list[Path] = []
    md: list[str] = ["# recurgen benchmarks", "",
                     "Generated by `python -m benchmarks` (see `python -m benchmarks --help`); do not edit by hand.",
                     "Counted numbers are exact counts from Triton's interpreter, **extrapolated** from small "
                     "shapes (see Method); times on H100/H200 are **modelled, not measured** (no GPU here); "
                     "CPU wall-clock times are measured.", ""]
    env = (tr or fla or {}).get("environment") or common.environment()
    md += ["## Environment", "", common.env_block(env), ""]
    modes = _modes(tr)
    rec_block = modes.get("recurrent", ({}, {}))[0]
    peers = {m: _fits((fla or {}).get(m)) for m in traffic.MODES if (fla or {}).get(m)}
    no_chunk = ((tr or {}).get("modes", {}).get("chunk") or {}).get("no_chunk_form", {})
    regs = _regs(comp)
    md += ["## Modes", "",
           "- **recurrent** (fused recurrent kernels: fwd, bwd, decode step).",
           f"- **chunk** (`mode=\"chunk\"`: chunked-parallel kernels, {CHUNK} tokens per chunk, fwd and bwd; decoding "
           "uses the recurrent step whatever the mode). Specs without a chunk form: "
           + (", ".join(f"`{n}` ({why})" for n, why in sorted(no_chunk.items())) or "none") + ".", ""]
    md += ["## Method", "",
           f"Shape: B={GPU_B}, H={GPU_H}, T in {', '.join(map(str, GPU_T))}, every free dim 128 (K = V = 128; fixed "
           "dims as in the spec), bf16 inputs/outputs, fp32 params and states. The interpreter cannot run that "
           "shape, so every kernel is counted at B = H = 1 for three small T (recurrent: "
           f"{', '.join(map(str, rec_block.get('small_T', traffic.SMALL_T)))}, multiples of the checkpoint interval; "
           f"chunk: {', '.join(map(str, traffic.CHUNK_T))}, one to three chunks) and at B·H = 2 (as B=1,H=2 and "
           "B=2,H=1). Kernel counts must be exactly affine in T and exactly proportional to B·H (checked per kernel "
           "and counter, column *linear*); then count(B, T, H) = B·H·(a + b·T) is extrapolated: chunk mode is "
           "scaled by its measured per-chunk counts. Chunk mode of the scan-family specs with a matrix state "
           "(interpreting their 128 × 128 scan takes hours) is counted at T = "
           f"{', '.join(map(str, traffic.REDUCED_T))} with the state's uncontracted dim at "
           f"{traffic.REDUCED_AT[0]} and {traffic.REDUCED_AT[1]}, fitted affine in that dim, checked exactly at "
           f"{traffic.REDUCED_AT[2]} and scaled to 128 (marked *(scaled)*; see the chunk section).",
           "",
           "Bytes are global loads + stores actually issued by the kernels (masked lanes excluded; re-reads "
           "count again). **Glue** is counted separately (`benchmarks.counters.count_torch`, a "
           "`TorchDispatchMode`): every aten op run around and between the launches — in chunk mode the spec's "
           "formulas for the kernels' canonical q/k/v/g/β (or a/b/c) and for the outputs, layout changes and "
           "casts; in both modes the kernel wrappers' casts, allocations and partial-gradient sums — counted as "
           "the distinct elements of its tensor inputs (read) and outputs (written); views and allocations move "
           "nothing. Glue reads a param once per call, so its fit is B·H·(a + b·T) + H·h, checked by doubling H "
           "exactly. fla's glue is counted for its chunk kernels; its recurrent kernels were counted without "
           "(ratios marked *(kernels)* compare kernels only). "
           "IO lower bound: every input read once and every output written once, in bf16 (fwd); inputs and "
           "output cotangents read, input gradients written (bwd); one token plus the state read and "
           "written in fp32 (step). FLOPs: fp32 elementwise arithmetic + reductions (+ 2·M·N·K per `tl.dot`), "
           "kernels only; exp/log/sqrt are counted separately as SFU ops.", ""]

    # --- summary -----------------------------------------------------------------------------------
    if modes:
        summary = _summary(modes, fair.ratios({s: fair.load(data_dir, s) for s in fair.SIDES}), regs, no_chunk)
        md += [f"## Summary (B={GPU_B}, T={T_REF}, H={GPU_H}, K=V=128, bf16)", "",
               "bytes / LB: counted global traffic (kernels + torch glue) over the IO lower bound (1.00 = every "
               "byte moved once), the glue's share in brackets. H100 columns are modelled (see Roofline): kernels "
               "+ glue, *glue* where the glue's modelled time exceeds the kernels'. recurgen/fla (fair): forward + "
               "backward bytes, kernels + glue, against flash-linear-attention's fair baseline under issue 15's "
               "conditions (fp16, initial and final state; fla with an H100's tile lists, its smallest tiles, its "
               "largest in brackets; bold: over issue 15's bound), from `python -m benchmarks.fair` "
               "(results/fla.md).", "", summary, ""]
        (out / "summary.md").write_text(summary + "\n")
        written.append(out / "summary.md")
        for mode, (block, fits) in modes.items():
            md += _detail(mode, block, fits)
            missing = [n for n in common.all_specs() if n not in fits and n not in block.get("errors", {})
                       and not (mode == "chunk" and n in no_chunk)]
            if missing:
                slow = (" Chunk mode's scan family is the slowest to interpret (a blocked `tl.associative_scan` "
                        "over every state element of each token: minutes per spec for a vector state; a [K, V] "
                        "or [D, N] state is counted with one dim small and scaled, see above)."
                        if mode == "chunk" else "")
                md += [f"Bundled specs not measured in {mode} mode in this run (select them with `--specs`): "
                       + ", ".join(f"`{n}`" for n in missing) + "." + slow, ""]
            if block.get("errors"):
                md += ["Specs that could not be counted: " + "; ".join(f"`{k}`: {v}" for k, v in
                                                                      block["errors"].items()), ""]

    # --- fla ------------------------------------------------------------------------------------------
    md += ["## flash-linear-attention side by side (fused recurrent and chunk kernels)", ""]
    if fla is None:
        md += ["Not run (`python -m benchmarks --parts fla`).", ""]
    elif not fla.get("available"):
        md += [f"flash-linear-attention is not importable here: {fla.get('why')}. Install it with "
               "`pip install --no-deps fla-core==0.6.0 flash-linear-attention==0.6.0 einops`.", ""]
    else:
        md += [f"fla {env.get('flash-linear-attention')}, same shapes (B={GPU_B}, T={T_REF}, H={GPU_H}, K=V=128, "
               "bf16), same counters and extrapolation; its autotuner runs its first config under the "
               "interpreter. fla's step is its fused recurrent forward at T=1 with a state in and out. Its chunk "
               "kernels run in the interpreter once their loop variables are tensors, as compiled Triton has them "
               "(`benchmarks.peers.loop_vars_as_tensors`); their bf16 `tl.dot` computes wrong values there "
               "(TRITON_ON_CPU pitfall 1), which does not change what they load and store. "
               "Ratios > 1: recurgen moves more bytes.", "", *_peer_table(modes, peers), ""]
        for mode in peers:
            errors = (fla.get(mode) or {}).get("errors")
            if errors:
                why = (" (`mask has unsupported dtype`: the interpreter labels a comparison's bool result with its "
                       "operand's dtype, which `tl.load` rejects as a mask; compiled Triton does not)"
                       if any("mask has unsupported dtype" in v for v in errors.values()) else "")
                md += [f"fla {mode} models that could not be run: " + "; ".join(f"`{k}`: {v}" for k, v in
                                                                              errors.items()) + why, ""]

    # --- roofline -------------------------------------------------------------------------------------
    if modes:
        md += ["## Roofline model for H100 and H200 (MODELLED, not measured)", "", roofline.__doc__.split("\n\n", 1)[1]
               .strip(), "", "Constants:", "", roofline.assumptions_md(), ""]
        rows = []
        for mode, (_, fits) in modes.items():
            for name, f in fits.items():
                for kind in (k for k in traffic.KINDS if k in f):
                    for gpu in roofline.GPUS:
                        reg = _reg(regs, name, kind, mode)
                        e = _model(gpu, f[kind], kind, T_REF, reg, mode)
                        g = _glue_model(gpu, f, kind, T_REF)
                        total, bound = _seconds(gpu, f, kind, T_REF, reg, mode)
                        toks = GPU_B * (1 if kind == "step" else T_REF) / total
                        rows.append([f"`{name}`", mode, KIND_LABEL[kind], gpu.name, f"{e._mem * 1e3:.3f}",
                                     f"{e._comp * 1e3:.3f}", f"{e.serial_s * 1e3:.3f}", f"{e.overhead_s * 1e3:.3f}",
                                     "–" if g is None else f"{g.seconds * 1e3:.3f}", f"{total * 1e3:.3f}", bound,
                                     si(toks)])
                for kind in ("fwd", "bwd"):
                    pf = peers.get(mode, {}).get(name)
                    if not pf or kind not in pf:
                        continue
                    for gpu in roofline.GPUS:
                        e = _model(gpu, pf[kind], kind, T_REF, None, mode)
                        g = _glue_model(gpu, pf, kind, T_REF)
                        total, bound = _seconds(gpu, pf, kind, T_REF, None, mode)
                        rows.append([f"`{name}` (fla)", mode, KIND_LABEL[kind], gpu.name, f"{e._mem * 1e3:.3f}",
                                     f"{e._comp * 1e3:.3f}", f"{e.serial_s * 1e3:.3f}", f"{e.overhead_s * 1e3:.3f}",
                                     "–" if g is None else f"{g.seconds * 1e3:.3f}", f"{total * 1e3:.3f}", bound,
                                     si(GPU_B * T_REF / total)])
        md += [f"B={GPU_B}, T={T_REF}, H={GPU_H}, K=V=128, bf16. Times in ms; memory / compute / serial / launch "
               "are the kernels' terms, glue the torch ops' (bytes / bandwidth + a launch each); tokens/s = B·T / "
               "model (step: B tokens).", "",
               md_table(["spec", "mode", "kernel", "GPU", "memory", "compute", "serial", "launch", "glue", "model",
                         "bound", "tokens/s"], rows), ""]

    # --- scaling ---------------------------------------------------------------------------------------
    if modes:
        h100 = roofline.GPUS[0]
        rows = []
        for name in PLOT_SPECS:
            for T in SCALING_T:
                for mode, (_, fits) in modes.items():
                    if name not in fits:
                        continue
                    f = fits[name]
                    (fk, fg), (bk, bg) = _split(f, "fwd", T), _split(f, "bwd", T)
                    tf = _seconds(h100, f, "fwd", T, _reg(regs, name, "fwd", mode), mode)[0]
                    tb = _seconds(h100, f, "bwd", T, _reg(regs, name, "bwd", mode), mode)[0]
                    rows.append([f"`{name}`", T, mode, si(fk, "B"), si(fg or 0, "B"), si(bk, "B"), si(bg or 0, "B"),
                                 f"{tf * 1e3:.3f}", f"{tb * 1e3:.3f}"])
        md += ["## Scaling with T (extrapolated counts, modelled H100 time)", "",
               "Linear in T by construction of the check above (counts verified exactly affine in T).", "",
               md_table(["spec", "T", "mode", "fwd kernel bytes", "fwd glue bytes", "bwd kernel bytes",
                         "bwd glue bytes", "H100 fwd ms", "H100 bwd ms"], rows), ""]
    if scal:
        rows = []
        for kv, block in sorted(scal.items(), key=lambda kv: int(kv[0])):
            for name, fd in block.get("fits", {}).items():
                fits = traffic.from_json(fd)
                sz = block["dims"][name]
                for kind in ("fwd", "bwd"):
                    c = fits[kind].at(GPU_B, T_REF, GPU_H)
                    lb = common.lower_bound(recurgen_spec(name), kind, GPU_B, T_REF, GPU_H, sz)
                    e = _model(h100, fits[kind], kind, T_REF, None)
                    tot = c["load_bytes"] + c["store_bytes"]
                    rows.append([f"`{name}`", kv, KIND_LABEL[kind], fits[kind].programs, si(tot, "B"),
                                 _ratio(tot, lb), si(c["flops"]), f"{e.seconds * 1e3:.3f}",
                                 "yes" if fits[kind].verified else "**no**"])
        sts = next(iter(scal.values()))["small_T"]
        kv_missing = [kv for kv in common.SCALING_KV if str(kv) not in scal]
        md += ["## Scaling with K = V (recurrent mode)", "",
               f"Counted at each size at T = {', '.join(map(str, sts))} "
               + ("(with two lengths the affine fit in T is exact by construction and only the B·H "
                  "proportionality is checked) " if len(sts) < 3 else "")
               + (f"(K = V = {', '.join(map(str, kv_missing))} not counted in this run: the interpreter needs "
                  "about four times as long per doubling) " if kv_missing else "")
               + "and extrapolated to "
               f"B={GPU_B}, T={T_REF}, H={GPU_H}; programs per (batch, head) "
               "grow as the state is tiled along V. Modelled H100 time assumes one wave (registers not "
               "inspected here). " + _scaling_when(scal), "",
               md_table(["spec", "K = V", "kernel", "programs / (b, h)", "bytes", "bytes / LB", "FLOPs",
                         "H100 ms (model)", "linear"], rows), ""]

    # --- wall clock ------------------------------------------------------------------------------------
    if wall:
        methods = sorted({m for r in wall["rows"] for m in r["times"]})
        rows = []
        for r in wall["rows"]:
            base = r["times"].get("recurgen torch path")
            cells: list[Any] = [f"`{r['spec']}`", r["T"]]
            for m in methods:
                t = r["times"].get(m)
                cells.append("skipped" if t is None else f"{t * 1e3:.1f}")
            for m in methods:
                if m == "recurgen torch path":
                    continue
                t = r["times"].get(m)
                cells.append("–" if t is None or not base else f"{t / base:.2f}")
            rows.append(cells)
        others = [m for m in methods if m != "recurgen torch path"]
        sh = wall["shape"]
        md += ["## CPU wall-clock (measured, forward only)", "",
               f"fp32 on this CPU, {wall['threads']} torch thread(s) (the machine is shared: intra-op parallel "
               "regions stall when a thread is descheduled, which once made `torch.einsum` 2000× slower), "
               f"B={sh['B']}, H={sh['H']}, free dims {sh['dim']}; minimum over {wall.get('rounds', 2)} "
               "interleaved rounds; one process. Ratios are "
               "other / recurgen's torch path (> 1: recurgen is faster). A method is skipped at larger T once "
               "one run exceeds the time budget. Not asserted anywhere. " + _when(wall.get("measured")), "",
               md_table(["spec", "T", *[f"{m} ms" for m in methods], *[f"{m} / recurgen" for m in others]], rows),
               ""]

    # --- compile ---------------------------------------------------------------------------------------
    if comp:
        rows = [[f"`{r['spec']}`", f"{r['cold_s'] * 1e3:.0f}", f"{r['warm_s'] * 1e3:.0f}"] for r in comp["times"]]
        md += ["## Compile time (spec → importable module)", "",
               "Fresh process each, clock started after importing torch and recurgen. Cold: empty "
               "RECURGEN_CACHE_DIR. Warm: the same cache again. " + _when(comp.get("measured")), "",
               md_table(["spec", "cold ms", "warm ms"], rows), ""]
        rows = [[f"`{r['spec']}`", f"`{r['kernel']}`", r["warps"], r["blocks"], r["registers"], r["spills"],
                 r["stack"], r["shared"]] for r in comp["inspect"]]
        md += ["## GPU resources on sm_90 (`recurgen inspect`, compiled without a GPU)", "",
               "K = V = 128 (every free dim 128), bf16; per kernel the configuration the autotuner can fall back "
               "on (fewest spills, then fewest warps). " + (
                   f"Compiled at commit {_commit(comp['inspect_measured']['start'])}, "
                   f"{comp['inspect_measured']['start'].get('utc', '?')} UTC."
                   if comp.get("inspect_measured") else
                   "From an earlier run (commit not recorded; the recurrent kernels only).")
               + (f" The latest run could not refresh it: {comp['inspect_error']}" if comp.get("inspect_error")
                  else ""), "",
               md_table(["spec", "kernel", "warps", "blocks", "registers", "spills (B)", "stack (B)", "shared (B)"],
                        rows), ""]

    # fla in the plots: the fair baseline's counts (H100 tile lists, smallest tiles) where they exist
    fair_fla = fair.load(data_dir, "fla-smallest")["pairs"]
    plot_peers = {m: {**peers.get(m, {}), **{k.split("/")[0]: traffic.from_json(e["fits"])
                                             for k, e in fair_fla.items() if k.endswith("/" + m)}}
                  for m in traffic.MODES}
    written += _plots(out, modes, plot_peers, scal, wall)
    md += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in written if p.suffix == ".png"] + [""]
    (out / "README.md").write_text("\n".join(md))
    written.insert(0, out / "README.md")
    return written


def recurgen_spec(name: str) -> Any:
    import recurgen

    return recurgen.load(name).spec


def _train_bytes(fits: dict[str, traffic.Fit], T: int, glue: bool = True) -> float:
    """Training traffic at the GPU shape: fwd (with checkpoints) + bwd, kernels (+ glue where counted)."""
    return sum(k + ((g or 0) if glue else 0) for k, g in (_split(fits, kind, T) for kind in ("fwd_train", "bwd")))


def _traffic_plot(plt: Any, out: Path, modes: dict[str, Any], peers: dict[str, Any]) -> Path | None:
    """Training traffic vs T, chunk against recurrent (and fla, and the IO lower bound), for PLOT_SPECS."""
    names = [n for n in PLOT_SPECS if any(n in fits for _, fits in modes.values())]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(4.4 * len(names), 3.8), squeeze=False)
    ts = list(SCALING_T)
    for ax, name in zip(axes[0], names, strict=True):
        block = next(b for b, fits in modes.values() if name in fits)
        spec, sz = recurgen_spec(name), block["dims"][name]
        for mode, (_, fits) in modes.items():
            if name in fits:
                ax.plot(ts, [_train_bytes(fits[name], T) / 1e9 for T in ts], "o-", label=f"recurgen {mode}")
        if "chunk" in modes and name in modes["chunk"][1]:
            ax.plot(ts, [_train_bytes(modes["chunk"][1][name], T, glue=False) / 1e9 for T in ts], ".:",
                    label="recurgen chunk, kernels only")
        for mode, style in (("recurrent", "s--"), ("chunk", "^--")):
            pf = peers.get(mode, {}).get(name)
            if pf and "bwd" in pf:
                ax.plot(ts, [_train_bytes(pf, T) / 1e9 for T in ts], style, label=f"fla {mode}")
        ax.plot(ts, [(common.lower_bound(spec, "fwd", GPU_B, T, GPU_H, sz)
                      + common.lower_bound(spec, "bwd", GPU_B, T, GPU_H, sz)) / 1e9 for T in ts], "k:",
                label="IO lower bound")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{name}: fwd + bwd traffic")
        ax.set_xlabel("T")
        ax.set_ylabel("GB (counted, extrapolated)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Training traffic vs T (B={GPU_B}, H={GPU_H}, K=V=128, bf16): kernels + torch glue", fontsize=9)
    fig.tight_layout()
    p = out / "traffic_vs_T.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def _plots(out: Path, modes: dict[str, Any], peers: dict[str, Any], scal: Any, wall: Any) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are optional: `pip install -e '.[bench]'`
        return []
    written = [p for p in (_traffic_plot(plt, out, modes, peers),) if p is not None]
    if scal:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for name in _scaling_names(scal):
            kvs = sorted(int(k) for k, b in scal.items() if name in b.get("fits", {}))
            for kind, style in (("fwd", "o-"), ("bwd", "s--")):
                ys = [sum(traffic.from_json(scal[str(kv)]["fits"][name])[kind].at(GPU_B, T_REF, GPU_H)[c]
                          for c in ("load_bytes", "store_bytes")) / 1e9 for kv in kvs]
                ax.plot(kvs, ys, style, label=f"{name} {kind}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("K = V")
        ax.set_ylabel("GB (counted, extrapolated)")
        ax.set_title(f"Traffic vs K = V (B={GPU_B}, T={T_REF}, H={GPU_H})", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = out / "traffic_vs_KV.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    if wall:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for spec in sorted({r["spec"] for r in wall["rows"]}):
            rows = [r for r in wall["rows"] if r["spec"] == spec]
            for m in sorted({m for r in rows for m in r["times"]}):
                pts = [(r["T"], r["times"][m]) for r in rows if r["times"].get(m) is not None]
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", label=f"{spec}: {m}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("T")
        ax.set_ylabel("seconds (CPU, measured)")
        ax.set_title("CPU forward wall-clock", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        fig.tight_layout()
        p = out / "cpu_wallclock.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    return written


def _scaling_when(scal: dict[str, Any]) -> str:
    stamps = [m for b in scal.values() for m in b.get("measured", {}).values()]
    if not stamps:
        return "Counted in an earlier run (commit not recorded)."
    commits = sorted({_commit(m) for m in stamps})
    return (f"Counted at commit {', '.join(commits)}, {min(m['utc'] for m in stamps)}–"
            f"{max(m['utc'] for m in stamps)[-5:]} UTC (counts are exact; the machine's load does not change them).")


def _scaling_names(scal: dict[str, Any]) -> list[str]:
    return sorted({n for b in scal.values() for n in b.get("fits", {})})
