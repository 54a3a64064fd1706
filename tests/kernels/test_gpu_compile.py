"""Every generated kernel builds for sm_80 and sm_90 without a GPU, and some configuration the autotuner
may pick compiles without register spills at the default block sizes (head dims K = V = 128).

Runs `recurgen inspect` in a subprocess: compiling needs Triton without the interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recurgen.resources import bundled_spec_names

ROOT = Path(__file__).parent.parent.parent
# Typical sizes: K = V = 128 head dims (the default of every free dim); Mamba's state N = 16; channels
# per head for the elementwise and complex specs 64.
DIMS = ("--dim", "N=16", "--dim", "D=64", "--dim", "E=64", "--dim", "P=64")


@pytest.fixture(scope="module")
def table() -> list[list[str]]:
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    res = subprocess.run([sys.executable, "-m", "recurgen", "inspect", *bundled_spec_names(), "--arch", "sm_80",
                          "--arch", "sm_90", *DIMS], cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                         timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    return [[c.strip() for c in line.strip("|").split("|")] for line in res.stdout.splitlines()
            if line.startswith("| ") and "_kernel" in line]


def test_every_kernel_compiles_for_both_archs(table: list[list[str]]) -> None:
    seen = {(r[0], r[1]) for r in table}
    for name in bundled_spec_names():
        for kind in ("fwd", "bwd"):
            for arch in ("sm_80", "sm_90"):
                assert (f"{name}_fused_recurrent_{kind}_kernel", arch) in seen, (name, kind, arch)


def test_no_register_spills(table: list[list[str]]) -> None:
    spilled = [r for r in table if r[5] != "0" or r[6] != "0"]
    assert not spilled, "kernels that spill in every warp configuration:\n" + "\n".join(" | ".join(r) for r in spilled)
