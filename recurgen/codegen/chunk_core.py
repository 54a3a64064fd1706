"""chunk_core: render the spec-independent chunk kernel families (templates/chunk/<family>.py.jinja).

A family's template takes a `prefix` (for kernel and launcher names, so several cores can share one
generated module), `standalone` (emit its own imports and the shared helpers of templates/chunk/_common:
used by tests and by `load_core`) and its own flags (e.g. `decay="channel"`). A generated module holds
the shared helpers once (`render_common`), before its cores. The spec-specific parts (computing the
canonical q, k, v, gates from a spec's inputs, and the readout from the core's output) are generated
around it by the chunk plan.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from types import ModuleType

from .templating import environment

FAMILIES = ("matmul", "wy", "scan", "dplr")


def render_core(family: str, prefix: str, *, standalone: bool = False, **flags: object) -> str:
    """Python source of one chunk core: Triton kernels plus `<prefix>_fwd` / `<prefix>_bwd` launchers."""
    if family not in FAMILIES:
        raise ValueError(f"unknown chunk family {family!r}; expected one of {FAMILIES}")
    template = environment().get_template(f"chunk/{family}.py.jinja")
    return template.render(prefix=prefix, standalone=standalone, **flags)


def render_common(families: set[str]) -> str:
    """Python source of the helpers the cores of these families use (`_chunk_dot`, `_chunk_span`, ...), once per
    module ("" when only the scan family is used: it needs none of them)."""
    if not families - {"scan"}:
        return ""
    return str(environment().get_template("chunk/_common.py.jinja").module.helpers(wy=bool(families & {"wy", "dplr"})))


def load_core(family: str, prefix: str = "core", **flags: object) -> ModuleType:
    """Render a standalone core into a temporary file and import it (tests, benchmarks)."""
    from ..runtime.cache import import_file

    source = render_core(family, prefix, standalone=True, **flags)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "recurgen-chunk-cores"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{family}_{prefix}_{digest}.py"
    if not path.exists():
        tmp = path.with_suffix(f".{digest}.tmp")
        tmp.write_text(source)
        tmp.replace(path)
    return import_file(f"recurgen_chunk_{family}_{prefix}_{digest}", path)
