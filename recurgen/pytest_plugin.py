"""pytest plugin (registered as the `pytest11` entry point `recurgen`): `pytest --recurgen-spec my.rec`.

- For every `--recurgen-spec` (repeatable) it adds one test per kernel family — the very search
  `recurgen verify` runs (`recurgen.verify.verify_mode`), failing with the same report: the minimal
  counterexample and a replay command.
- The `recurgen_spec` fixture gives your own tests the compiled spec (`recurgen.Recurrence`), once per
  `--recurgen-spec`; without the option, tests that use it are skipped.

Nothing heavy is imported unless the option is given, so the plugin costs nothing in other test runs. On a
machine without a GPU it selects Triton's CPU interpreter (TRITON_INTERPRET=1) when the option is given, if
triton has not been imported yet (it reads the variable once, at import).
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("recurgen", "property tests of recurgen-generated kernels")
    group.addoption("--recurgen-spec", action="append", default=[], metavar="PATH",
                    help="a .rec file (or bundled spec name) to verify; repeatable")
    group.addoption("--recurgen-examples", type=int, default=10, metavar="N",
                    help="examples per kernel family (default 10)")
    group.addoption("--recurgen-modes", default="recurrent,chunk,torch,torch-chunk,step", metavar="LIST",
                    help="kernel families to check (default recurrent,chunk,torch,torch-chunk,step)")
    group.addoption("--recurgen-dtypes", default="fp32,fp16,bf16", metavar="LIST", help="dtypes to draw")
    group.addoption("--recurgen-seed", type=int, default=0, help="hypothesis seed (default 0)")
    group.addoption("--recurgen-max-length", type=int, default=17, metavar="T", help="longest sequence drawn")
    group.addoption("--recurgen-time-budget", type=float, default=600.0, metavar="SECONDS",
                    help="per kernel family: stop drawing new examples after this long")


def _specs(config: pytest.Config) -> list[str]:
    return list(config.getoption("--recurgen-spec") or [])


def pytest_configure(config: pytest.Config) -> None:
    if not _specs(config) or "TRITON_INTERPRET" in os.environ or "triton" in sys.modules:
        return
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "recurgen_spec" in metafunc.fixturenames:
        specs = _specs(metafunc.config)
        metafunc.parametrize("recurgen_spec", specs or [None], ids=specs or ["no-spec"], indirect=True)


@pytest.fixture
def recurgen_spec(request: pytest.FixtureRequest) -> Any:
    """The compiled spec given with `--recurgen-spec` (one test per spec); skipped without the option."""
    spec = getattr(request, "param", None)
    if spec is None:
        pytest.skip("no --recurgen-spec given")
    from recurgen.api import load

    return load(spec)


class RecurgenVerifyItem(pytest.Item):
    """One kernel family of one spec, searched by hypothesis exactly as `recurgen verify` does."""

    def __init__(self, *, spec: str, mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec, self.mode = spec, mode

    def runtest(self) -> None:
        import argparse

        from recurgen import config, verify
        from recurgen.api import load
        from recurgen.testing.interpreter import speed_up

        speed_up()  # bit-identical, several times faster on scans (no-op on a GPU)

        opt = self.config.getoption
        if not config.interpreting():
            import torch

            if not torch.cuda.is_available():
                pytest.skip("no GPU and TRITON_INTERPRET is not set (set it before triton is imported)")
        rec = load(self.spec)
        lengths = verify.lengths_up_to(opt("--recurgen-max-length"))
        dtypes = [d.strip() for d in opt("--recurgen-dtypes").split(",") if d.strip()]
        result = verify.verify_mode(rec, self.mode, examples=opt("--recurgen-examples"), dtypes=dtypes,
                                    lengths=lengths, seed=opt("--recurgen-seed"),
                                    time_budget=opt("--recurgen-time-budget"))
        if result.status == "not generated":
            pytest.skip(result.note)
        if result.status == "fail":
            args = argparse.Namespace(spec=self.spec, module=None)
            out = io.StringIO()
            verify.report(rec.name, [result], args, out)
            raise AssertionError(out.getvalue())

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, AssertionError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[str, int | None, str]:
        return self.spec, None, f"recurgen verify {self.spec} [{self.mode}]"


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    modes = [m.strip() for m in config.getoption("--recurgen-modes").split(",") if m.strip()]
    for spec in _specs(config):
        for mode in modes:
            items.append(RecurgenVerifyItem.from_parent(session, name=f"recurgen-verify[{spec}][{mode}]",
                                                        spec=spec, mode=mode))
