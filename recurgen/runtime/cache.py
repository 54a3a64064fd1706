"""cache: generated modules on disk, found by what determines them, imported once per process.

An entry is found by a key the pipeline computes, before any stage runs, from everything the generated source
depends on (spec text, switches, recurgen's code and templates, Triton's version), so a warm load neither parses
nor renders. Triton's `@jit` needs real source files, so modules are written to disk, then imported. An entry
is `<name>_<key>.py` and, beside it, `<name>_<key>.entry`: the source's sha256 and what the pipeline stored
with it (the checked spec). A source that does not hash to its digest (truncated, tampered) or an entry file
that does not load is a miss, and the caller writes the entry again. Writes are atomic (temp file + rename),
so concurrent processes never see a partial file; an unwritable cache directory degrades to a private
temporary one with a warning. The directory is trusted as an installed package is: damage is detected, a
deliberate rewrite of both files is not.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pickle
import py_compile
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from .. import config

_loaded: dict[str, tuple[ModuleType, Any]] = {}  # by key
_lock = threading.Lock()
_fallback_dir: Path | None = None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _writable_root() -> Path:
    root = config.cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=root, prefix=".probe-", delete=True)  # noqa: SIM115
        probe.close()
        return root
    except OSError as err:
        return _private_root(root, err)


def _private_root(root: Path, err: OSError) -> Path:
    """A temporary directory for this process, announced once with the reason the cache could not be used."""
    global _fallback_dir
    if _fallback_dir is None:
        _fallback_dir = Path(tempfile.mkdtemp(prefix="recurgen-"))
        warnings.warn(f"recurgen: cache directory {root} is not writable ({err.strerror or err}); "
                      f"using {_fallback_dir} for this process (set RECURGEN_CACHE_DIR)", stacklevel=5)
    return _fallback_dir


def path_for(name: str, key: str, root: Path) -> Path:
    """Where the module of entry `key` (spec `name`) lives under `root`; its `.entry` file is beside it."""
    return root / key[:2] / f"{name}_{key[:16]}.py"


def _read(path: Path) -> Any:
    """What was stored with the module at `path`, if the module's source hashes to the recorded digest."""
    try:
        with path.with_suffix(".entry").open("rb") as f:
            digest, meta = pickle.load(f)
        if digest == _digest(path.read_bytes()):
            return meta
    except Exception:  # a missing, truncated or foreign file: not an entry (the caller writes it again)
        pass
    return _MISS


_MISS = object()


def _find(key: str, root: Path) -> Path | None:
    """The module of entry `key` under `root`, whatever spec name it carries."""
    try:
        with os.scandir(root / key[:2]) as it:
            return next((Path(e.path) for e in it if e.name.endswith(f"_{key[:16]}.py")), None)
    except OSError:
        return None


def lookup(key: str) -> tuple[ModuleType, Any] | None:
    """The module stored under `key`, imported (once per process), and what was stored with it; None: no entry."""
    with _lock:
        if key in _loaded:
            return _loaded[key]
        for root in (config.cache_dir(), *((_fallback_dir,) if _fallback_dir is not None else ())):
            path = _find(key, root)
            if path is not None and (meta := _read(path)) is not _MISS:
                return _import(path.stem.rsplit("_", 1)[0], key, path, meta)
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(name: str, key: str, source: str, meta: Any = None, root: Path | None = None) -> Path:
    """Write the entry (idempotent, atomic): the source first, then the entry file, which makes it valid."""
    root = root if root is not None else _writable_root()
    path = path_for(name, key, root)
    data = source.encode("utf-8")
    try:
        if path.read_bytes() == data and _read(path) == meta:
            return path
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, data)
    _write_atomic(path.with_suffix(".entry"), pickle.dumps((_digest(data), meta), protocol=pickle.HIGHEST_PROTOCOL))
    return path


def store(name: str, key: str, source: str, meta: Any = None) -> tuple[ModuleType, Any]:
    """Write `source` (and `meta`) as the entry `key` and import it (once per process per key)."""
    with _lock:
        if key in _loaded:
            return _loaded[key]
        try:
            path = write(name, key, source, meta)
        except OSError as err:
            # The probe in `_writable_root` passed but the write did not (a read-only remount, a full disk, a
            # quota): compiling still works from a private directory, as for an unwritable root.
            path = write(name, key, source, meta, _private_root(config.cache_dir(), err))
        if path.read_bytes() != source.encode("utf-8"):  # lost a race with a tamperer: write again
            path = write(name, key, source, meta, path.parent.parent)
        return _import(name, key, path, meta)


def _import(name: str, key: str, path: Path, meta: Any) -> tuple[ModuleType, Any]:
    _compiled(path)
    module = import_file(f"recurgen_generated.{name}_{key[:16]}", path)
    _loaded[key] = (module, meta)
    return module, meta


def _compiled(path: Path) -> None:
    """Byte-compile the module once, even under PYTHONDONTWRITEBYTECODE: compiling it is a fifth of a warm load.

    The .pyc records a hash of the source and the import checks it, so a changed source is never run stale.
    """
    pyc = importlib.util.cache_from_source(str(path))
    if not os.path.exists(pyc):
        with contextlib.suppress(OSError, py_compile.PyCompileError):  # then the import compiles it in memory
            py_compile.compile(str(path), cfile=pyc, doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)


def import_file(name: str, path: Path) -> ModuleType:
    """Import a Python file as module `name` (Triton's `@jit` needs its source on disk, not `exec`)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import generated module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
