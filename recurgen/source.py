"""source: what the compiler is given — spec text and the name diagnostics call its file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .resources import bundled_spec_names, bundled_spec_text


@dataclass(frozen=True, slots=True)
class Source:
    text: str
    path: str  # what diagnostics call the file

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def resolve(spec: str | Path) -> Source:
    """A path to a `.rec` file, or the name of a bundled spec.

    Raises:
        FileNotFoundError: neither a readable file nor a bundled name.
    """
    p = Path(spec)
    if p.suffix == ".rec" or p.exists():
        return Source(p.read_text(encoding="utf-8"), str(spec))
    name = str(spec)
    if name in bundled_spec_names():
        return Source(bundled_spec_text(name), f"specs/{name}.rec")
    raise FileNotFoundError(f"no spec file `{spec}` and no bundled spec of that name "
                            f"(bundled: {', '.join(bundled_spec_names())})")
