"""The `hybrid` command, in-process, with fake models."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hybrid.cli import LANGGRAPH_AUTH, LANGGRAPH_GRAPHS, cli
from tests.conftest import REPO
from tests.fakes import FakeModels


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.integration
def test_ask_prints_the_answer_and_its_route(fakes: FakeModels) -> None:
    fakes.set("small", "The capital of France is Paris.")
    code, out, _ = run("ask", "What is the capital of France?")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "The capital of France is Paris."
    assert lines[1].startswith("route: small model fake:small answered, verifier 1.00 >= 0.60")


@pytest.mark.integration
def test_ask_json_prints_the_whole_answer(fakes: FakeModels) -> None:
    fakes.set("small", "unused")
    fakes.set("large", "Paris.")
    code, out, _ = run("ask", "What is the capital of France?", "--json", "--route", "large")
    assert code == 0
    record = json.loads(out)
    assert record["status"] == "answered"
    assert record["answered_by"] == "fake:large"
    assert record["route"]["forced"] is True
    assert {"thread_id", "drafts", "verifications", "timings_ms", "usage", "cost"} <= set(record)


@pytest.mark.unit
def test_ask_reports_bad_input_and_bad_settings_clearly(fakes: FakeModels) -> None:
    fakes.set("small", "unused")
    code, _, err = run("ask", "   ")
    assert (code, err.strip()) == (1, "error: the question is empty")
    code, _, err = run("ask", "Hi?", "--profile", "nope")
    assert code == 1
    assert "unknown profile 'nope'" in err
    code, _, err = run("ask", "Hi?", "--set", "route_threshold=2")
    assert code == 1
    assert "route_threshold" in err


@pytest.mark.integration
def test_review_commands_resolve_a_pending_case(fakes: FakeModels) -> None:
    fakes.set("small", "A draft answer.")
    code, out, _ = run("ask", "Tell me about Mars.", "--route", "human", "--json")
    thread = json.loads(out)["thread_id"]

    code, out, _ = run("review", "list")
    assert thread in out
    assert "route forced to human review" in out
    code, out, _ = run("review", "list", "--json")
    assert [case["thread_id"] for case in json.loads(out)] == [thread]

    code, out, _ = run(
        "review", "edit", thread, "--answer", "Mars is the fourth planet.", "--reviewer", "ana"
    )
    assert (code, out.strip()) == (0, f"{thread}: answered: Mars is the fourth planet.")

    code, _, err = run("review", "approve", thread)
    assert code == 1
    assert "already resolved (edit) by ana" in err
    code, out, _ = run("review", "list")
    assert out.strip() == "No pending reviews."


@pytest.mark.integration
def test_ingest_reports_failures_with_exit_code(tmp_path: Path) -> None:
    (tmp_path / "note.md").write_text("# Note\n\nHybrid AI routes queries.")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    code, out, _ = run("ingest", str(tmp_path / "note.md"), str(tmp_path / "bad.txt"), "--json")
    report = json.loads(out)
    assert code == 1
    assert report["chunks_added"] == 1
    assert list(report["failed"]) == [str(tmp_path / "bad.txt")]


@pytest.mark.unit
def test_langgraph_json_serves_the_same_graph_as_hybrid_dev() -> None:
    config = json.loads((REPO / "langgraph.json").read_text())
    assert config["graphs"] == LANGGRAPH_GRAPHS
    assert config["auth"] == LANGGRAPH_AUTH  # keys and tenancy in `langgraph dev` too


@pytest.mark.integration
def test_escalate_expire_feedback_and_audit_export_commands(fakes: FakeModels, monkeypatch) -> None:
    fakes.set("small", "Lyon.")
    fakes.set("large", "Paris is the capital of France.")
    _, out, _ = run("ask", "What is the capital of France?", "--route", "human", "--json")
    escalated = json.loads(out)["thread_id"]
    code, out, _ = run("review", "escalate", escalated, "--reviewer", "ana")
    assert (code, out.strip()) == (0, f"{escalated}: answered: Paris is the capital of France.")

    code, out, _ = run("feedback", escalated, "up", "--comment", "right")
    assert (code, out.strip()) == (0, f"{escalated}: thumbs up recorded")

    _, out, _ = run("ask", "What is the capital of Peru?", "--route", "human", "--json")
    overdue = json.loads(out)["thread_id"]
    monkeypatch.setenv("HYBRID_REVIEW_TIMEOUT_S", "0.001")
    code, out, _ = run("review", "expire", "--json")
    assert code == 0
    assert json.loads(out) == []  # deadlines are set when a case opens: this one has a day left
    _, out, _ = run("ask", "What is the capital of Chile?", "--route", "human", "--json")
    late = json.loads(out)["thread_id"]
    time.sleep(0.01)  # longer than its 1 ms deadline on any machine: overdue, whatever the speed
    code, out, _ = run("review", "expire", "--json")
    assert json.loads(out) == [{"thread_id": late, "status": "rejected"}]
    assert overdue in run("review", "list")[1]

    code, out, _ = run("audit", "export", "--format", "jsonl")
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert {"answered", "review_requested", "review_resolved", "review_expired"} <= {
        e["event"] for e in events
    }
    code, out, _ = run("audit", "export", "--format", "csv", "--since", "2999-01-01")
    assert out.strip() == "id,at,event,trace_id,thread_id,case_id,actor,data"
