"""The fair fla baseline: fla imported with an H100's device properties takes the H100's tile lists; its autotune
choices are bracketed by the smallest- and largest-tile policies; programs per launch are fitted exactly or flagged.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import triton

from benchmarks import fair, peers

ROOT = Path(__file__).resolve().parents[2]


def test_policies_pick_the_smallest_and_largest_tiles() -> None:
    configs = [triton.Config({"BK": 32, "BV": 64}, num_warps=4), triton.Config({"BK": 16, "BV": 32}, num_warps=2),
               triton.Config({"BK": 64, "BV": 64}, num_warps=8), triton.Config({"BK": 16, "BV": 32}, num_warps=8)]
    assert peers.tile(configs[0]) == 32 * 64
    assert peers.POLICIES["smallest"](configs) is configs[1]  # ties: the first in fla's order
    assert peers.POLICIES["largest"](configs) is configs[2]
    assert peers.tile(triton.Config({}, num_warps=4)) == 1  # warps only: one tile


def test_programs_per_launch_fitted_exactly_or_flagged() -> None:
    # launch 1: 2 programs per chunk of 64 tokens per (b, h); launch 2: one per (b, h) (a state pass)
    def grids(b: int, t: int, h: int, bad: bool = False) -> dict[str, list[tuple[str, int]]]:
        extra = 1 if bad and t == 192 else 0
        return {"fwd_train": [("intra", b * h * 2 * t // 64 + extra), ("state", b * h)]}

    ts = (64, 128, 192)
    shapes = [(1, t, 1) for t in ts] + [(1, 64, 2), (2, 64, 1)]
    good = fair.fit_grids({s: grids(*s) for s in shapes}, ts)["fwd_train"]
    assert [(g.kernel, g.a, g.b, g.exact) for g in good] == [("intra", 0, Fraction(1, 32), True),
                                                             ("state", 1, 0, True)]
    assert [g.at(8, 4096, 16) for g in good] == [16384, 128]
    bad = fair.fit_grids({s: grids(*s, bad=True) for s in shapes}, ts)["fwd_train"]
    assert [g.exact for g in bad] == [False, True]


@pytest.mark.skipif(importlib.util.find_spec("fla") is None, reason="flash-linear-attention is not installed")
def test_fla_takes_the_h100_tile_lists() -> None:
    # a fresh process: fla fixes its tile lists at import, and another test may have imported it plainly
    code = ("from benchmarks import peers; peers.import_fla(); import fla.ops.common.chunk_h as h, "
            "fla.ops.gla.chunk as g, fla.ops.common.chunk_o as o, torch; print(peers.device_seen()); "
            "print(h.BKV_LIST, g.BK_LIST, g.BV_LIST, o.BKV_LIST, torch.cuda.device_count())")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "TRITON_INTERPRET": "1"},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    seen, lists = run.stdout.strip().splitlines()[-2:]
    assert seen == ("{'is_nvidia': True, 'is_hopper': True, 'tf32': True, 'smem >= hopper': True, "
                    "'smem >= ampere': True, 'SMs': 132}")
    assert lists == "[32, 64] [32, 64] [64, 128] [64, 128] 0"  # the H100's lists; torch still sees no GPU
