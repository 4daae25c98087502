"""Telemetry off in one place: what `disable_telemetry` sets, what it leaves to the user, and who calls it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hybrid.privacy import TELEMETRY_OFF, TRACING_VARIABLES, disable_telemetry
from tests.conftest import REPO

pytestmark = pytest.mark.unit

OURS = (*TELEMETRY_OFF, *TRACING_VARIABLES)


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No telemetry switch set; whatever the test sets is restored afterwards."""
    for name in OURS:
        monkeypatch.delenv(name, raising=False)
    for name in OURS:  # so that monkeypatch restores what disable_telemetry sets
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return monkeypatch


def test_everything_is_switched_off_when_nobody_chose(bare: pytest.MonkeyPatch) -> None:
    applied = disable_telemetry()

    assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"
    assert os.environ["ANONYMIZED_TELEMETRY"] == "False"
    assert os.environ["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert os.environ["LANGGRAPH_CLI_NO_ANALYTICS"] == "1"
    assert os.environ["LANGSMITH_TRACING"] == "false"
    assert set(applied) == set(TELEMETRY_OFF) | {"LANGSMITH_TRACING"}
    assert disable_telemetry() == {}  # once is enough


def test_what_the_user_set_wins(bare: pytest.MonkeyPatch) -> None:
    bare.setenv("ORT_DISABLE_TELEMETRY", "0")
    bare.setenv("LANGCHAIN_TRACING_V2", "true")

    applied = disable_telemetry()

    assert os.environ["ORT_DISABLE_TELEMETRY"] == "0"
    assert "ORT_DISABLE_TELEMETRY" not in applied
    # Any spelling of LangSmith's switch is a choice: no other spelling is set beside it.
    assert not {"LANGSMITH_TRACING", "LANGSMITH_TRACING_V2"} & set(applied)


def test_langsmith_tracing_turned_on_later_still_traces(bare: pytest.MonkeyPatch) -> None:
    from langsmith import utils

    disable_telemetry()
    utils.get_env_var.cache_clear()
    assert not utils.tracing_is_enabled()
    bare.setenv("LANGSMITH_TRACING_V2", "true")
    utils.get_env_var.cache_clear()
    assert utils.tracing_is_enabled()
    utils.get_env_var.cache_clear()


def _environment_after(code: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OURS} | {"PYTHONPATH": str(REPO)}
    script = f"{code}\nimport json, os\nprint(json.dumps({{k: os.environ.get(k) for k in {OURS!r}}}))"
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return {
        k: v for k, v in __import__("json").loads(result.stdout.splitlines()[-1]).items() if v is not None
    }


def test_importing_the_library_changes_nothing_and_the_langgraph_entry_switches_it_off() -> None:
    assert (
        _environment_after("import hybrid.api, hybrid.server, hybrid.cli, retrieval.store, graphs.graph")
        == {}
    )
    assert _environment_after("import hybrid.langgraph_app")["ORT_DISABLE_TELEMETRY"] == "1"
    assert _environment_after("from hybrid.server import create_app; create_app()")["HF_HUB_OFFLINE"] == "1"


def test_the_web_app_launcher_never_asks_the_internet_for_our_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streamlit import net_util
    from streamlit.web import cli as streamlit_cli

    from ui import launch

    ran: list[list[str]] = []
    monkeypatch.setattr(streamlit_cli, "main", lambda: ran.append(list(sys.argv)))
    monkeypatch.setattr(net_util, "_external_ip", None)
    monkeypatch.setattr(sys, "argv", ["launch"])
    monkeypatch.setattr(net_util, "_make_blocking_http_get", lambda *a, **k: pytest.fail("HTTP request made"))

    launch.main(["run", "ui/app.py"])

    assert ran == [["streamlit", "run", "ui/app.py"]]
    assert net_util.get_external_ip() in ("", None)
