"""config: the one reader of RECURGEN_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where compiled modules live: RECURGEN_CACHE_DIR, else ~/.cache/recurgen."""
    env = os.environ.get("RECURGEN_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "recurgen"


def debug() -> bool:
    """RECURGEN_DEBUG=1: show internal tracebacks."""
    return os.environ.get("RECURGEN_DEBUG", "0") not in ("", "0")


def interpreting() -> bool:
    """Triton runs in its CPU interpreter (TRITON_INTERPRET=1, read before triton is imported)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
