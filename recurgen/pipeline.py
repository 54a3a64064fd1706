"""pipeline: the compiler's stages, in order — the one place they are composed.

    parse    spec text -> surface tree (recurgen.parse)
    check    surface tree -> ir.Spec + warnings, in the variant the switches select (recurgen.check)
    analyse  ir.Spec -> Analysis: transition class, operator, chunk form, adjoint (recurgen.analysis)
    plan     Analysis -> ModulePlans: the fused recurrent and the chunk kernels' plans (recurgen.codegen)
    render   ModulePlans -> Python source laid out by the templates (codegen.render)
    tidy     source -> GeneratedModule: pruned, folded, compiled (codegen.tidy)
    cache    GeneratedModule -> imported module, on disk under its key (runtime.cache)

Each stage is a pure function of the one before; the cache is the only side effect. `recurgen.load`, the CLI
and the catalogue call this module. `load` looks in the cache first, under a key of everything the generated
source depends on (`cache_key`), computed from the spec text before any stage runs; the entry keeps the
checked spec beside the module, so a warm load runs no stage at all.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from . import ir
from .errors import Diagnostic
from .resources import templates_dir
from .runtime import cache as module_cache
from .source import Source
from .version import __version__

if TYPE_CHECKING:
    from . import syntax as S
    from .analysis.result import Analysis
    from .codegen.render import ModulePlans
    from .codegen.tidy import GeneratedModule

STAGES = ("parse", "check", "analyse", "plan", "render", "tidy", "cache")


# --- the stages ------------------------------------------------------------------------------------------
# Each stage imports its module on first use: a warm load runs none of them, and imports neither Lark (parse),
# sympy (analyse) nor Jinja (render).
def parse(src: Source) -> S.Module:
    from .parse import parse_spec

    return parse_spec(src.text, src.path)


def check(tree: S.Module, switches: dict[str, float] | None = None) -> tuple[ir.Spec, tuple[Diagnostic, ...]]:
    from .check import check as check_tree

    return check_tree(tree, switches)


def analyse(spec: ir.Spec) -> Analysis:
    from .analysis import analyze

    return analyze(spec)


def plan(analysis: Analysis, src: Source) -> ModulePlans:
    from .codegen.chunk_plan import plan_chunk
    from .codegen.plan import plan_recurrent
    from .codegen.render import ModulePlans

    spec = analysis.spec
    return ModulePlans(spec, analysis, plan_recurrent(spec), plan_chunk(analysis), src.sha256, src.path)


def render(plans: ModulePlans) -> str:
    from .codegen.render import render_module

    return render_module(plans)


def tidy(spec_name: str, rendered: str) -> GeneratedModule:
    from .codegen.tidy import tidy as _tidy

    return _tidy(spec_name, rendered)


# --- compositions ----------------------------------------------------------------------------------------
def front(src: Source, switches: dict[str, float] | None = None) -> tuple[ir.Spec, tuple[Diagnostic, ...]]:
    """parse, check. Raises SpecError with every diagnostic."""
    return check(parse(src), switches)


def generate(src: Source, spec: ir.Spec, analysis: Analysis | None = None) -> GeneratedModule:
    """analyse (unless given), plan, render, tidy: the module of a checked spec, not cached."""
    analysis = analysis if analysis is not None else analyse(spec)
    return tidy(spec.name, render(plan(analysis, src)))


def load(src: Source, switches: dict[str, float] | None = None) -> tuple[ir.Spec, ModuleType]:
    """The checked spec and its imported module: from the cache when it holds them, else compiled and stored.

    The cache is looked up first, so a warm load runs no stage; the entry keeps the checked spec with the module.
    """
    key = cache_key(src, switches)
    hit = module_cache.lookup(key)
    if hit is not None and isinstance(hit[1], ir.Spec):
        return hit[1], hit[0]
    spec, _warnings = front(src, switches)
    module, _ = module_cache.store(spec.name, key, generate(src, spec).source, spec)
    return spec, module


# --- the cache key ---------------------------------------------------------------------------------------
def cache_key(src: Source, switches: dict[str, float] | None = None) -> str:
    """A digest of everything the generated module depends on, computed without running a stage.

    The spec text and the name the header gives it, the switches asked for, recurgen's version and the content of
    its code and templates (so an edited template or a changed stage is a miss, not a stale module), and Triton's
    version (an upgrade gets fresh files and fresh JIT caches).
    """
    asked = repr(sorted((switches or {}).items()))
    parts = [src.text, src.path, asked, __version__, _code_digest(), _triton_version()]
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


@cache
def _code_digest() -> str:
    """sha256 over recurgen's Python sources and its templates, once per process."""
    h = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    stack = [("", templates_dir())]
    while stack:
        prefix, node = stack.pop()
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                stack.append((f"{prefix}{child.name}/", child))
            elif child.name.endswith(".jinja"):
                h.update(f"{prefix}{child.name}".encode() + b"\0" + child.read_bytes() + b"\0")
    return h.hexdigest()


@cache
def _triton_version() -> str:
    try:
        return metadata.version("triton")
    except metadata.PackageNotFoundError:
        return "none"
