"""`recurgen compile -o` writes a module that works where recurgen is not importable: its header states what it
needs, its torch chunk path runs the chunk families it carries (it does not quietly walk tokens), and "auto" on the
torch backend chunks from the length measured to be faster (docs/cpu.md)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import recurgen
from recurgen.cli import main
from recurgen.runtime import chunk_torch
from recurgen.runtime.standalone import standalone
from tests.kernels.test_chunk_mode import DENSE

# A finder in front of every other: `recurgen` (and anything under it) cannot be imported in the child.
BLOCK = textwrap.dedent("""
    import sys
    class _NoRecurgen:
        def find_spec(self, name, path=None, target=None):
            if name == "recurgen" or name.startswith("recurgen."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None
    sys.meta_path.insert(0, _NoRecurgen())
""")

CHILD = BLOCK + textwrap.dedent("""
    import importlib.util, torch
    spec = importlib.util.spec_from_file_location("standalone_mod", sys.argv[1])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    try:
        import recurgen  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("recurgen was importable")
    assert "recurgen" not in sys.modules
    assert mod._chunk_torch_family is not None, "the torch chunk path would walk tokens"
    assert mod._chunk_mode("chunk", 40, "torch")
    name = mod.SPEC_NAME
    torch.manual_seed(0)
    B, T, H = 1, 40, 2
    xs = []
    for n, dims, _ in mod.INPUTS:
        x = torch.randn(B, T, H, *(3 for _ in dims))
        xs.append(-torch.rand_like(x) if n == "g" else x)
    ps = [torch.randn(H, *(3 for _ in dims)) for _, dims, _ in mod.PARAMS]
    args = dict(zip(mod.ARG_ORDER, xs + ps))
    fn = getattr(mod, f"fused_recurrent_{name}")
    walk, _ = fn(*[args[n] for n in mod.ARG_ORDER], backend="torch", mode="recurrent")
    chunk, _ = fn(*[args[n] for n in mod.ARG_ORDER], backend="torch", mode="chunk", chunk_size=16)
    torch.testing.assert_close(chunk, walk, rtol=1e-4, atol=1e-5)
    print("standalone ok", name, mod.TORCH_CHUNK_AUTO_MIN_T)
""")


def recurgen_imports(source: str) -> list[str]:
    """Every import of recurgen in a module, at any depth (in functions too), and in the chunk_torch it carries."""
    found = []
    trees = [ast.parse(source)]
    while trees:
        tree = trees.pop()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [a.name for a in node.names if a.name.split(".")[0] == "recurgen"]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "recurgen":
                found.append(node.module or "")
            elif isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_CHUNK_TORCH_SOURCE"
                                                      for t in node.targets) and isinstance(node.value, ast.Constant):
                trees.append(ast.parse(node.value.value))
    return found


def test_recurgen_imports_sees_nested_and_carried_imports() -> None:
    nested = "def f():\n    from recurgen.runtime import chunk_torch\n"
    assert recurgen_imports(nested) == ["recurgen.runtime"]
    assert recurgen_imports(f"_CHUNK_TORCH_SOURCE = {nested!r}\n") == ["recurgen.runtime"]
    assert recurgen_imports("import torch\n") == []


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("standalone")
    assert main(["compile", "gla", "-o", str(out)]) == 0
    return out / "gla.py"


def test_no_import_of_recurgen_anywhere(written: Path) -> None:
    text = written.read_text(encoding="utf-8")
    assert "_CHUNK_TORCH_SOURCE = r'''" in text
    assert recurgen_imports(text) == []


def test_header_states_the_requirements(written: Path) -> None:
    head = written.read_text(encoding="utf-8").split("from __future__", 1)[0]
    assert "Requires torch and triton" in head
    assert "numpy under TRITON_INTERPRET=1" in head


def test_imports_and_chunks_without_recurgen(written: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(written)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"standalone ok gla {chunk_torch.AUTO_MIN_T['matmul']}" in proc.stdout


def test_standalone_needs_the_hook() -> None:
    with pytest.raises(ValueError, match="_load_chunk_torch"):
        standalone("x = 1\n")


@pytest.mark.parametrize(("name", "family"), [("gla", "matmul"), ("rwkv7", "dplr")])
def test_auto_on_the_torch_backend_chunks_from_the_measured_length(name: str, family: str) -> None:
    module = recurgen.load(name).module
    assert chunk_torch.AUTO_MIN_T[family] == module.TORCH_CHUNK_AUTO_MIN_T
    calls: list[str] = []
    real = module._chunk_forward

    def spy(*args: object, **kwargs: object) -> object:
        calls.append("chunk")
        return real(*args, **kwargs)

    spec = recurgen.load(name).spec
    from recurgen.testing import random_inputs

    min_t = module.TORCH_CHUNK_AUTO_MIN_T
    fn = getattr(module, f"fused_recurrent_{name}")
    module._chunk_forward = spy
    try:
        for T, chunked in ((min_t - 1, False), (min_t, True)):
            xs = random_inputs(spec, 1, T, 1, {d.name: 2 for d in spec.dims if d.size is None}, torch.float32)
            calls.clear()
            fn(*xs.values(), backend="torch", mode="auto")
            assert bool(calls) == chunked, (T, calls)
    finally:
        module._chunk_forward = real


def test_a_spec_without_chunk_form_never_chunks() -> None:
    assert recurgen.compile(DENSE).module.TORCH_CHUNK_AUTO_MIN_T is None
