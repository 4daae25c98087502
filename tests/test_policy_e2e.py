"""Policies for real: two `hybrid serve` replicas on one PostgreSQL with the embedded models, and
`langgraph dev` behind the same keys. Two tenants cannot see each other's data through either
replica, concurrent requests cannot overspend a budget, keys are rate-limited across replicas,
and a broken policy file leaves the old one in force on both."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from hybrid.policy import hash_key
from tests.servers import free_port, fresh_database, serving

pytestmark = pytest.mark.e2e

HYBRID = str(Path(sys.executable).parent / "hybrid")
ACME, GLOBEX, THRIFTY, CHATTY, ADMIN = (
    f"{name}-e2e-key" for name in ("acme", "globex", "thrifty", "chatty", "admin")
)
SMALL = "llamacpp:smollm2-135m-instruct"
PRICE_PER_TOKEN = 0.001  # output tokens only: a hold is exactly max_tokens of them
MAX_TOKENS = 8
BUDGET = 0.02  # two holds of 8 tokens fit; the third must wait for one to settle

POLICY = f"""\
default_tier: pro
tiers:
  pro:
    priority: 10
    models: [small]
  thrift:
    models: [small]
    budget: {{daily: {BUDGET}, when_spent: refuse}}
  chat:
    models: [small]
    rate_limit: {{requests: 2, per_s: 3600}}
tenants:
  acme: {{tier: pro, keys: ["{hash_key(ACME)}"]}}
  globex: {{tier: pro, keys: ["{hash_key(GLOBEX)}"]}}
  thrifty: {{tier: thrift, keys: ["{hash_key(THRIFTY)}"]}}
  chatty: {{tier: chat, keys: ["{hash_key(CHATTY)}"]}}
admins: ["{hash_key(ADMIN)}"]
rules:
  - name: reviewed-by-a-person
    when: {{keywords: [REVIEWME]}}
    action: human_review
"""

ADMITTED = (200, 202)  # answered, or parked for a reviewer


def write_policy(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(path)  # a replica never reads half a file


def environment(data_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRID_")}
    return env | {
        "HYBRID_DATA_DIR": str(data_dir),
        "HYBRID_CACHE": "off",
        "HYBRID_RETRIEVAL": "never",  # nothing here is about the knowledge base
        "HYBRID_PRICES": json.dumps({SMALL: {"output_per_million": PRICE_PER_TOKEN * 1e6}}),
        **settings,
    }


@pytest.fixture(scope="module")
def replicas(postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two replicas sharing a fresh PostgreSQL database and one policy file."""
    root = tmp_path_factory.mktemp("policy-replicas")
    policy = root / "policy.yaml"
    write_policy(policy, POLICY)
    database = fresh_database(postgres_admin_url)
    urls = []
    with contextlib.ExitStack() as stack:
        for name in "ab":
            port = free_port()
            env = environment(
                root / f"replica-{name}", HYBRID_CHECKPOINT_URL=database, HYBRID_POLICY_FILE=str(policy)
            )
            command = [HYBRID, "serve", "--port", str(port)]
            stack.enter_context(
                serving(command, f"http://127.0.0.1:{port}/health", root / f"{name}.log", env=env)
            )
            urls.append(f"http://127.0.0.1:{port}")
        yield {"urls": urls, "policy": policy, "database": database}


def post(url: str, path: str, key: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=300)


def get(url: str, path: str, key: str) -> httpx.Response:
    return httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=60)


def ask(question: str, **hybrid: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "hybrid", "messages": [{"role": "user", "content": question}]}
    return body | {"max_tokens": MAX_TOKENS} | ({"hybrid": hybrid} if hybrid else {})


def test_two_tenants_on_two_replicas_see_only_their_own(replicas: dict[str, Any]) -> None:
    a, b = replicas["urls"]
    pending = post(a, "/v1/chat/completions", ACME, ask("REVIEWME: what is the capital of France?"))
    assert pending.status_code == 202, pending.text
    thread = pending.json()["hybrid"]["thread_id"]
    answered = post(b, "/v1/chat/completions", GLOBEX, ask("What is the capital of Italy?"))
    assert answered.status_code == 200, answered.text
    theirs = answered.json()["hybrid"]["thread_id"]

    # Globex, on the other replica: every way to Acme's conversation is 403, and changes nothing.
    for response in (
        get(b, f"/v1/hybrid/threads/{thread}", GLOBEX),
        post(b, f"/v1/hybrid/reviews/{thread}", GLOBEX, {"action": "approve", "reviewer": "intruder"}),
        post(b, "/v1/hybrid/feedback", GLOBEX, {"thread_id": thread, "rating": "down"}),
        post(b, "/v1/chat/completions", GLOBEX, ask("And Spain?", thread_id=thread)),
        get(b, "/v1/hybrid/policy", GLOBEX),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["error"]["type"] == "permission_error"
    assert get(b, "/v1/hybrid/reviews", GLOBEX).json()["data"] == []
    assert {c["thread_id"] for c in get(a, "/v1/hybrid/conversations", GLOBEX).json()["data"]} == {theirs}
    assert {row["thread_id"] for row in get(a, "/v1/hybrid/audit", GLOBEX).json()["data"]} == {theirs}
    assert post(a, f"/v1/hybrid/reviews/{theirs}", ACME, {"action": "approve"}).status_code == 403

    # Acme sees its case, untouched, from either replica; the admin sees both tenants' data.
    [case] = get(b, "/v1/hybrid/reviews", ACME).json()["data"]
    assert (case["thread_id"], case["claimed_by"]) == (thread, None)
    assert {r["event"] for r in get(b, "/v1/hybrid/audit", ACME).json()["data"]} == {"review_requested"}
    audited = {row["thread_id"] for row in get(b, "/v1/hybrid/audit", ADMIN).json()["data"]}
    assert {thread, theirs} <= audited
    resolved = post(
        b, f"/v1/hybrid/reviews/{thread}", ACME, {"action": "edit", "answer": "Paris.", "reviewer": "ana"}
    )
    assert resolved.status_code == 200
    assert get(a, f"/v1/hybrid/threads/{thread}", ACME).json()["choices"][0]["message"]["content"] == "Paris."


def test_concurrent_requests_on_two_replicas_never_overspend_a_budget(replicas: dict[str, Any]) -> None:
    import psycopg

    a, b = replicas["urls"]
    questions = [f"Name a colour of the rainbow, number {n}." for n in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(
            pool.map(
                lambda pair: post(pair[0], "/v1/chat/completions", THRIFTY, ask(pair[1])),
                [(a if n % 2 else b, q) for n, q in enumerate(questions)],
            )
        )
    statuses = [r.status_code for r in responses]
    # Answered, or (an 8-token answer the verifier finds cut off) waiting for a person; or refused.
    assert set(statuses) <= {200, 202, 429}, [r.text for r in responses]
    assert 429 in statuses
    assert {200, 202} & set(statuses)
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.json()["error"]["code"] == "budget_exhausted"
        assert int(refused.headers["retry-after"]) >= 1
    answered = [r.json()["hybrid"]["cost"]["total"] for r in responses if r.status_code != 429]
    with psycopg.connect(replicas["database"]) as connection:
        [(spent,)] = connection.execute(
            "SELECT cost FROM hybrid_tenant_spend WHERE tenant = 'thrifty' AND length(period) = 10"
        ).fetchall()
    assert spent <= BUDGET + 1e-9  # never more than the budget, however the requests raced
    assert spent == pytest.approx(sum(answered), abs=1e-9)  # and every answer's cost is counted
    assert all(0 < cost <= MAX_TOKENS * PRICE_PER_TOKEN + 1e-9 for cost in answered)


def test_a_keys_rate_limit_holds_across_replicas(replicas: dict[str, Any]) -> None:
    a, b = replicas["urls"]
    first = post(a, "/v1/chat/completions", CHATTY, ask("What is 2 + 2?"))
    second = post(b, "/v1/chat/completions", CHATTY, ask("What is 3 + 3?"))
    third = post(a, "/v1/chat/completions", CHATTY, ask("What is 4 + 4?"))
    # Admitted means answered or parked for a reviewer (what the models answered is not the point).
    assert [r.status_code in ADMITTED for r in (first, second)] == [True, True]
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "rate_limited"
    assert 1700 <= int(third.headers["retry-after"]) <= 1800  # one request every 1800 s after the burst
    others = post(b, "/v1/chat/completions", ACME, ask("What is 5 + 5?"))
    assert others.status_code in ADMITTED  # other keys unaffected


def test_a_broken_policy_file_leaves_the_old_policy_in_force_on_both_replicas(
    replicas: dict[str, Any],
) -> None:
    a, b = replicas["urls"]
    policy: Path = replicas["policy"]
    versions = {get(url, "/v1/hybrid/policy", ADMIN).json()["version"] for url in (a, b)}
    assert len(versions) == 1
    newcomer = "newcomer-e2e-key"
    try:
        broken = POLICY.replace("  chat:\n", "  chat:\n    priority: high\n").replace(
            "admins:", f'  newcomer: {{tier: pro, keys: ["{hash_key(newcomer)}"]}}\nadmins:'
        )
        write_policy(policy, broken)
        for url in (a, b):
            assert post(url, "/v1/chat/completions", newcomer, ask("Hello?")).status_code == 401
            assert (
                post(url, "/v1/chat/completions", ACME, ask("What is the capital of Peru?")).status_code
                in ADMITTED
            )
            status = get(url, "/v1/hybrid/policy", ADMIN).json()
            assert status["version"] in versions
            [problem] = status["problems"]
            assert problem.startswith(
                "line 10, column 15: tiers.chat.priority: Input should be a valid integer"
            )
        write_policy(policy, broken.replace("    priority: high\n", ""))
        for url in (a, b):
            assert post(url, "/v1/chat/completions", newcomer, ask("Hello?")).status_code in ADMITTED
            assert get(url, "/v1/hybrid/policy", ADMIN).json()["problems"] == []
    finally:
        write_policy(policy, POLICY)


def test_langgraph_dev_runs_keep_to_their_tenant(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from langgraph_sdk import get_sync_client
    from langgraph_sdk.schema import Command

    from hybrid import api

    policy = isolated.parent / "policy.yaml"
    write_policy(policy, textwrap.dedent(POLICY))
    monkeypatch.setenv("HYBRID_POLICY_FILE", str(policy))
    monkeypatch.setenv("HYBRID_RETRIEVAL", "never")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving([HYBRID, "dev", "--port", str(port)], f"{url}/ok", isolated.parent / "dev.log"):
        acme = get_sync_client(url=url, headers={"Authorization": f"Bearer {ACME}"})
        globex = get_sync_client(url=url, headers={"Authorization": f"Bearer {GLOBEX}"})
        assert httpx.post(f"{url}/threads/search", json={}, timeout=10).status_code == 401  # no key
        thread = acme.threads.create()["thread_id"]
        acme.runs.wait(thread, "hybrid", input={"question": "REVIEWME: what is the capital of France?"})
        assert acme.threads.get_state(thread)["next"] == ["human_review"]

        for attempt in (
            lambda: globex.threads.get(thread),
            lambda: globex.threads.get_state(thread),
            lambda: globex.runs.wait(thread, "hybrid", command=Command(resume={"action": "reject"})),
            lambda: globex.threads.delete(thread),
            lambda: globex.runs.wait(None, "hybrid", input={"question": "Hi"}),  # a thread no one owns
            # a tier's per-run settings hold here too
            lambda: acme.runs.wait(
                acme.threads.create()["thread_id"],
                "hybrid",
                input={"question": "Hi"},
                context={"force_route": "large"},
            ),
        ):
            with pytest.raises(httpx.HTTPStatusError) as refused:  # the SDK's errors subclass it
                attempt()
            assert refused.value.response.status_code == 403
        assert [t["thread_id"] for t in globex.threads.search()] == []

        # The façade knows the thread is Acme's: Globex is refused there too, before anything is
        # read; Acme is told the case lives in the LangGraph server.
        from hybrid.errors import Forbidden, ReviewElsewhere
        from hybrid.policy.tenancy import owner
        from hybrid.settings import resolve_settings

        assert owner(resolve_settings(), thread) == "acme"
        with pytest.raises(Forbidden):
            api.resume(thread, {"action": "approve", "reviewer": "intruder"}, key=GLOBEX)
        with pytest.raises(ReviewElsewhere):
            api.resume(thread, {"action": "approve", "reviewer": "ana"}, key=ACME)
        final = acme.runs.wait(
            thread, "hybrid", command=Command(resume={"action": "approve", "reviewer": "ana"})
        )
        assert final["status"] == "answered"
        assert acme.threads.get_state(thread)["next"] == []
