"""`python -m benchmarks.gpu --dry-run`: the GPU command's whole code path (compile, oracle checks of every family,
varlen and decode, timing, fla alongside when installed, the report) under the interpreter at tiny shapes, so the
real run is ready for the first GPU. One spec with both kernel families keeps it to seconds of CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks import gpu
from recurgen.testing.checks import Comparison, Outcome

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_compiles_checks_and_times(tmp_path: Path) -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--dry-run", "--specs", "hgrn", "--out",
                          str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    md = (tmp_path / "gpu-dry-run.md").read_text()
    assert not (tmp_path / "gpu.md").exists()  # a dry run never overwrites a GPU's results
    rows = [line for line in md.splitlines() if line.startswith("| `hgrn` |")]
    checks = [r for r in rows if "| fp32 |" in r]
    assert {r.split("|")[2].strip() for r in checks} == {"recurrent", "chunk"}
    for row in checks:  # forward, final state, backward, varlen measured; decode on the recurrent row
        cells = [c.strip() for c in row.split("|")[4:9]]
        assert all(float(c) < 1e-4 for c in cells[:4]), row
        assert (cells[4] != "–") == ("recurrent" in row), row
    sections = md.split("\n### ")[1:]
    assert [s.splitlines()[0] for s in sections] == [str(shape) for shape in gpu.DRY.shapes]
    for section in sections:  # recurgen's fwd and fwd+bwd timed in both families at every shape
        times = [line for line in section.splitlines() if line.startswith("| `hgrn` |")]
        assert [r.split("|")[2].strip() for r in times] == ["recurrent", "chunk"]
        for row in times:
            assert all(float(c) > 0 for c in [c.strip() for c in row.split("|")[3:5]]), row


def test_a_failed_comparison_is_reported_as_a_failure() -> None:
    ok = Outcome([Comparison("output o", 1e-7, True)])
    bad = Outcome([Comparison("gradient dx", 0.5, False, "gradient dx: 5.0e-01 > 1e-5")])
    assert gpu._worst([ok]) == "1.0e-07"
    assert gpu._worst([ok, bad]).startswith("**FAIL** 5.0e-01: gradient dx")
    assert gpu._worst([Outcome(skipped="the exact result overflows fp16")]).startswith("skipped")
    assert gpu._worst([]) == "–"
