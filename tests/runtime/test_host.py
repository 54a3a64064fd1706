"""recurgen/runtime/host: the host code every generated module shares, tested as the modules it is and as the
text render copies into generated modules (the contract between the two: `bound`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from recurgen import pipeline
from recurgen.frontend import load_source, resolve
from recurgen.runtime import host
from recurgen.runtime.host import api, bound, carried, chunk_token, common, running
from recurgen.runtime.standalone import standalone

HOST = Path(host.__file__).parent
# the tables of a spec with inputs q [K], v [V], a param w [K] and a state S [K, V]
TABLES = {
    "SPEC_NAME": "toy", "INPUTS": (("q", ("K",), False), ("v", ("V",), False)), "PARAMS": (("w", ("K",), False),),
    "STATES": (("S", ("K", "V"), False),), "OUTPUTS": (("o", ("V",), False),), "FIXED_DIMS": {},
    "OPTIONS": (("scale", lambda sz, H: sz["K"] ** -0.5),), "_DEFAULTS": {"w": 1.0}, "_INPUT_NAMES": {"q", "v"},
}


@pytest.fixture(scope="module")
def gla() -> str:
    src = resolve("gla")
    spec, _ = load_source(src)
    return pipeline.generate(src, spec).source


@pytest.fixture(scope="module")
def rwkv6() -> str:
    """A module with token kernels: the one kind that carries the `chunk_token` section."""
    src = resolve("rwkv6")
    spec, _ = load_source(src)
    return pipeline.generate(src, spec).source


@pytest.fixture(scope="module")
def mlstm() -> str:
    """A module with a running max: the one kind that carries the `chunk_running_max` section."""
    src = resolve("mlstm")
    spec, _ = load_source(src)
    return pipeline.generate(src, spec).source


# sections only some modules carry, and a spec whose module does (the rest: every module, gla's checked)
OWN_SPEC = {"chunk_token": "rwkv6", "chunk_running_max": "mlstm"}
SECTION_OF = {"chunk_token": "chunk_token", "running": "chunk_running_max"}  # host file -> its section


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (common, api):
        for name, value in TABLES.items():
            if hasattr(module, name):
                monkeypatch.setattr(module, name, value)


def _imports(tree: ast.AST) -> set[str]:
    """Every module an import anywhere in `tree` names (inside functions too)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            out.add(node.module or "")
    return out


def _top_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def test_every_section_is_copied_verbatim(gla: str, rwkv6: str, mlstm: str) -> None:
    secs = host.sections()
    assert set(secs) == {"constants", "helpers", "ops", "chunk_token", "chunk_running_max", "torch_ops",
                         "torch_forward", "chunk_torch_load", "chunk_torch", "chunk_torch_carried", "api"}
    for name, text in secs.items():
        assert "#: section" not in text
        if name != "chunk_torch_carried":
            module = {"gla": gla, "rwkv6": rwkv6, "mlstm": mlstm}[OWN_SPEC.get(name, "gla")]
            assert module.count(text + "\n") == 1, f"section {name} is not in the generated module as it is in host/"
    assert secs["chunk_token"] not in gla
    assert secs["chunk_running_max"] not in gla
    written = standalone(gla)
    assert secs["chunk_torch_load"] not in written
    assert "_CHUNK_TORCH_SOURCE = r'''" in written


def test_a_module_defines_every_name_the_host_code_takes_from_bound(gla: str, rwkv6: str, mlstm: str) -> None:
    taken: dict[str, set[str]] = {}
    for path in HOST.glob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module == "bound":
                taken.setdefault(path.stem, set()).update(a.name for a in node.names)
    assert set().union(*taken.values()) <= {n for n in vars(bound) if not n.startswith("__")} - {"Table"}
    for stem, names in taken.items():
        module = {"gla": gla, "rwkv6": rwkv6, "mlstm": mlstm}[OWN_SPEC.get(SECTION_OF.get(stem, ""), "gla")]
        missing = names - _top_level_names(ast.parse(module))
        assert not missing, f"the generated module does not define {sorted(missing)} (for host/{stem}.py)"


def test_the_host_modules_import_only_what_a_generated_module_imports(gla: str) -> None:
    """A host file's own imports are not copied: the module's import block must provide them (recurgen's chunk_torch
    only inside the loader that standalone() replaces)."""
    header = _imports(ast.parse(gla.split("\nSPEC_NAME = ", 1)[0]))
    for name in common, api, carried, chunk_token, running:
        assert _imports(ast.parse(Path(name.__file__).read_text(encoding="utf-8"))) - {"__future__"} <= header
    copied = "\n".join(t for n, t in host.sections().items() if n != "chunk_torch_load")
    assert not {m for m in _imports(ast.parse(copied)) if m.split(".")[0] == "recurgen"}


def test_sizes_reads_dims_and_names_a_wrong_argument(toy: None) -> None:
    x = {"q": torch.zeros(2, 5, 4, 3), "v": torch.zeros(2, 5, 2, 7), "w": torch.zeros(4, 3)}
    assert common._sizes(x) == (2, 5, 4, {"K": 3, "V": 7})  # v's 2 heads serve groups of 2
    with pytest.raises(ValueError, match=r"toy: `v` has H=3 heads but `q` has H=4"):
        common._sizes({**x, "v": torch.zeros(2, 5, 3, 7)})
    with pytest.raises(ValueError, match=r"`w` has K=2 but K=3 from `q`"):
        common._sizes({**x, "w": torch.zeros(4, 2)})


def test_seqlens_values_and_options(toy: None) -> None:
    assert common._seqlens_values(torch.tensor([0, 2, 5]), 5).dtype == torch.int32
    with pytest.raises(ValueError, match="must start at 0, never decrease, and end at T=5"):
        common._seqlens_values(torch.tensor([0, 3, 2, 5]), 5)
    assert common._options({}, {"K": 4}, 1) == {"scale": 0.5}
    with pytest.raises(ValueError, match="option `scale` is inf"):
        common._options({"scale": float("inf")}, {"K": 4}, 1)


def test_blocks_tile_the_split_dim_to_the_budget(toy: None) -> None:
    blocks, nv = common._blocks({"K": 128, "V": 128}, 8192, tiled="V")
    assert blocks == {"K": 128, "V": 64}
    assert nv == 2
    assert common._blocks({"K": 100, "V": 3}, None) == ({"K": 128, "V": 4}, 1)


def test_fill_defaults_shapes_an_omitted_param_like_the_given_tensors(toy: None) -> None:
    out = api._fill_defaults({"q": torch.zeros(1, 2, 4, 3), "v": torch.zeros(1, 2, 4, 5), "w": None})
    assert out["w"].shape == (4, 3)
    assert bool((out["w"] == 1.0).all())


def test_the_carried_loader_runs_chunk_torch_from_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    from recurgen.runtime import chunk_torch

    monkeypatch.setattr(carried, "_CHUNK_TORCH_SOURCE", Path(chunk_torch.__file__).read_text(encoding="utf-8"))
    module = carried._load_chunk_torch()
    assert module is not chunk_torch
    assert module.AUTO_MIN_T == chunk_torch.AUTO_MIN_T
