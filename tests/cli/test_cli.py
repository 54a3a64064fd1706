"""The `recurgen` command line: exit codes 0/1/2/3, diagnostics without tracebacks, explain and list."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import recurgen.analysis
from recurgen.cli import EXIT_INTERNAL, EXIT_OK, EXIT_SPEC, EXIT_USAGE, main
from recurgen.resources import bundled_spec_names

from ..analysis.golden import GOLDEN

SpecFile = Callable[..., str]  # writes a spec into tmp_path, returns its path

NOT_AFFINE = """recurrence bad
input k: [K], v: [V]
state S: [K, V]
update S = S * S + outer(k, v)
output o: [V] = k @ S
"""
SYNTAX = "recurrence broken\ninput k: [K]\nstate S: [K, V\n"
WARNS = """recurrence warns
input q: [K], k: [K], v: [V], f: []
state S: [K, V]
update S = sigmoid(f) * S + outer(k, v)
output o: [V] = q @ S
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err or "--debug" in argv
    return code, out, err


@pytest.fixture
def spec_file(tmp_path: Path) -> SpecFile:
    def write(text: str, name: str = "spec.rec") -> str:
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return str(p)
    return write


def test_check_bundled(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "gla", "kda")
    assert code == EXIT_OK
    assert out.splitlines() == ["specs/gla.rec: ok (DIAGONAL (row-wise))",
                                "specs/kda.rec: ok (HOUSEHOLDER (per-channel gate))"]
    assert err == ""


def test_check_prints_warnings_and_succeeds(capsys: pytest.CaptureFixture[str], spec_file: SpecFile) -> None:
    path = spec_file(WARNS)
    code, out, err = run(capsys, "check", path, "mlstm")
    assert code == EXIT_OK
    assert f"{path}:4:12: warning: the decay `sigmoid(f)`" in err
    assert "mlstm.rec" not in err  # its gates are stabilised: nothing to warn about
    assert "ok (C: SCALAR, n: SCALAR, m: RUNNING_MAX)" in out
    assert "ok (SCALAR, 1 warning)" in out


def test_check_spec_error(capsys: pytest.CaptureFixture[str], spec_file: SpecFile) -> None:
    path = spec_file(NOT_AFFINE)
    code, out, err = run(capsys, "check", path, "gla")
    assert code == EXIT_SPEC
    assert f"{path}:4:12: error: not affine in the state" in err
    assert "4 | update S = S * S + outer(k, v)" in err
    assert "  |            ^^^^^" in err
    assert "specs/gla.rec: ok" in out  # the other specs are still checked


def test_check_syntax_error(capsys: pytest.CaptureFixture[str], spec_file: SpecFile) -> None:
    code, _, err = run(capsys, "check", spec_file(SYNTAX))
    assert code == EXIT_SPEC
    assert "error:" in err


@pytest.mark.parametrize(("args", "words"), [
    (["check", "no_such_file.rec"], "no such file: `no_such_file.rec`"),
    (["check", "no_such_spec"], "no bundled spec of that name"),
    (["explain", "no_such_file.rec"], "no such file"),
    ([], "required"),
    (["bogus"], "invalid choice"),
    (["check"], "required"),
    (["check", "--frobnicate", "gla"], "unrecognized arguments"),
])
def test_usage_errors(capsys: pytest.CaptureFixture[str], args: list[str], words: str) -> None:
    code, _, err = run(capsys, *args)
    assert code == EXIT_USAGE
    assert words in err


def test_directory_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "check", str(tmp_path))
    assert code == EXIT_USAGE
    assert "is a directory" in err


def test_not_utf8_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    p = tmp_path / "latin1.rec"
    p.write_bytes("recurrence caf\xe9\n".encode("latin-1"))
    code, _, err = run(capsys, "check", str(p))
    assert code == EXIT_USAGE
    assert "not UTF-8" in err


@pytest.mark.parametrize("args", [["--help"], ["check", "--help"], ["explain", "--help"], ["list", "--help"],
                                  ["--version"]])
def test_help(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, out, _ = run(capsys, *args)
    assert code == EXIT_OK
    assert "recurgen" in out


def _boom(*_: object) -> None:
    raise RuntimeError("boom")


def test_internal_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recurgen.analysis, "analyze", _boom)
    code, _, err = run(capsys, "check", "gla")
    assert code == EXIT_INTERNAL
    assert "internal error in stage `analyze` while processing specs/gla.rec" in err
    assert "this is a recurgen bug" in err
    assert "RuntimeError: boom" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("how", ["flag", "env"])
def test_internal_error_traceback_with_debug(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                             how: str) -> None:
    monkeypatch.setattr(recurgen.analysis, "analyze", _boom)
    if how == "env":
        monkeypatch.setenv("RECURGEN_DEBUG", "1")
    code = main(["check", "--debug", "gla"] if how == "flag" else ["check", "gla"])
    err = capsys.readouterr().err
    assert code == EXIT_INTERNAL
    assert "Traceback" in err


def test_explain_matches_the_golden_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "gla")
    assert code == EXIT_OK
    assert out == (GOLDEN / "explain" / "gla.txt").read_text(encoding="utf-8")


def test_explain_a_file(capsys: pytest.CaptureFixture[str], spec_file: SpecFile) -> None:
    path = spec_file(WARNS, "mine.rec")
    code, out, _ = run(capsys, "explain", path)
    assert code == EXIT_OK
    assert out.startswith(f'spec warns ({path}, sha256 ')
    assert "transition    S: SCALAR, input-dependent" in out
    assert "warnings      line 4: the decay `sigmoid(f)` of `S` is not in log space" in out


def test_explain_a_bad_spec(capsys: pytest.CaptureFixture[str], spec_file: SpecFile) -> None:
    code, out, err = run(capsys, "explain", spec_file(NOT_AFFINE))
    assert code == EXIT_SPEC
    assert out == ""
    assert "not affine" in err


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list")
    assert code == EXIT_OK
    lines = out.splitlines()
    assert [ln.split()[0] for ln in lines] == list(bundled_spec_names())
    by_name = {ln.split()[0]: ln for ln in lines}
    assert "HOUSEHOLDER (α = 1) ×2 per token" in by_name["delta_product"]
    assert "C: SCALAR, n: SCALAR" in by_name["mlstm"]
    assert "Gated Linear Attention (Yang et al. 2024)" in by_name["gla"]


def test_python_dash_m(tmp_path: Path) -> None:
    bad = tmp_path / "bad.rec"
    bad.write_text(NOT_AFFINE, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "recurgen", "check", str(bad), "linear_attn"],
                          capture_output=True, text=True, encoding="utf-8", timeout=120, check=False)
    assert proc.returncode == EXIT_SPEC
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "error: not affine in the state" in proc.stderr
    assert "specs/linear_attn.rec: ok (IDENTITY)" in proc.stdout
