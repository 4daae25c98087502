"""Policies through the façade and the server, on SQLite with fake models: tenants see only their
own data, budgets hold and step down, keys are rate-limited, a bad reload keeps the policy in
force, services tiers without review, retention by hash; MiniLM for semantic examples."""

from __future__ import annotations

import json
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hybrid import api
from hybrid.errors import BudgetExhausted, Forbidden, PolicyRefused, Unauthenticated
from hybrid.observability import REGISTRY
from hybrid.policy import hash_key
from hybrid.server import create_app
from hybrid.settings import resolve_settings
from tests.fakes import FakeModels

pytestmark = pytest.mark.integration

ACME, GLOBEX, ADMIN = "acme-key-1", "globex-key-1", "admin-key-1"
POLICY = f"""\
default_tier: pro
tiers:
  free:
    priority: 0
    models: [small]
    review: {{allowed: false, instead: reject, message: "No people on the free tier."}}
    retention: {{prompts: hash, answers: hash}}
    rate_limit: {{requests: 2, per_s: 3600}}
  pro:
    priority: 10
    threshold_offset: 0.0
tenants:
  acme: {{tier: pro, keys: ["{hash_key(ACME)}"]}}
  globex: {{tier: free, keys: ["{hash_key(GLOBEX)}"]}}
admins: ["{hash_key(ADMIN)}"]
rules:
  - name: escalations-to-people
    when: {{keywords: [REVIEWME]}}
    action: human_review
  - name: no-passwords
    when: {{regex: "(?i)password"}}
    action: refuse
    message: "Passwords are never sent to a model."
  - name: code-is-for-pro
    when: {{tier: [free], keywords: [python]}}
    action: refuse
    message: "Code questions need the pro tier."
"""


def write_policy(path: Path, text: str) -> None:
    # Written aside and renamed: a reader never sees half a file (as an editor or a deploy would).
    temporary = path.with_suffix(".tmp")
    temporary.write_text(textwrap.dedent(text))
    temporary.replace(path)


@pytest.fixture
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fakes: FakeModels) -> Path:
    path = tmp_path / "policy.yaml"
    write_policy(path, POLICY)
    monkeypatch.setenv("HYBRID_POLICY_FILE", str(path))
    monkeypatch.setenv("HYBRID_ROUTER", "heuristic")
    fakes.set("small", "The capital of France is Paris.")
    fakes.set("large", "Paris.")
    api.reset()
    return path


def test_a_tenant_sees_only_its_own_conversations_reviews_audit_and_feedback(
    policy: Path, fakes: FakeModels
) -> None:
    mine = api.ask("REVIEWME: what is the capital of France?", key=ACME)
    theirs = api.ask("REVIEWME: what is the capital of Spain?", key=GLOBEX, force_route=None)
    answered = api.ask("What is the capital of France?", key=ACME)
    assert mine.status == "pending_review"
    assert theirs.status == "rejected"  # the free tier has no review: rejected, no case opened
    assert answered.status == "answered"
    assert "No people on the free tier." in theirs.explanation

    assert [c.thread_id for c in api.pending_reviews(key=ACME)] == [mine.thread_id]
    assert api.pending_reviews(key=GLOBEX) == []
    assert [c.thread_id for c in api.pending_reviews(key=ADMIN)] == [mine.thread_id]
    assert {c.thread_id for c in api.conversations(key=ACME)} == {mine.thread_id, answered.thread_id}
    assert {c.thread_id for c in api.conversations(key=GLOBEX)} == {theirs.thread_id}
    assert {t.thread_id for t in api.traffic(key=GLOBEX)} == {theirs.thread_id}
    assert len({c.thread_id for c in api.conversations()}) == 3  # the operator sees all

    rows = [json.loads(line) for line in api.audit_export(key=GLOBEX)]
    assert rows
    assert {row["thread_id"] for row in rows} == {theirs.thread_id}

    calls = len(fakes.calls("small"))
    for attempt in (
        lambda: api.answer_for(mine.thread_id, key=GLOBEX),
        lambda: api.conversation(mine.thread_id, key=GLOBEX),
        lambda: api.resume(mine.thread_id, {"action": "approve", "reviewer": "intruder"}, key=GLOBEX),
        lambda: api.feedback(answered.thread_id, "down", key=GLOBEX),
        lambda: api.ask("And Germany?", thread_id=answered.thread_id, key=GLOBEX),
        lambda: api.answer_for("no-such-thread", key=GLOBEX),  # the same answer: nothing leaks
    ):
        with pytest.raises(Forbidden, match="this key may not see conversation"):
            attempt()
    # Nothing was read into or changed: the case waits, no verdict or rating, no model ran.
    assert fakes.calls("small")[calls:] == []
    assert [c.thread_id for c in api.pending_reviews(key=ACME)] == [mine.thread_id]
    events = [json.loads(line)["event"] for line in api.audit_export(key=ACME)]
    assert "review_resolved" not in events
    assert api.ratings(answered.thread_id, key=ACME) == {}

    resolved = api.resume(mine.thread_id, {"action": "approve", "reviewer": "acme-ops"}, key=ACME)
    assert resolved.status == "answered"
    with pytest.raises(Unauthenticated):
        api.pending_reviews(key="not-a-key")


def test_version_figures_sum_every_tenant_so_only_an_admin_sees_them(policy: Path) -> None:
    from streamlit.testing.v1 import AppTest

    api.ask("What is the capital of France?", key=ACME)
    api.ask("What is the capital of Spain?", key=GLOBEX)
    with pytest.raises(Forbidden, match="only an admin key"):
        api.compare_versions(key=ACME)
    assert api.compare_versions(key=ADMIN)["versions"]["shipped"]["turns"] == 2
    assert api.compare_versions()["versions"]["shipped"]["turns"] == 2  # the operator, in-process

    def dashboard(key: str) -> AppTest:
        app = AppTest.from_file(str(Path(__file__).parents[1] / "ui" / "app.py"), default_timeout=60)
        app.session_state["api_key"], app.session_state["signed_in_as"] = key, "test"
        app.run()
        app.switch_page("dashboard.py").run()
        assert not app.exception, app.exception
        return app

    tenant = dashboard(ACME)
    assert {m.label: m.value for m in tenant.metric}["Questions"] == "1"  # its own figures
    assert "Router and verifier versions" not in [h.value for h in tenant.subheader]
    admin = dashboard(ADMIN)
    assert {m.label: m.value for m in admin.metric}["Questions"] == "2"
    assert "Router and verifier versions" in [h.value for h in admin.subheader]
    assert admin.dataframe[0].value["turns"].tolist() == [2]


def test_rules_refuse_and_tiers_limit_per_run_settings(policy: Path, fakes: FakeModels) -> None:
    with pytest.raises(PolicyRefused, match=r"Passwords are never sent to a model\."):
        api.ask("My password is swordfish, is it strong?", key=ACME)
    with pytest.raises(Forbidden, match="the pro tier may not set force_route"):
        api.ask("What is the capital of France?", key=ACME, force_route="large")
    assert fakes.calls("small") == []
    allowed = api.ask("What is the capital of France?", key=ACME, temperature=0.2)
    assert allowed.route["policies"]["tenant"] == "acme"
    assert allowed.route["policies"]["tier"] == "pro"


def test_a_free_tier_keeps_only_hashes_of_prompts(policy: Path) -> None:
    import hashlib

    question = "What is the capital of France?"
    answer = api.ask(question, key=GLOBEX)
    assert answer.route["models"]["large"] == []  # the free tier uses the small tier only
    rows = [json.loads(line) for line in api.audit_export(key=GLOBEX)]
    answered = next(r for r in rows if r["event"] == "answered")
    assert answered["data"]["question"] == "sha256:" + hashlib.sha256(question.encode()).hexdigest()
    assert question not in json.dumps(rows)


def test_a_service_tier_without_review_can_give_the_draft_unverified(policy: Path, fakes: FakeModels) -> None:
    write_policy(policy, POLICY.replace("instead: reject", "instead: unverified"))
    answer = api.ask("REVIEWME: what is the capital of Spain?", key=GLOBEX)
    assert answer.status == "answered"
    assert answer.answer == "The capital of France is Paris."
    assert "no person saw it: human review is not part of this service tier" in answer.explanation
    assert api.pending_reviews() == []


@pytest.fixture
def priced(policy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One word of the fakes' replies costs 0.001; holds count every byte of a prompt as a token.
    prices = {"fake:small": {"input_per_million": 10, "output_per_million": 1000}}
    monkeypatch.setenv("HYBRID_PRICES", json.dumps(prices))
    monkeypatch.setenv("HYBRID_MAX_ANSWER_TOKENS", "16")
    monkeypatch.setenv("HYBRID_RETRIEVAL", "never")  # holds count no sources


def test_a_spent_budget_refuses_with_retry_after_and_nothing_runs(
    policy: Path, priced: None, fakes: FakeModels
) -> None:
    write_policy(
        policy,
        POLICY.replace(
            "    rate_limit: {requests: 2, per_s: 3600}\n", "    budget: {daily: 0.05, when_spent: refuse}\n"
        ),
    )
    answers, refused = [], None
    for _ in range(50):
        try:
            answers.append(api.ask("What is the capital of France?", key=GLOBEX))
        except BudgetExhausted as exc:
            refused = exc
            break
    assert refused is not None
    assert 1 <= len(answers) < 50
    assert refused.retry_after >= 1
    calls = len(fakes.calls("small"))
    with pytest.raises(BudgetExhausted):
        api.ask("What is the capital of France?", key=GLOBEX)
    assert len(fakes.calls("small")) == calls
    from hybrid.policy.budgets import spent

    total = spent(resolve_settings(), "globex", datetime.now(UTC))["daily"]
    assert total <= 0.05
    assert total == pytest.approx(sum(a.total_cost for a in answers), abs=1e-9)
    # Another tenant's budget is its own.
    assert api.ask("What is the capital of France?", key=ACME).status == "answered"


def test_holds_never_let_concurrent_calls_overspend(policy: Path) -> None:
    from hybrid.policy import budgets
    from hybrid.policy.schema import Budget

    settings = resolve_settings()
    budget = Budget(daily=1.0, monthly=2.0, when_spent="refuse")
    taken: list[bool] = []

    def take() -> None:
        for _ in range(10):
            taken.append(budgets.hold(settings, "acme", budget, 0.15) is not None)

    workers = [threading.Thread(target=take) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert taken.count(True) == 6  # 6 x 0.15 = 0.90; a seventh would pass 1.00
    assert budgets.spent(settings, "acme", datetime.now(UTC)) == {
        "daily": pytest.approx(0.9),
        "monthly": pytest.approx(0.9),
    }


def test_the_budget_step_down_raises_the_threshold_and_small_only_skips_large(
    policy: Path, priced: None
) -> None:
    from hybrid.policy import budgets

    write_policy(
        policy,
        POLICY.replace(
            "    threshold_offset: 0.0\n",
            "    threshold_offset: 0.0\n    budget: {daily: 1.0, when_spent: small_only, max_rise: 0.4}\n",
        ),
    )
    settings = resolve_settings()
    assert budgets.hold(settings, "acme", None, 0.9, datetime.now(UTC)) is not None  # 90% spent
    hard = "Write a Python function that parses ISO dates and explain the edge cases."
    stepped = api.explain_route(hard, key=ACME).route
    assert float(stepped["policies"]["threshold_shift"]) == pytest.approx(0.2)  # halfway up
    assert any("budget +0.20 (90% of the daily budget spent" in r for r in stepped["reasons"])
    assert budgets.hold(settings, "acme", None, 0.2, datetime.now(UTC)) is not None  # 110%
    spent_route = api.ask(hard, key=ACME).route
    assert spent_route["models"]["large"] == []
    assert any(
        "budget of tenant acme spent" in r and "large tier skipped" in r for r in spent_route["reasons"]
    )


def test_a_bad_reload_keeps_the_policy_in_force_and_says_where_it_is_wrong(policy: Path) -> None:
    assert api.caller(ACME).tenant == "acme"
    version = api.policy_status()["version"]
    write_policy(policy, POLICY.replace("    priority: 10\n", "    priority: high\n"))
    assert api.caller(ACME).tenant == "acme"  # still in force
    status = api.policy_status()
    assert status["version"] == version
    [problem] = status["problems"]
    assert problem.startswith("line 10, column 15: tiers.pro.priority: Input should be a valid integer")
    write_policy(policy, POLICY.replace(hash_key(ACME), hash_key("acme-key-2")))
    assert api.caller("acme-key-2").tenant == "acme"
    with pytest.raises(Unauthenticated):
        api.caller(ACME)
    assert api.policy_status()["problems"] == []


@pytest.fixture
def http(policy: Path) -> TestClient:
    return TestClient(create_app())


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_readiness_details_need_a_key_of_the_policy_file(http: TestClient) -> None:
    for headers in ({}, bearer("not-a-key")):  # a load balancer's probe: the status only
        assert http.get("/ready", headers=headers).json() == {"status": "ready"}
    for key in (ACME, ADMIN):
        body = http.get("/ready", headers=bearer(key)).json()
        assert body["status"] == "ready"
        assert {tier["tier"] for tier in body["tiers"]} == {"small", "large"}


def chat(question: str, **extra: Any) -> dict[str, Any]:
    return {"model": "hybrid", "messages": [{"role": "user", "content": question}], **extra}


def test_the_server_answers_401_403_and_429_by_type(http: TestClient) -> None:
    assert http.post("/v1/chat/completions", json=chat("Hi")).status_code == 401
    assert http.post("/v1/chat/completions", json=chat("Hi"), headers=bearer("nope")).status_code == 401

    mine = http.post("/v1/chat/completions", json=chat("REVIEWME please"), headers=bearer(ACME))
    assert mine.status_code == 202
    thread = mine.json()["hybrid"]["thread_id"]
    for method, url, body in (
        ("get", f"/v1/hybrid/threads/{thread}", None),
        ("post", f"/v1/hybrid/reviews/{thread}", {"action": "approve"}),
        ("post", "/v1/hybrid/feedback", {"thread_id": thread, "rating": "up"}),
        ("post", "/v1/chat/completions", chat("More?", hybrid={"thread_id": thread})),
        ("get", "/v1/hybrid/policy", None),
    ):
        denied = http.request(method, url, json=body, headers=bearer(GLOBEX))
        assert denied.status_code == 403, url
        assert denied.json()["error"]["type"] == "permission_error"
    assert http.get("/v1/hybrid/reviews", headers=bearer(GLOBEX)).json()["data"] == []
    assert [c["thread_id"] for c in http.get("/v1/hybrid/reviews", headers=bearer(ACME)).json()["data"]] == [
        thread
    ]
    assert http.get("/v1/hybrid/policy", headers=bearer(ADMIN)).json()["problems"] == []
    audit = http.get("/v1/hybrid/audit", headers=bearer(GLOBEX)).json()["data"]
    assert all(row["thread_id"] != thread for row in audit)

    refused = http.post("/v1/chat/completions", json=chat("my password is x"), headers=bearer(ACME))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "policy_refused"
    # A new conversation is judged as its asker's tier before it starts, streamed or not.
    for stream in (False, True):
        free = http.post(
            "/v1/chat/completions", json=chat("Any python tips?", stream=stream), headers=bearer(GLOBEX)
        )
        assert free.status_code == 403
        assert free.json()["error"]["message"] == "Code questions need the pro tier."
    assert (
        http.post("/v1/chat/completions", json=chat("Any python tips?"), headers=bearer(ACME)).status_code
        == 200
    )
    forbidden = chat("Hi", hybrid={"overrides": {"force_route": "large"}})
    assert (
        http.post("/v1/chat/completions", json=forbidden, headers=bearer(ACME)).json()["error"]["code"]
        == "forbidden"
    )

    # The free tier's key may send two requests an hour; the third waits until the next is due.
    limited_before = REGISTRY.get_sample_value("hybrid_requests_limited_total", {"reason": "rate"}) or 0.0
    statuses = [
        http.post("/v1/chat/completions", json=chat("What is 2 + 2?"), headers=bearer(GLOBEX))
        for _ in range(3)
    ]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[2].json()["error"]["code"] == "rate_limited"
    assert 1700 <= int(statuses[2].headers["retry-after"]) <= 1800  # 3600 s / 2 requests
    metrics = http.get("/metrics").text
    assert 'hybrid_requests_limited_total{reason="rate"}' in metrics
    assert (
        REGISTRY.get_sample_value("hybrid_requests_limited_total", {"reason": "rate"}) == limited_before + 1
    )
    assert 'hybrid_policy_reloads_total{outcome="loaded"}' in metrics


def test_semantic_examples_match_paraphrases_with_minilm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "policy.yaml"
    write_policy(
        path,
        """\
        rules:
          - name: code
            when:
              examples: ["Write a Python function that sorts a list", "Fix the bug in my JavaScript code"]
              similarity: 0.5
            action: route_large
        """,
    )
    monkeypatch.setenv("HYBRID_POLICY_FILE", str(path))
    monkeypatch.setenv("HYBRID_ROUTER", "heuristic")
    paraphrase = api.explain_route("Could you write a Python function to sort a list of numbers?")
    unrelated = api.explain_route("Who painted the Mona Lisa?")
    assert paraphrase.rules[0].matched
    assert paraphrase.route["route"] == "large"
    assert paraphrase.route["reasons"][0].startswith("policy rule 'code' (similar to an example (0.")
    assert not unrelated.rules[0].matched
    assert unrelated.rules[0].detail.startswith("closest example 0.")


def test_the_policy_commands_check_explain_and_make_keys(tmp_path: Path, policy: Path) -> None:
    from click.testing import CliRunner

    from hybrid.cli import cli

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    code, out, _ = run("policy", "check", str(policy))
    assert code == 0
    assert "valid (version" in out
    assert "2 tier(s), 2 tenant(s), 3 rule(s)" in out
    broken = tmp_path / "broken.yaml"
    broken.write_text(POLICY.replace("models: [small]", "models: [tiny]"))
    code, _, err = run("policy", "check", str(broken))
    assert code == 1
    assert f"{broken}:5:14: tiers.free.models[0]: Input should be 'small' or 'large'" in err

    code, out, _ = run("policy", "explain", "REVIEWME: is this right?", "--key", ACME)
    assert code == 0
    assert "as: tenant acme, tier pro" in out
    assert "rule escalations-to-people (human_review): matched: keyword 'REVIEWME'" in out
    assert "route: human" in out
    code, out, _ = run("policy", "explain", "REVIEWME: is this right?", "--tier", "free")
    assert "route: human, but the free tier has no human review: reject" in out
    code, out, _ = run("policy", "explain", "My password is x", "--json")
    assert json.loads(out)["refusal"] == "Passwords are never sent to a model."

    code, out, _ = run("policy", "new-key")
    key, digest = (line.split(":", 1)[1].strip() for line in out.splitlines())
    assert digest == hash_key(key)
