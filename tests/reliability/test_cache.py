"""The compile cache under concurrency and damage (extends tests/codegen/test_generated_module.py).

Eight processes loading one spec at once leave exactly one valid entry and no temporary files; a damaged
entry (module or entry file) is detected and rewritten before import; a cache that cannot be written
degrades to a private temporary directory with a warning.
"""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import uuid
from pathlib import Path

import pytest
import torch

import recurgen
from recurgen import ir, pipeline
from recurgen.runtime import cache
from recurgen.source import Source

PROCESSES = 8


def _unique_spec() -> str:
    """A spec no process has compiled before (a fresh description gives a fresh content hash)."""
    return (f'recurrence cachetest "run {uuid.uuid4().hex}"\n'
            "input q: [K], k: [K], v: [V], g: [K] logdecay\nstate S: [K, V]\n"
            "update S = exp(g) * S + outer(k, v)\noutput o: [V] = q @ S\n")


def _generated(text: str, path: str = "cachetest.rec") -> tuple[ir.Spec, str, str]:
    """(spec, cache key, generated source) of `text`."""
    src = Source(text, path)
    spec, _ = pipeline.front(src)
    return spec, pipeline.cache_key(src), pipeline.generate(src, spec).source


def _load_in_child(text: str, cache_dir: str, barrier: object, results: object) -> None:
    os.environ["RECURGEN_CACHE_DIR"] = cache_dir
    try:
        barrier.wait(timeout=60)  # type: ignore[attr-defined]  # all eight race from here
        rec = recurgen.compile(text)
        # No torch ops here: a forked child must not enter the OpenMP pool its parent may have started.
        results.put((os.getpid(), rec.module.__file__, rec.module.SPEC_SHA256))  # type: ignore[attr-defined]
    except BaseException as err:  # report, so the parent fails with the reason rather than a timeout
        results.put((os.getpid(), None, repr(err)))  # type: ignore[attr-defined]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_concurrent_loads_leave_one_valid_module(tmp_path: Path) -> None:
    # fork: the children inherit the imported torch/triton/recurgen, so the race is over the cache, not over
    # eight interpreters starting up on a 2-core machine.
    ctx = mp.get_context("fork")
    text = _unique_spec()
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_load_in_child, args=(text, str(tmp_path), barrier, results))
             for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    errors = [r for r in got if r[1] is None]
    assert not errors, errors
    paths = {r[1] for r in got}
    assert len(paths) == 1, f"processes imported different files: {paths}"
    assert len({r[2] for r in got}) == 1
    files = [p for p in _files(tmp_path) if p.name != "grammar.lark"]  # the parser's tables may be stored here too
    assert sorted(p.suffix for p in files) == [".entry", ".py", ".pyc"], f"expected one entry, got {files}"
    spec, key, source = _generated(text, "<spec>")  # what `recurgen.compile(text)` calls the file
    module = cache.path_for(spec.name, key, tmp_path)
    assert module in files
    assert module.read_text(encoding="utf-8") == source
    rec = recurgen.compile(text)  # and the module the children raced for works
    q = torch.ones(1, 2, 1, 3)
    out, _ = rec(q, q, q, -q, backend="torch")
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("damage", ["truncate", "empty", "tamper", "garbage", "entry file", "no entry file"])
def test_damaged_entry_is_rewritten_before_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  damage: str) -> None:
    monkeypatch.setenv("RECURGEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cache, "_loaded", {})
    text = _unique_spec()
    spec, key, source = _generated(text)
    path = cache.write(spec.name, key, source, spec)
    entry = path.with_suffix(".entry")
    damaged = {
        "truncate": source[: len(source) // 3],
        "empty": "",
        # valid Python that would run on import: it must never be imported
        "tamper": source + "\nraise RuntimeError('PWNED: a tampered cache entry was imported')\n",
        "garbage": "\x00\xff not python",
    }.get(damage)
    if damaged is not None:
        path.write_bytes(damaged.encode("utf-8", "surrogateescape"))
    elif damage == "entry file":
        entry.write_bytes(entry.read_bytes()[:10])
    else:
        entry.unlink()
    assert cache.lookup(key) is None, "a damaged entry must be a miss"
    rec = recurgen.compile(text, "cachetest.rec")  # the pipeline: a miss, so it renders and writes again
    assert path.read_text(encoding="utf-8") == source
    assert rec.module.__file__ == str(path)
    assert rec.spec == spec
    assert callable(rec.module.fused_recurrent_cachetest)


def test_cache_root_that_is_a_file_degrades_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole load, not only the probe: a warning, a module from a private directory, no crash."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("RECURGEN_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(cache, "_fallback_dir", None)
    monkeypatch.setattr(cache, "_loaded", {})
    spec, key, source = _generated(_unique_spec())
    with pytest.warns(UserWarning, match="not writable"):
        module, _ = cache.store(spec.name, key, source, spec)
    assert not Path(module.__file__).is_relative_to(blocker)
    assert Path(module.__file__).read_text(encoding="utf-8") == source


def test_missing_cache_directory_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "does" / "not" / "exist"
    monkeypatch.setenv("RECURGEN_CACHE_DIR", str(root))
    monkeypatch.setattr(cache, "_loaded", {})
    spec, key, source = _generated(_unique_spec())
    module, _ = cache.store(spec.name, key, source, spec)
    assert Path(module.__file__).is_relative_to(root)


def test_write_failing_after_the_probe_degrades_with_a_warning(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only file system seen by the write (the probe passed: e.g. a remount in between).

    Simulated by failing the atomic rename into the cache root, because chmod cannot make a directory
    read-only for root, which is who runs CI here.
    """
    root = tmp_path / "cache"
    monkeypatch.setenv("RECURGEN_CACHE_DIR", str(root))
    monkeypatch.setattr(cache, "_fallback_dir", None)
    monkeypatch.setattr(cache, "_loaded", {})
    real_replace = os.replace

    def read_only(src: str, dst: str | Path) -> None:
        if Path(dst).is_relative_to(root):
            raise OSError(errno.EROFS, "Read-only file system")
        real_replace(src, dst)

    monkeypatch.setattr(cache.os, "replace", read_only)
    spec, key, source = _generated(_unique_spec())
    with pytest.warns(UserWarning, match="Read-only file system"):
        module, _ = cache.store(spec.name, key, source, spec)
    assert Path(module.__file__).read_text(encoding="utf-8") == source
    assert not any(p.suffix == ".py" for p in _files(root)), "nothing may be left in the read-only root"
    assert not [p for p in _files(root) if p.name.endswith(".tmp")], "the failed write left a temporary file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_cache_directory_degrades_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    monkeypatch.setenv("RECURGEN_CACHE_DIR", str(root))
    monkeypatch.setattr(cache, "_fallback_dir", None)
    monkeypatch.setattr(cache, "_loaded", {})
    spec, key, source = _generated(_unique_spec())
    try:
        with pytest.warns(UserWarning, match="not writable"):
            module, _ = cache.store(spec.name, key, source, spec)
        assert not Path(module.__file__).is_relative_to(root)
    finally:
        root.chmod(0o755)
