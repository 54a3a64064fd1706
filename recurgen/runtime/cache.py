"""cache: generated source -> imported module, through a content-addressed file cache.

Triton's `@jit` needs real source files, so modules are written to disk, then imported. Writes are
atomic (temp file + rename), so concurrent processes never see a partial module; a file whose
content does not hash to its name (truncated, tampered) is rewritten; an unwritable cache
directory degrades to a private temporary one with a warning.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from types import ModuleType

from .. import config
from ..codegen.render import GeneratedModule

_loaded: dict[str, ModuleType] = {}
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
                      f"using {_fallback_dir} for this process (set RECURGEN_CACHE_DIR)", stacklevel=4)
    return _fallback_dir


def _key(gen: GeneratedModule) -> str:
    """The source's hash and the Triton version: a Triton upgrade gets fresh files (and fresh JIT caches)."""
    import triton

    return _digest(f"{gen.fingerprint}\0triton {triton.__version__}".encode())


def path_for(gen: GeneratedModule, root: Path) -> Path:
    key = _key(gen)
    return root / key[:2] / f"{gen.spec_name}_{key[:16]}.py"


def write(gen: GeneratedModule, root: Path | None = None) -> Path:
    """Write the module's source under its content hash (idempotent, atomic)."""
    root = root if root is not None else _writable_root()
    path = path_for(gen, root)
    data = gen.source.encode("utf-8")
    try:
        if path.exists() and _digest(path.read_bytes()) == gen.fingerprint:
            return path
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
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
    return path


def load(gen: GeneratedModule) -> ModuleType:
    """Import a generated module (once per process per content hash)."""
    with _lock:
        if gen.fingerprint in _loaded:
            return _loaded[gen.fingerprint]
        try:
            path = write(gen)
        except OSError as err:
            # The probe in `_writable_root` passed but the write did not (a read-only remount, a full disk, a
            # quota): compiling still works from a private directory, as for an unwritable root.
            path = write(gen, _private_root(config.cache_dir(), err))
        if _digest(path.read_bytes()) != gen.fingerprint:  # lost a race with a tamperer: write again
            path = write(gen, path.parent.parent)
        module = import_file(f"recurgen_generated.{gen.spec_name}_{gen.fingerprint[:16]}", path)
        _loaded[gen.fingerprint] = module
        return module


def import_file(name: str, path: Path) -> ModuleType:
    """Import a Python file as module `name` (Triton's `@jit` needs its source on disk, not `exec`)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import generated module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
