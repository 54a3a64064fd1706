"""The generated modules are tidy: no dead assignments, no line over the width, and ruff-clean under the
project's own rules (pyproject.toml), for every bundled spec.

Unit tests of the two clean-up stages (recurgen/codegen/prune.py, wrap.py) come first.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recurgen import pipeline
from recurgen.codegen.prune import prune_unused
from recurgen.codegen.wrap import wrap_long_lines
from recurgen.frontend import load_source, resolve
from recurgen.resources import bundled_spec_names

ROOT = Path(__file__).parent.parent.parent


def test_prune_drops_dead_pure_assignments_to_a_fixpoint() -> None:
    src = (
        "def k(x, p):\n"
        "    a = tl.load(x)\n"
        "    b = a * 2  # only c reads b, and nobody reads c\n"
        "    c = b + 1\n"
        "    i_v, i_bh = tl.program_id(0), tl.program_id(1)\n"
        "    tl.store(p + i_bh, a)\n"
    )
    out = prune_unused(src)
    assert out == "def k(x, p):\n    a = tl.load(x)\n    _, i_bh = tl.program_id(0), tl.program_id(1)\n" \
                  "    tl.store(p + i_bh, a)\n"


def test_prune_keeps_effects_loop_carries_and_augmented_names() -> None:
    src = (
        "def k(x, p, n):\n"
        "    r = tl.atomic_add(p, 1.0)  # an effect: kept though r is unused\n"
        "    s = _launch(x)\n"
        "    u = x.copy_(p)\n"
        "    acc = tl.zeros([4], dtype=tl.float32)\n"
        "    for i in range(n):\n"
        "        if i > 0:\n"
        "            acc += w\n"
        "            prev = w\n"
        "        w = acc * 2\n"
        "    if n > 1:\n"
        "        dead = n * 2\n"
        "    tl.store(p, acc)\n"
    )
    want = src.replace("            prev = w\n", "").replace("        dead = n * 2\n", "        pass\n")
    assert prune_unused(src) == want
    closure = "def f():\n    x = 0\n    def g():\n        nonlocal x\n        x = 1\n    g()\n    return x\n"
    assert prune_unused(closure) == closure


def test_wrap_folds_inside_brackets_and_keeps_the_code() -> None:
    line = ("        b_S = tl.load(ck_S + ((i_slot + i_c) * H + i_h) * K * V + o_K[:, None] * V + o_V[None, :], "
            "mask=m_K[:, None] & m_V[None, :], other=0.0).to(tl.float32)  # the checkpoint")
    src = f"def f():\n{line}\n"
    out = wrap_long_lines(src, width=100)
    assert max(len(ln) for ln in out.splitlines()) <= 100
    assert ast.dump(ast.parse(out)) == ast.dump(ast.parse(src))
    assert "[:,\n" not in out, "no break inside a subscript while another break fits"
    long_comment = "# " + " ".join(["word"] * 60)
    folded = wrap_long_lines(long_comment + "\n", width=80).splitlines()
    assert all(ln.startswith("#") and len(ln) <= 80 for ln in folded)
    assert " ".join(ln.lstrip("# ") for ln in folded) == " ".join(["word"] * 60)


def _render(name: str) -> str:
    src = resolve(name)
    spec, _ = load_source(src)
    return pipeline.generate(src, spec).source


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    for name in bundled_spec_names():
        (out / f"{name}.py").write_text(_render(name), encoding="utf-8")
    return out


def test_every_bundled_module_is_ruff_clean(generated: Path) -> None:
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    # the project's rules (pyproject.toml), which exclude tests/golden: checked here on fresh renders instead
    res = subprocess.run([ruff, "check", "--config", str(ROOT / "pyproject.toml"), "--no-cache", str(generated)],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_bundled_module_fits_the_width(generated: Path) -> None:
    for path in sorted(generated.iterdir()):
        long = [i for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if len(ln) > 120]
        assert not long, f"{path.name}: lines {long[:5]} are over 120 characters"


FOLDABLE = re.compile(r"(?<![\w.])(?:\* 1|\+ 0|0 \*|1 \*|\* 0)(?![\w.])|(?<![\w.])0\.0 \* |\* 0\.0(?![\w.])")


def test_no_unfolded_constants_in_printed_arithmetic(generated: Path) -> None:
    """Index arithmetic (`row * 1 + 0`) and complex products with a real factor (`a * b - 0.0 * c`) are folded."""
    for path in sorted(generated.iterdir()):
        code = [ln for ln in path.read_text(encoding="utf-8").splitlines()
                if not ln.lstrip().startswith("#") and "_CHUNK_TORCH_SOURCE" not in ln]
        bad = [ln.strip() for ln in code if "tl.load(" in ln or "tl.store(" in ln or " - 0.0 * " in ln
               or " + 0.0 * " in ln]
        bad = [ln for ln in bad if FOLDABLE.search(ln.split(".to(")[0])]
        assert not bad, f"{path.name}: {bad[:3]}"
