"""The pytest plugin (`pytest --recurgen-spec my.rec`) and the example test file of docs/property-testing.md,
each run as a user would run them: pytest in a subprocess, from outside the project directory (where only the installed
package's entry point can load the plugin)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import recurgen

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SPEC = ROOT / "examples" / "my_gated_delta.rec"
EXAMPLE_TESTS = ROOT / "examples" / "test_my_gated_delta.py"


def pytest_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET", "1")}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600, check=False)


USER_TEST = '''
def test_users_own_check(recurgen_spec):
    assert recurgen_spec.name == "my_gated_delta"
    assert [t.name for t in recurgen_spec.spec.params] == ["u"]
'''


@pytest.mark.interpret
def test_recurgen_spec_option_runs_the_verify_checks(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TEST)
    proc = pytest_run(tmp_path, "--recurgen-spec", str(EXAMPLE_SPEC), "--recurgen-examples", "1",
                      "--recurgen-max-length", "2", "--recurgen-dtypes", "fp32", "test_user.py")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # the user's test, one item per kernel family; chunk is skipped with its reason when the spec has no chunk
    # form (this one's per-channel gate acts after the reflection: diagonal-plus-rank-1 kernels would cover it)
    if recurgen.load(EXAMPLE_SPEC).chunk_reason is None:  # one item each: the user's test, 5 kernel families
        assert "6 passed" in out
    else:
        assert "4 passed, 2 skipped" in out
        assert "not generated" in out


def test_recurgen_spec_fixture_skips_without_the_option(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TEST)
    proc = pytest_run(tmp_path, "test_user.py")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 skipped" in out
    assert "no --recurgen-spec given" in out


@pytest.mark.interpret
def test_documented_example_test_file_passes(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "property-testing.md").read_text()
    assert EXAMPLE_TESTS.read_text().strip() in doc, "the documented example differs from examples/"
    proc = pytest_run(tmp_path, str(EXAMPLE_TESTS))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "3 passed" in out
