"""Shared fixtures. Every test gets its own data directory and a clean `HYBRID_*` environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybrid import api
from hybrid.models import clear_model_cache, register_provider, unregister_provider
from hybrid.models.resilience import breaker
from tests.fakes import FakeModels

REPO = Path(__file__).resolve().parent.parent


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
