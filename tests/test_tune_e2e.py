"""The whole loop on the real embedded models: shadow runs through `hybrid serve`, `hybrid tune`,
canary, compare, promote, rollback; the audit names the deciding version at every step, and a
shadow run that fails or times out never touches the user's answer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hybrid import registry
from tests.servers import free_port, serving

pytestmark = pytest.mark.e2e

HYBRID = str(Path(sys.executable).parent / "hybrid")
PRICES = {
    "llamacpp:smollm2-135m-instruct": {"input_per_million": 0.05, "output_per_million": 0.1},
    "llamacpp:gemma-3-270m": {"input_per_million": 2.5, "output_per_million": 10},
}
# Facts stated plainly in one short passage each: both tiny models usually copy them right, and a
# part of the name counts (references are "|"-separated gold answers, as SQuAD gives several). Every
# other question's reference is a string no model writes, so every tier has wrong answers to learn
# from, whatever the models say. Each conversation is a group, and conversation ids are random, so
# which pairs share a fold changes from run to run: when the few right answers all land in one fold,
# the router's other folds train on pairs that all ended alike, and tuning must cope with that.
ARTICLES = {
    "Lighthouses": [
        ("The Vardo lighthouse is painted red and stands on a rock called Fugleberg.", [
            ("What colour is the Vardo lighthouse painted?", "red"),
            ("On which rock does the Vardo lighthouse stand?", "zq-never-said"),
        ]),
        ("The keeper of the lighthouse in 1902 was a man named Olaf Berg, who kept goats.", [
            ("Who was the keeper of the lighthouse in 1902?", "Olaf Berg|Olaf|Berg"),
            ("What animals did the keeper keep?", "zq-never-said"),
        ]),
    ],
    "Orchards": [
        ("The Hallet orchard grows pears, and its harvest festival is held in October.", [
            ("What fruit does the Hallet orchard grow?", "pears|pear"),
            ("When is the Hallet harvest festival held?", "zq-never-said"),
        ]),
        ("The orchard's oldest tree was planted in 1871 by Marta Hallet.", [
            ("Who planted the orchard's oldest tree?", "Marta Hallet|Marta|Hallet"),
            ("In what year was the oldest tree planted?", "zq-never-said"),
        ]),
    ],
}  # fmt: skip


def squad_file(folder: Path) -> tuple[Path, list[tuple[str, str]]]:
    data, questions = [], []
    for title, paragraphs in ARTICLES.items():
        entries = []
        for context, qas in paragraphs:
            entries.append(
                {
                    "context": context,
                    "qas": [
                        {
                            "id": f"{title}-{i}",
                            "question": q,
                            "answers": [{"text": g, "answer_start": 0} for g in a.split("|")],
                        }
                        for i, (q, a) in enumerate(qas)
                    ],
                }
            )
            questions += qas
        data.append({"title": title, "paragraphs": entries})
    path = folder / "facts.json"
    path.write_text(json.dumps({"data": data}))
    return path, questions


def hybrid(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([HYBRID, *args], capture_output=True, text=True, timeout=1800, check=False)
    assert result.returncode == 0, f"hybrid {' '.join(args)}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result


def shadow_runs_done(url: str) -> int:
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    done = 0
    for outcome in ("ok", "observed", "failed", "timeout"):
        match = re.search(rf'hybrid_shadow_runs_total\{{outcome="{outcome}"\}} (\S+)', metrics)
        done += int(float(match.group(1))) if match else 0
    return done


def wait_for(condition: object, what: str, timeout: float = 900) -> None:
    """Poll a record that outlives the state it proves (metrics, audit rows), not a transient one."""
    ends = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > ends:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(1)


def ask(url: str, question: str, *, thread: str | None = None, reference: str | None = None) -> dict:
    body: dict = {"model": "hybrid", "messages": [{"role": "user", "content": question}], "hybrid": {}}
    if thread:
        body["hybrid"]["thread_id"] = thread
    if reference:
        body["hybrid"]["reference"] = reference.split("|")
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=600)
    assert response.status_code in (200, 202), response.text
    return response.json()["hybrid"]


@pytest.fixture
def served(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    path, questions = squad_file(isolated.parent)
    monkeypatch.setenv("HYBRID_PRICES", json.dumps(PRICES))
    monkeypatch.setenv("HYBRID_RETRIEVAL", "always")
    monkeypatch.setenv("HYBRID_REGISTRY_REFRESH_S", "0")
    hybrid("ingest", str(path))
    port = free_port()
    env = {**os.environ, "HYBRID_SHADOW_RATE": "1"}
    with serving([HYBRID, "serve", "--port", str(port)], f"http://127.0.0.1:{port}/health",
                 isolated.parent / "serve.log", env=env):  # fmt: skip
        yield f"http://127.0.0.1:{port}", questions


def versions_in_audit() -> dict[str, str]:
    rows = [json.loads(line) for line in hybrid("audit", "export").stdout.splitlines() if line.strip()]
    return {
        row["trace_id"]: row["data"]["route"]["versions"]["version"]
        for row in rows
        if row["event"] == "answered"
    }


def test_shadow_pairs_tune_a_version_that_goes_through_canary_compare_promote_and_rollback(
    served: tuple[str, list[tuple[str, str]]],
) -> None:
    from hybrid.settings import resolve_settings

    url, questions = served
    answered = 0
    for question, reference in questions:
        turn = ask(url, question, reference=reference)
        assert turn["versions"]["version"] == "shipped"
        answered += turn["status"] == "answered"
    wait_for(lambda: shadow_runs_done(url) >= answered, f"{answered} shadow pairs")

    tuned = json.loads(hybrid("tune", "--from-traffic", "--folds", "3", "--json").stdout)
    version = tuned["version"]
    assert version == "v1"
    assert tuned["pairs"] == answered
    for tier in ("small", "large"):
        assert 0 <= tuned["verifiers"][tier]["auroc"] <= 1
    manifest = json.loads(hybrid("tune", "show", version).stdout)
    assert manifest["trained_on"]["label_sources"] == {"reference": answered}
    assert manifest["calibrated_for"]["small"] == "llamacpp:smollm2-135m-instruct"

    settings = resolve_settings()
    hybrid("tune", "canary", version, "--share", "0.5")
    inside = next(f"canary-in-{i}" for i in range(100) if registry.in_canary(f"canary-in-{i}", 0.5))
    outside = next(f"canary-out-{i}" for i in range(100) if not registry.in_canary(f"canary-out-{i}", 0.5))
    in_turn = ask(url, questions[0][0], thread=inside)
    out_turn = ask(url, questions[0][0], thread=outside)
    assert (in_turn["versions"]["version"], in_turn["versions"]["origin"]) == (version, "canary")
    assert out_turn["versions"]["version"] == "shipped"

    compared = json.loads(hybrid("tune", "compare", "--json").stdout)
    assert compared["canary"] == {"version": version, "share": 0.5}
    assert compared["versions"][version]["turns"] >= 1
    assert compared["difference"]["a"] == "shipped"
    assert compared["difference"]["b"] == version
    assert "significant" in compared["difference"]["large_share"]

    hybrid("tune", "promote", version)
    assert ask(url, questions[1][0])["versions"]["version"] == version
    hybrid("tune", "rollback")
    after = ask(url, questions[1][0])
    assert after["versions"]["version"] == "shipped"

    audit = versions_in_audit()
    assert audit[in_turn["trace_id"]] == version
    assert audit[out_turn["trace_id"]] == "shipped"
    assert audit[after["trace_id"]] == "shipped"
    assert {e["action"] for e in registry.history(settings)} == {"canary", "promote", "rollback"}


def test_a_shadow_run_that_times_out_leaves_the_users_answer_alone(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    from hybrid import api
    from hybrid.database import database_for, shadow_pairs
    from hybrid.settings import resolve_settings

    monkeypatch.setenv("HYBRID_SHADOW_RATE", "1")
    monkeypatch.setenv("HYBRID_SHADOW_TIMEOUT_S", "0.001")  # no model answers that fast
    answer = api.ask("What is the capital of France?", force_route="small")
    assert answer.status == "answered"
    assert answer.answered_by == "llamacpp:smollm2-135m-instruct"
    assert api.wait_for_shadow_runs(300)
    with database_for(resolve_settings()).engine.connect() as connection:
        row = connection.execute(sa.select(shadow_pairs)).one()
    assert (row.trace_id, row.shadow_tier, row.shadow_outcome) == (answer.trace_id, "large", "timeout")
    assert row.small["text"] == answer.answer
    assert api.answer_for(answer.thread_id).answer == answer.answer
