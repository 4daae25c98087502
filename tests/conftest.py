"""Shared fixtures, and the test tiers. Every test gets its own data directory and a clean
`HYBRID_*` environment, and carries exactly one tier marker (docs/testing.md says which is which)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# Before anything loads OpenMP (scikit-learn, torch, OpenBLAS): one thread each, in this process and
# the ones it starts. OpenMP threads spin while they wait for a busy core: with both cores busy, a
# 0.5 s scikit-learn fit took over 30 s, and test_routing_model 44-67 s instead of 16 s. Results
# do not depend on the thread count; set OMP_NUM_THREADS yourself to try another.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

from hybrid import api
from hybrid.models import clear_model_cache, register_provider, unregister_provider
from hybrid.models.resilience import breaker
from tests.fakes import FakeModels

REPO = Path(__file__).resolve().parent.parent

TIER_TIMEOUTS_S = {
    "unit": 30,  # fakes only: a hang shows in seconds, not after the e2e allowance
    "integration": 300,  # SQLite, embedded Chroma, MiniLM: the first use loads MiniLM
    "e2e": 900,  # real models, servers and a browser, started by the test itself
}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: every collected test is checked
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a test without exactly one tier; give each test its tier's timeout.

    A timeout asked for on the command line (`--timeout`, `PYTEST_TIMEOUT`) applies to every test
    instead, so `--timeout=0` still turns timeouts off when debugging."""
    problems = []
    for item in items:
        tiers = sorted({mark.name for mark in item.iter_markers() if mark.name in TIER_TIMEOUTS_S})
        if len(tiers) != 1:
            found = f"has {', '.join(tiers)}" if tiers else "has none"
            problems.append(f"  {item.nodeid}: {found}")
    if problems:
        raise pytest.UsageError(
            "every test needs exactly one tier marker (unit, integration or e2e; see docs/testing.md):\n"
            + "\n".join(problems)
        )
    if config.getoption("timeout", None) is not None or os.environ.get("PYTEST_TIMEOUT"):
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:  # a test's own timeout marker wins
            (tier,) = {mark.name for mark in item.iter_markers() if mark.name in TIER_TIMEOUTS_S}
            item.add_marker(pytest.mark.timeout(TIER_TIMEOUTS_S[tier]))


def pytest_configure(config: pytest.Config) -> None:
    """The test run is an entry point too: telemetry off, for it and every server it starts."""
    from hybrid.privacy import disable_telemetry

    disable_telemetry()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the data directory at a temp dir and drop any HYBRID_* setting from the outside."""
    for key in list(os.environ):
        if key.startswith("HYBRID_"):
            monkeypatch.delenv(key)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("HYBRID_DATA_DIR", str(data_dir))
    monkeypatch.setenv("HYBRID_RETRY_BACKOFF_S", "0.01")  # retries are tested; their waiting is not
    monkeypatch.setenv("HYBRID_CACHE", "off")  # tests repeat questions on purpose; the cache has its own
    api.reset()
    clear_model_cache()
    breaker.reset()
    yield data_dir
    api.reset()
    clear_model_cache()
    breaker.reset()


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeModels]:
    """A `fake` provider; the small tier is `fake:small`, the large tier `fake:large`."""
    models = FakeModels()
    register_provider("fake", models.build, is_local=True)
    monkeypatch.setenv("HYBRID_SMALL_MODEL", "fake:small")
    monkeypatch.setenv("HYBRID_LARGE_MODEL", "fake:large")
    yield models
    unregister_provider("fake")


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """One real PostgreSQL server for the session."""
    from tests.servers import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres(postgres_admin_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh PostgreSQL database, configured as the checkpoint/review/audit store."""
    from tests.servers import fresh_database

    url = fresh_database(postgres_admin_url)
    monkeypatch.setenv("HYBRID_CHECKPOINT_URL", url)
    api.reset()
    return url
