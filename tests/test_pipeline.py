"""recurgen.pipeline: the stages in order, composed once; a warm load runs none of them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from recurgen import cli, pipeline
from recurgen.source import Source, resolve

ROOT = Path(__file__).parent.parent


def _unique_spec() -> str:
    return (f'recurrence warmtest "run {uuid.uuid4().hex}"\n'
            "input q: [K], k: [K], v: [V], g: [K] logdecay\nstate S: [K, V]\n"
            "update S = exp(g) * S + outer(k, v)\noutput o: [V] = q @ S\n")


def test_the_stages_are_named_in_order() -> None:
    assert pipeline.STAGES == ("parse", "check", "analyse", "plan", "render", "tidy", "cache")
    for stage in pipeline.STAGES[:-1]:
        assert callable(getattr(pipeline, stage))


def test_generate_is_the_stages_composed() -> None:
    src = resolve("gla")
    spec, _ = pipeline.check(pipeline.parse(src))
    plans = pipeline.plan(pipeline.analyse(spec), src)
    assert plans.spec == spec
    assert plans.sha256 == src.sha256
    by_hand = pipeline.tidy(spec.name, pipeline.render(plans))
    assert by_hand == pipeline.generate(src, spec)


def test_the_cache_key_depends_on_what_determines_the_output(monkeypatch: pytest.MonkeyPatch) -> None:
    src = resolve("linear_attn")
    key = pipeline.cache_key(src)
    assert key == pipeline.cache_key(Source(src.text, src.path))
    assert key != pipeline.cache_key(Source(src.text + "\n", src.path))  # the spec text
    assert key != pipeline.cache_key(Source(src.text, "elsewhere.rec"))  # the header names the file
    assert key != pipeline.cache_key(src, {"normalize": 1.0})  # the variant
    monkeypatch.setattr(pipeline, "__version__", "999")
    assert key != pipeline.cache_key(src)  # recurgen's version
    monkeypatch.undo()
    monkeypatch.setattr(pipeline, "_code_digest", lambda: "an edited template")
    assert key != pipeline.cache_key(src)  # recurgen's code and templates


def test_the_code_digest_reads_every_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An edited template, also in a subfolder, is a cache miss, not a stale module."""
    (tmp_path / "chunk").mkdir()
    (tmp_path / "a.py.jinja").write_text("one")
    (tmp_path / "chunk" / "b.py.jinja").write_text("two")
    monkeypatch.setattr(pipeline, "templates_dir", lambda: tmp_path)
    digest = pipeline._code_digest.__wrapped__  # the uncached function
    before = digest()
    (tmp_path / "chunk" / "b.py.jinja").write_text("two, edited")
    assert digest() != before
    (tmp_path / "chunk" / "b.py.jinja").write_text("two")
    assert digest() == before


def test_a_warm_load_runs_no_stage(tmp_path: Path) -> None:
    """In a fresh process, with every stage made to fail, a spec compiled before loads from the cache."""
    spec_file = tmp_path / "warm.rec"
    spec_file.write_text(_unique_spec(), encoding="utf-8")
    env = {**os.environ, "RECURGEN_CACHE_DIR": str(tmp_path / "cache")}
    cold = textwrap.dedent(f"""
        import recurgen
        rec = recurgen.load({str(spec_file)!r})
        print(rec.module.__file__)
    """)
    warm = textwrap.dedent(f"""
        import sys
        from recurgen import pipeline

        def stage_ran(*args, **kwargs):
            raise AssertionError("a warm load ran a compiler stage")

        for stage in pipeline.STAGES[:-1]:
            setattr(pipeline, stage, stage_ran)
        import recurgen
        rec = recurgen.load({str(spec_file)!r})
        assert rec.spec.name == "warmtest", rec.spec.name
        assert callable(rec.module.fused_recurrent_warmtest)
        for heavy in ("sympy", "jinja2", "lark"):
            assert heavy not in sys.modules, heavy + " was imported by a warm load"
        print(rec.module.__file__)
    """)
    runs = [subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                           check=False, timeout=600) for code in (cold, warm)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert runs[0].stdout == runs[1].stdout  # the same cached file


def test_compile_analyses_once(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[str] = []
    analyse = pipeline.analyse

    def counted(spec):  # type: ignore[no-untyped-def]
        calls.append(spec.name)
        return analyse(spec)

    monkeypatch.setattr(pipeline, "analyse", counted)
    assert cli.main(["compile", "hgrn"]) == 0
    assert "def fused_recurrent_hgrn" in capsys.readouterr().out
    assert calls == ["hgrn"]
