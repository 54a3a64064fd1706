"""The wheel ships the grammar, the bundled specs, the templates and every subpackage, so a plain
(non-editable) install works: editable installs read these files from the source tree and would hide a
missing `package-data` or `packages` entry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Build from a copy so the build's own leftovers (build/, *.egg-info) neither land in the work tree nor leak
# stale files from it into the wheel.
_IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                 ".hypothesis", ".ruff_cache", "tests", "benchmarks", "docs")


def _pip(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "--no-input", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"pip {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_IGNORE)
    _pip("wheel", "--no-deps", "-w", str(tmp / "dist"), str(src), cwd=tmp)
    (whl,) = (tmp / "dist").glob("recurgen-*.whl")
    return whl


def test_wheel_contains_grammar_specs_templates_and_packages(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "recurgen/_grammar/recurgen.lark" in names

    specs = {Path(n).stem for n in names if n.startswith("recurgen/_specs/") and n.endswith(".rec")}
    assert specs == {p.stem for p in (ROOT / "specs").glob("*.rec")}
    assert len(specs) >= 20

    assert "recurgen/_templates/__init__.py" in names
    templates = {p.name for p in (ROOT / "templates").glob("*.jinja")}
    missing_templates = sorted(t for t in templates if f"recurgen/_templates/{t}" not in names)
    assert not missing_templates, f"templates missing from the wheel: {missing_templates}"

    # Every module of the package, subpackages included (a subpackage left out of `packages` vanishes here).
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "recurgen").rglob("*.py")
               if "__pycache__" not in p.parts}
    missing = sorted(modules - names)
    assert not missing, f"modules missing from the wheel (add their packages to pyproject.toml): {missing}"


def test_wheel_installs_and_finds_its_resources(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel), cwd=tmp_path)
    script = (
        # A setuptools editable install resolves `recurgen.*` by name from the source tree, whatever the
        # path says: drop its finders so only the wheel's files can be imported.
        "import sys\n"
        "def ours(f): return not getattr(f, '__module__', '').startswith('__editable__')\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if ours(f)]\n"
        "sys.path_hooks[:] = [h for h in sys.path_hooks if ours(h)]\n"
        "sys.path_importer_cache.clear()\n"
        "import json, recurgen.resources as r\n"
        "from recurgen.frontend import load_spec\n"
        "names = r.bundled_spec_names()\n"
        "for n in names:\n"
        "    load_spec(n)\n"
        "print(json.dumps({'file': r.__file__, 'specs': list(names), 'grammar': len(r.grammar_text()),\n"
        "                  'templates': sorted(p.name for p in r.templates_dir().iterdir())}))\n"
    )
    # cwd outside the source tree, the installed copy first on the path.
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).resolve().is_relative_to(target.resolve())
    assert sorted(got["specs"]) == sorted(p.stem for p in (ROOT / "specs").glob("*.rec"))
    assert got["grammar"] > 0
    assert {p.name for p in (ROOT / "templates").glob("*.jinja")} <= set(got["templates"])


# --- the editable install: a folder named `recurgen` in the working directory must not shadow it ---------------

def test_editable_install_is_not_shadowed_by_a_recurgen_folder(tmp_path: Path) -> None:
    """Running from the clone's parent (`./recurgen` is the clone, no __init__.py) used to import an empty
    namespace package (`module 'recurgen' has no attribute 'load'`): the build backend puts the editable finder
    first (build_backend/recurgen_build.py)."""
    src = tmp_path / "recurgen"  # the clone, named as a user's clone is, and the cwd's shadowing folder below
    shutil.copytree(ROOT, src, ignore=_IGNORE)
    dist = tmp_path / "dist"
    build = (f"import sys; sys.path.insert(0, 'build_backend'); import recurgen_build; "
             f"print(recurgen_build.build_editable({str(dist)!r}))")
    proc = subprocess.run([sys.executable, "-c", build], cwd=src, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    site_dir = tmp_path / "site"
    zipfile.ZipFile(dist / proc.stdout.strip().splitlines()[-1]).extractall(site_dir)
    script = (
        "import site, sys, json\n"
        # the editable install under test, as site-packages would run it, then this environment's packages
        # (torch, ...) without running their .pth files (whose editable recurgen is this test's own tree)
        f"site.addsitedir({str(site_dir)!r})\n"
        f"sys.path += {[p for p in sys.path if p.endswith('site-packages')]!r}\n"
        "import recurgen\n"
        "print(json.dumps({'file': recurgen.__file__, 'load': hasattr(recurgen, 'load')}))\n"
    )
    # -S: no site-packages of its own, so only the finders added above exist; cwd holds the folder `recurgen`
    proc = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["file"] is not None, "imported the folder in the working directory as a namespace package"
    assert Path(got["file"]).resolve() == (src / "recurgen" / "__init__.py").resolve()
    assert got["load"]
