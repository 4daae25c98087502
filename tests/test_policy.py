"""Policies, the logic alone: validation with lines, rule order and matching, restrictions, the
router's rules under a policy, threshold shifts, budget arithmetic and the run-slot queue."""

from __future__ import annotations

import asyncio
import itertools
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybrid.decisions import RouteDecision
from hybrid.policy import budgets, shifts
from hybrid.policy.loading import LoadedPolicy, parse
from hybrid.policy.rules import RequestFacts, Verdict, evaluate, model_allowed
from hybrid.policy.schema import Budget, LoadShift, Tier
from hybrid.policy.turn import TurnPolicy
from hybrid.routing.decision import decide_route
from hybrid.settings import resolve_settings
from tests.conftest import REPO

pytestmark = pytest.mark.unit

KEY_A = "sha256:" + "a" * 64
KEY_B = "sha256:" + "b" * 64


def policy_of(text: str) -> LoadedPolicy:
    policy, problems = parse(textwrap.dedent(text))
    assert policy is not None, [str(p) for p in problems]
    return LoadedPolicy(policy, Path("policy.yaml"), "test", datetime.now(UTC))


def problems_of(text: str) -> list[tuple[int, str, str]]:
    policy, problems = parse(textwrap.dedent(text))
    assert policy is None
    return [(p.line, p.where, p.message) for p in problems]


# ---------------------------------------------------------------------------------------------
# Validation: every problem, with its line
# ---------------------------------------------------------------------------------------------


def test_each_structural_error_is_reported_with_its_line_and_path() -> None:
    found = problems_of(
        """\
        default_tier: free
        tiers:
          free:
            models: [small, medium]
            budget: {daily: -1}
            colour: blue
        tenants:
          acme:
            tier: free
            keys: ["not-a-hash"]
        rules:
          - name: broken
            when: {regex: "(unclosed"}
            action: refuse
            message: no
        """
    )
    lines = {line: (where, message) for line, where, message in found}
    assert lines[4][0] == "tiers.free.models[1]"
    assert "'small' or 'large'" in lines[4][1]
    assert lines[5][0] == "tiers.free.budget.daily"
    assert "greater than 0" in lines[5][1]
    assert lines[6] == ("tiers.free.colour", "unknown field")
    assert lines[10][0] == "tenants.acme.keys[0]"
    assert "sha256:" in lines[10][1]
    assert lines[13][0] == "rules[0].when.regex[0]"
    assert "not a regular expression" in lines[13][1]
    # YAML 1.1 reads `no` as false: the message says what was expected, on the right line
    assert lines[15][0] == "rules[0].message"
    assert "string" in lines[15][1]


def test_references_between_sections_are_checked_with_their_lines() -> None:
    found = problems_of(
        f"""\
        default_tier: gold
        tiers:
          free: {{}}
        tenants:
          acme: {{tier: platinum, keys: ["{KEY_A}"]}}
          globex: {{tier: free, keys: ["{KEY_A}"]}}
        rules:
          - name: one
            when: {{tier: [pro]}}
            action: refuse
          - name: one
            when: {{keywords: [x]}}
            action: set_data_class
            data_class: topsecret
        restrictions:
          internal: {{deny: ["openai:*"]}}
        """
    )
    assert (1, "default_tier", "unknown tier 'gold' (known: free)") in found
    assert (5, "tenants.acme.tier", "unknown tier 'platinum' (known: free)") in found
    assert any(line == 6 and "already listed at tenants.acme.keys[0]" in msg for line, _, msg in found)
    assert any(line == 8 and "needs a message" in msg for line, _, msg in found)
    assert any(line == 9 and "unknown tier 'pro'" in msg for line, _, msg in found)
    assert any(line == 11 and "already used by rule 1" in msg for line, _, msg in found)
    assert any(line == 14 and "unknown data class 'topsecret'" in msg for line, _, msg in found)
    assert any(line == 16 and "unknown data class 'internal'" in msg for line, _, msg in found)


def test_duplicate_keys_and_broken_yaml_name_their_lines() -> None:
    assert problems_of("tiers:\n  free: {}\n  free: {priority: 2}\n") == [
        (3, "tiers.free", "given twice (first at line 2)")
    ]
    [(line, _, message)] = problems_of("tiers:\n  free: {priority: 2\n")
    assert line == 3
    assert message.startswith("not valid YAML")
    assert problems_of("") == [(1, "", "the file is empty: a policy needs at least one section")]


def test_the_shipped_three_tier_example_validates() -> None:
    from hybrid.policy import check_file

    policy, problems, _ = check_file(REPO / "docs" / "examples" / "policy.yaml")
    assert problems == []
    assert policy is not None
    assert set(policy.tiers) == {"free", "pro", "enterprise"}


# ---------------------------------------------------------------------------------------------
# Rules: order, matching, data classes, restrictions
# ---------------------------------------------------------------------------------------------

RULES = f"""\
data_classes: [none, internal, personal, secret]
tiers:
  free: {{models: [small]}}
  pro: {{}}
tenants:
  acme: {{tier: pro, keys: ["{KEY_A}"]}}
  hobby: {{tier: free, keys: ["{KEY_B}"]}}
rules:
  - name: roadmap-is-internal
    when: {{keywords: [roadmap]}}
    action: set_data_class
    data_class: internal
  - name: internal-stays-small
    when: {{data_class: [internal]}}
    action: route_small
  - name: legal
    when: {{keywords: [subpoena, lawsuit]}}
    action: human_review
  - name: also-legal
    when: {{regex: "(?i)court"}}
    action: route_large
  - name: free-code
    when: {{tier: [free], examples: ["write code"], similarity: 0.8}}
    action: refuse
    message: "Code questions need the pro tier."
  - name: bots
    when: {{header: {{x-client: "^bot/"}}, user: "^svc-"}}
    action: route_small
restrictions:
  internal: {{deny: ["openai:*"]}}
  personal: {{allow: ["llamacpp:*"]}}
  secret: {{refuse: "Secret data never goes to a model."}}
"""


class FakeEmbeddings:
    """Deterministic vectors: 'code' texts point one way, everything else another."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: Any) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([[1.0, 0.0] if "code" in t else [0.0, 1.0] for t in texts])


def verdict(question: str, detected: str = "none", **facts: Any) -> Verdict:
    return evaluate(policy_of(RULES), question, detected, RequestFacts(**facts), embed=FakeEmbeddings())


def test_the_first_matching_rule_wins() -> None:
    found = verdict("The court sent a subpoena")
    assert found.rule is not None
    assert found.rule.name == "legal"
    assert [c.rule for c in found.checked] == ["roadmap-is-internal", "internal-stays-small", "legal"]
    assert found.matched == "keyword 'subpoena'"
    assert verdict("The court called").rule.name == "also-legal"  # type: ignore[union-attr]
    assert verdict("What is the capital of France?").rule is None


def test_keywords_match_whole_words_in_any_case() -> None:
    assert verdict("A LAWSUIT was filed").rule.name == "legal"  # type: ignore[union-attr]
    assert verdict("lawsuits are costly").rule is None


def test_set_data_class_classifies_and_later_rules_see_the_class() -> None:
    found = verdict("Share the roadmap for next year")
    assert found.data_class == "internal"
    assert found.classified_by == ("roadmap-is-internal",)
    assert found.rule is not None
    assert found.rule.name == "internal-stays-small"


def test_a_rule_never_lowers_the_detected_class() -> None:
    found = verdict("Share the roadmap", detected="personal")
    assert found.data_class == "personal"
    assert found.rule is None  # internal-stays-small matches `internal` only


def test_every_condition_of_a_rule_must_hold() -> None:
    assert verdict("hi", user="svc-nightly", metadata={"x-client": "bot/1.2"}).rule.name == "bots"  # type: ignore[union-attr]
    assert verdict("hi", user="svc-nightly", metadata={"x-client": "browser"}).rule is None
    assert verdict("hi", user="alice", metadata={"x-client": "bot/1.2"}).rule is None


def test_semantic_examples_match_above_their_threshold_for_the_right_tier_only() -> None:
    embed = FakeEmbeddings()
    loaded = policy_of(RULES)
    free = RequestFacts(tenant="hobby", tier="free")
    found = evaluate(loaded, "please write some code for me", "none", free, embed=embed)
    assert found.rule is not None
    assert found.rule.name == "free-code"
    assert found.refusal == "Code questions need the pro tier."
    assert found.refused_by == "free-code"
    assert "similar to an example (1.00 >= 0.80)" in found.matched
    assert evaluate(loaded, "tell me a story", "none", free, embed=embed).rule is None
    pro = evaluate(loaded, "please write some code", "none", RequestFacts(tier="pro"), embed=embed)
    assert pro.rule is None  # the tier condition failed first: nothing was embedded for it
    # The examples were embedded once for the policy; each question once.
    assert embed.calls == [["write code"], ["please write some code for me"], ["tell me a story"]]


def test_restrictions_apply_to_their_class_and_every_more_sensitive_one() -> None:
    internal = verdict("the roadmap")
    assert not model_allowed("openai:gpt-4o", internal)
    assert model_allowed("ollama:llama3", internal)
    personal = verdict("hello", detected="personal")
    assert not model_allowed("openai:gpt-4o", personal)  # internal's deny still applies
    assert not model_allowed("ollama:llama3", personal)  # personal allows llama.cpp only
    assert model_allowed("llamacpp:smollm2-135m-instruct", personal)
    secret = verdict("hello", detected="secret")
    assert secret.refusal == "Secret data never goes to a model."
    assert secret.refused_by == "restriction secret"
    assert verdict("hello").refusal is None


# ---------------------------------------------------------------------------------------------
# The router's rules under a policy
# ---------------------------------------------------------------------------------------------


def turn_policy(
    question: str,
    *,
    tier: str = "pro",
    detected: str = "none",
    shift: shifts.Shift | None = None,
    **facts: Any,
) -> TurnPolicy:
    loaded = policy_of(RULES)
    request = RequestFacts(tier=tier, **facts)
    found = evaluate(loaded, question, detected, request, embed=FakeEmbeddings())
    return TurnPolicy(loaded, "", request, loaded.tier(tier), found, None, None, shift or shifts.Shift())


def route(
    question: str, policy: TurnPolicy | None, kb_available: bool = True, **overrides: Any
) -> RouteDecision:
    settings = resolve_settings(
        {"router": "heuristic", "small_model": "fake:small", "large_model": "openai:big"} | overrides
    )
    return decide_route(
        question,
        previous_questions=[],
        kb_score=0.0,
        kb_available=kb_available,
        model_is_local=lambda spec: spec.startswith("fake"),
        settings=settings,
        policy=policy,
    )


HARD = "Write a Python function that parses ISO dates and explain the edge cases."


def test_a_policy_rule_wins_over_the_router_and_names_itself() -> None:
    assert route(HARD, None)["route"] == "large"  # what the router alone says
    decision = route(HARD + " The roadmap.", turn_policy(HARD + " The roadmap."))
    assert decision["route"] == "small"
    assert decision["reasons"][0].startswith("policy rule 'internal-stays-small' (data_class internal)")
    assert decision["models"]["large"] == []  # strict: no escalation to the other tier
    assert decision["policies"]["rule"] == "internal-stays-small"
    assert decision["policies"]["data_class"] == "internal"
    assert any("(not used: policy internal-stays-small decides)" in r for r in decision["reasons"])


def test_a_policy_rule_wins_over_a_forced_route_too() -> None:
    decision = route("A subpoena arrived", turn_policy("A subpoena arrived"), force_route="small")
    assert decision["route"] == "human"
    assert decision["forced"] is False
    assert any("overruled by policy legal" in r for r in decision["reasons"])


def test_the_service_tier_and_the_data_class_take_models_away() -> None:
    free = route(HARD, turn_policy(HARD, tier="free"))
    assert free["models"]["large"] == []
    assert free["route"] == "small"
    assert any("service tier free may use the small tier only" in r for r in free["reasons"])
    personal = route(HARD, turn_policy(HARD, detected="personal"))  # no rule decides personal data
    assert personal["models"] == {"small": [], "large": []}
    assert "data class personal: fake:small, openai:big not allowed by the policy" in personal["reasons"]
    assert personal["route"] == "human"  # no model may see it: a person answers


def test_a_refusal_is_recorded_in_the_route() -> None:
    decision = route("my key", turn_policy("my key", detected="secret"))
    assert decision["policies"]["refusal"] == "Secret data never goes to a model."
    assert (
        decision["reasons"][0] == "refused by policy restriction secret: Secret data never goes to a model."
    )


def test_require_kb_retrieves_or_sends_to_a_person_without_a_knowledge_base() -> None:
    text = """\
    rules:
      - {name: faq, when: {keywords: [refund]}, action: require_kb}
    """
    loaded = policy_of(text)
    found = evaluate(loaded, "refund please", "none", RequestFacts())
    policy = TurnPolicy(loaded, "", RequestFacts(), None, found, None, None, shifts.Shift())
    assert route("refund please", policy)["needs_kb"] is True
    without = route("refund please", policy, kb_available=False)
    assert without["route"] == "human"
    assert without["needs_kb"] is False


def test_a_threshold_shift_moves_the_route_and_is_reported() -> None:
    question = HARD
    plain = route(question, turn_policy(question))
    score = plain["difficulty"]
    rise = round(score - plain["threshold"] + 0.05, 4)  # just enough to put it under the threshold
    assert plain["route"] == "large"
    shift = shifts.Shift(rise, (("load", rise, "large p95 9.0s vs 4.0s objective: over objective"),))
    shifted = route(question, turn_policy(question, shift=shift))
    assert shifted["route"] == "small"
    assert shifted["threshold"] == pytest.approx(plain["threshold"] + rise)
    reason = next(r for r in shifted["reasons"] if r.startswith("threshold"))
    assert f"load +{rise:.2f} (large p95 9.0s vs 4.0s objective" in reason
    assert reason.endswith(f"{score:.2f} now starts small")


# ---------------------------------------------------------------------------------------------
# Threshold shifts and budget arithmetic
# ---------------------------------------------------------------------------------------------


def test_the_load_shift_rises_by_bounded_steps_and_decays_by_its_half_life() -> None:
    config = LoadShift(step=0.05, max=0.12, half_life_s=60)
    shift = 0.0
    for _ in range(5):
        shift = shifts.next_shift(shift, 0.0, True, config)
    assert shift == pytest.approx(0.12)  # 0.05, 0.10, then capped
    assert shifts.next_shift(0.12, 60.0, False, config) == pytest.approx(0.06)
    assert shifts.next_shift(0.12, 120.0, False, config) == pytest.approx(0.03)
    assert shifts.next_shift(0.0001, 60.0, False, config) == 0.0


def test_pressure_compares_p95_and_queue_with_the_tiers_objectives() -> None:
    tier = Tier(latency_objective_s=2.0, queue_objective=4)
    level, why = shifts.pressure(tier, 3.0, 1)
    assert level == pytest.approx(1.5)
    assert why == "large p95 3.0s vs 2.0s objective"
    level, why = shifts.pressure(tier, 1.0, 6)
    assert level == pytest.approx(1.5)
    assert why == "6 large calls in flight vs 4"
    assert shifts.pressure(Tier(), 9.0, 9)[0] == 0.0


def test_the_load_shift_follows_recorded_latencies_without_waiting() -> None:
    shifts.reset()
    tier = Tier(latency_objective_s=1.0, load_shift=LoadShift(step=0.1, max=0.3, half_life_s=200))
    for second in range(5):
        shifts.record_large_call(2.5, now=100.0 + second)
    assert shifts.large_p95(now=105.0) == 2.5
    first, why = shifts.load_shift("pro", tier, 0, now=105.0)
    second, _ = shifts.load_shift("pro", tier, 0, now=105.0)
    assert (first, second) == (pytest.approx(0.1), pytest.approx(0.2))
    assert why.endswith("over objective")
    # Five minutes on, those calls no longer count: the shift only decays (over 1.5 half-lives).
    later, why = shifts.load_shift("pro", tier, 0, now=105.0 + shifts.WINDOW_S + 15)
    assert 0 < later < second / 2
    assert why == "too few recent large calls for a p95 (objective 1.0s): decaying"
    shifts.reset()


def test_the_budget_step_down_is_smooth_bounded_and_starts_where_it_says() -> None:
    budget = Budget(daily=10.0, step_down_from=0.8, max_rise=0.3)
    rises = [budgets.step_down(used / 100, budget) for used in range(0, 121)]
    assert rises[:81] == [0.0] * 81
    assert rises[100] == pytest.approx(0.3)
    assert rises[120] == pytest.approx(0.3)
    assert all(b >= a for a, b in itertools.pairwise(rises))  # never falls as spend grows
    assert max(b - a for a, b in itertools.pairwise(rises)) < 0.03  # no jump
    assert rises[90] == pytest.approx(0.15)  # halfway up the smoothstep


def test_standing_takes_the_most_spent_period_and_retries_at_the_next_one() -> None:
    budget = Budget(daily=1.0, monthly=10.0, when_spent="refuse")
    now = datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC)
    fresh = budgets.standing_of({"daily": 0.5, "monthly": 8.0}, budget, now)
    assert (fresh.used, fresh.period, fresh.exhausted, fresh.retry_after) == (0.8, "monthly", False, 0)
    day = budgets.standing_of({"daily": 1.0, "monthly": 2.0}, budget, now)
    assert day.exhausted
    assert day.retry_after == 30
    assert "100% of the daily budget spent" in day.describe()
    month = budgets.standing_of({"daily": 1.0, "monthly": 10.0}, budget, now)
    assert month.retry_after == 30  # the last day of December: the month ends at midnight too
    mid_month = datetime(2026, 11, 14, 12, 0, tzinfo=UTC)
    assert budgets.seconds_to_next("monthly", mid_month) == (16 * 24 + 12) * 3600
    assert budgets.periods(mid_month) == {"daily": "2026-11-14", "monthly": "2026-11"}


# ---------------------------------------------------------------------------------------------
# Priority in the run-slot queue
# ---------------------------------------------------------------------------------------------


def test_waiting_requests_get_slots_by_priority_first_come_first_served_within_one() -> None:
    from hybrid.server import _Slots

    async def scenario() -> tuple[list[str], int, int]:
        slots, order = _Slots(1), []
        await slots.acquire(0)  # the one slot is busy

        async def wait(name: str, priority: int) -> None:
            await slots.acquire(priority)
            order.append(name)
            slots.release()

        tasks = []
        for name, priority in [("free-1", 0), ("free-2", 0), ("pro-1", 10), ("ent-1", 20), ("pro-2", 10)]:
            tasks.append(asyncio.create_task(wait(name, priority)))
            await asyncio.sleep(0)  # each reaches the queue in this order
        cancelled = asyncio.create_task(wait("ent-gone", 20))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
        waiting_all, waiting_pro = slots.waiting(), slots.waiting(10)
        slots.release()
        await asyncio.gather(*tasks)
        return order, waiting_all, waiting_pro

    order, waiting_all, waiting_pro = asyncio.run(scenario())
    assert order == ["ent-1", "pro-1", "pro-2", "free-1", "free-2"]
    assert (waiting_all, waiting_pro) == (5, 3)  # a cancelled waiter is not counted


def test_a_lower_tier_waiting_never_makes_a_higher_one_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from hybrid.server import OpenAIError, _Admission

    monkeypatch.setenv("HYBRID_MAX_ACTIVE_RUNS", "1")
    monkeypatch.setenv("HYBRID_MAX_WAITING_RUNS", "1")

    async def scenario() -> list[str]:
        admission, done, seen = _Admission(), asyncio.Event(), []

        async def run(priority: int) -> None:
            async with admission.slot(priority=priority):
                await done.wait()

        def refused(priority: int) -> bool:
            try:
                admission.refuse_if_full(priority)
            except OpenAIError as exc:
                return exc.status == 429
            return False

        tasks = [asyncio.create_task(run(0))]  # runs
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(run(0)))  # waits: the free tier's line is full
        await asyncio.sleep(0)
        seen.append(f"free {refused(0)}, pro {refused(10)}")
        tasks.append(asyncio.create_task(run(10)))  # the pro tier waits, ahead of the free one
        await asyncio.sleep(0)
        seen.append(f"free {refused(0)}, pro {refused(10)}, enterprise {refused(20)}")
        done.set()
        await asyncio.gather(*tasks)
        return seen

    assert asyncio.run(scenario()) == [
        "free True, pro False",
        "free True, pro True, enterprise False",
    ]
