"""Shared test configuration: hypothesis profiles (a small derandomised one for CI) and golden updates."""

from __future__ import annotations

import os

# No GPU here or in CI: kernels run in Triton's CPU interpreter, which must be chosen before triton is
# first imported (so not with monkeypatch, which acts too late). A GPU machine can export 0.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
from hypothesis import HealthCheck, settings

from recurgen.testing.interpreter import speed_up

speed_up()  # bit-identical to the stock interpreter (tests/testing/test_interpreter.py), much faster on scans

settings.register_profile("ci", max_examples=15, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("large", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files instead of comparing")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # pyproject.toml declares `slow` as "not in the default run; select with -m slow": honour that here,
    # so `python -m pytest` (CI) stays fast and `-m slow` runs the large-budget variants.
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: select with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
