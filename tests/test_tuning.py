"""Learning the served models, without models: label precedence, the judge's order swap, joint
calibration, the registry's versions, the question sets' scoring, and shadow scheduling."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from hybrid import registry
from hybrid.qa import QAFormatError, load_qa, score
from hybrid.settings import resolve_settings
from hybrid.tuning import calibrate, judge
from hybrid.tuning.labels import human_labels, labelled_pairs
from hybrid.tuning.pairs import Pair, TierDraft
from tests.fakes import FakeModels

# -- question sets -----------------------------------------------------------------------------------


@pytest.mark.unit
def test_squad_gsm8k_and_plain_files_load_and_score(tmp_path: Path) -> None:
    squad = tmp_path / "set.json"
    squad.write_text(json.dumps({"data": [{"title": "Rivers", "paragraphs": [{
        "context": "The Danube empties into the Black Sea.",
        "qas": [{"id": "q1", "question": "Where does the Danube end?",
                 "answers": [{"text": "the Black Sea"}]}],
    }]}]}))  # fmt: skip
    loaded = load_qa(squad)
    assert loaded.format == "squad"
    assert not loaded.closed_book
    assert loaded.items[0].group == "Rivers"
    assert score("It empties into the Black Sea.", loaded.items[0]).correct
    assert score("Black Sea", loaded.items[0]).exact == 1.0
    assert score(None, loaded.items[0]).f1 == 0.0

    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text(json.dumps({"question": "2 and 3 eggs?", "answer": "2+3=5\n#### 5"}) + "\n")
    problem = load_qa(gsm)
    assert (problem.format, problem.closed_book, problem.items[0].kind) == ("gsm8k", True, "numeric")
    assert score("So she has 5 eggs.", problem.items[0]).correct
    assert not score("She has 6.", problem.items[0]).correct

    plain = tmp_path / "plain.jsonl"
    plain.write_text(
        json.dumps({"question": "Capital of Peru?", "answers": ["Lima"], "context": "Lima is..."})
    )
    assert load_qa(plain).items[0].context == "Lima is..."


@pytest.mark.unit
@pytest.mark.parametrize(
    ("content", "message"),
    [('{"data": 3}', "SQuAD format"), ("not json", "not JSON"), ('{"question": "x"}', "answers")],
)
def test_malformed_question_sets_say_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / ("set.json" if content.startswith('{"data"') or content == "not json" else "set.jsonl")
    path.write_text(content)
    with pytest.raises(QAFormatError, match=message):
        load_qa(path)


# -- the judge ---------------------------------------------------------------------------------------


@pytest.mark.integration
def test_the_judge_asks_twice_with_the_answers_swapped_and_keeps_only_agreeing_grades(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A judge that always grades whatever stands in position A right and B wrong: pure position bias.
    fakes.set("judge", "A: right\nB: wrong")
    monkeypatch.setenv("HYBRID_JUDGE_MODEL", "fake:judge")
    biased = judge.judge_pair("Q?", ["source"], "small answer", "large answer", resolve_settings())
    assert (biased.small, biased.large) == (None, None)  # the swap cancels it: undecided
    prompts = [m[-1].text for m in fakes.calls("judge")]
    assert "Answer A: small answer\nAnswer B: large answer" in prompts[0]
    assert "Answer A: large answer\nAnswer B: small answer" in prompts[1]

    fakes.set("judge", "A: right\nB: right")
    agreed = judge.judge_pair("Q?", [], "s", "l", resolve_settings())
    assert (agreed.small, agreed.large) == ("right", "right")
    fakes.set(
        "judge", lambda m: "A: wrong\nB: correct" if "Answer A: s\n" in m[-1].text else "A: correct\nB: wrong"
    )
    consistent = judge.judge_pair("Q?", [], "s", "l", resolve_settings())
    assert (consistent.small, consistent.large) == ("wrong", "right")


@pytest.mark.unit
def test_judge_replies_are_parsed_leniently() -> None:
    assert judge.parse("A: Right\nB = incorrect, because...") == {"A": "right", "B": "wrong"}
    assert judge.parse("I think both are fine") == {}


# -- labels ------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_people_outrank_references_and_references_outrank_the_judge(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hybrid.database import database_for, shadow_pairs
    from hybrid.feedback import record_review_feedback

    fakes.set("judge", "A: right\nB: right")
    monkeypatch.setenv("HYBRID_JUDGE_MODEL", "fake:judge")
    settings = resolve_settings()

    def pair(trace: str, reference: list[str] | None) -> dict:
        draft = {
            "text": "Paris.",
            "model": "fake:x",
            "cost": 0.0,
            "error": None,
            "finish_reason": "stop",
            "model_meta": {},
        }
        return {
            "trace_id": trace,
            "at": datetime.now(UTC),
            "thread_id": f"t-{trace}",
            "question": "Capital of France?",
            "passages": [],
            "route": {},
            "small": {**draft, "tier": "small", "text": "Lyon."},
            "large": {**draft, "tier": "large"},
            "shadow_tier": "large",
            "shadow_outcome": "ok",
            "shadow_cost": 0.0,
            "reference": reference,
        }

    with database_for(settings).engine.begin() as connection:
        connection.execute(
            shadow_pairs.insert(), [pair("ref", ["Paris"]), pair("judged", None), pair("reviewed", ["Paris"])]
        )
    record_review_feedback(settings, case_id="c1", thread_id="t-reviewed", trace_id="reviewed", question="q",
                           action="approve", approved_tier="small", small_tried=True)  # fmt: skip

    pairs, counts = labelled_pairs(settings)
    by_id = {p.id: p for p in pairs}
    assert counts["used"] == 3
    assert (by_id["ref"].small_good, by_id["ref"].large_good, by_id["ref"].source) == (
        False,
        True,
        "reference",
    )
    assert (by_id["judged"].small_good, by_id["judged"].source) == (True, "judge")
    # The reviewer approved the small answer: that beats its reference label (Lyon is not Paris).
    assert by_id["reviewed"].small_good is True
    assert by_id["reviewed"].large_good is True  # the large tier still labelled by the reference
    assert len(fakes.calls("judge")) == 2  # one pair judged, twice; its verdict is kept
    labelled_pairs(settings)
    assert len(fakes.calls("judge")) == 2


@pytest.mark.unit
def test_reviewer_verdicts_label_every_answer_they_saw() -> None:
    reject = [{"source": "reviewer", "comment": "reject", "tier": None, "rating": "down"}]
    assert {t: label.good for t, label in human_labels(reject, {"small", "large"}).items()} == {
        "small": False,
        "large": False,
    }
    thumbs = [{"source": "user", "comment": None, "tier": "large", "rating": "up"}]
    assert human_labels(thumbs, {"large"})["large"].source == "feedback"


# -- joint calibration ---------------------------------------------------------------------------------


def _scores(n: int = 400, seed: int = 0) -> calibrate.Scores:
    """Small is right where its verifier is confident; large is right half the time."""
    rng = np.random.default_rng(seed)
    p_small = rng.uniform(0, 1, n)
    small_right = rng.uniform(0, 1, n) < p_small * 0.8
    large_right = rng.uniform(0, 1, n) < 0.5
    return calibrate.Scores(
        need_large=rng.uniform(-1, 1, n),
        p_small=p_small,
        p_large=np.where(large_right, rng.uniform(0.5, 1, n), rng.uniform(0, 0.6, n)),
        quality_small=small_right.astype(float),
        quality_large=large_right.astype(float),
        cost_small=np.full(n, 0.01),
        cost_large=np.full(n, 1.0),
        groups=np.array([f"g{i % 20}" for i in range(n)]),
    )


@pytest.mark.unit
def test_the_chosen_plan_meets_the_quality_target_at_the_lowest_cost_and_bounds_review() -> None:
    scores = _scores()
    choice = calibrate.choose(scores, target_quality=0.95, max_review_share=0.15)
    assert choice.met
    out = calibrate.simulate(scores, choice.plan)
    assert out.quality.mean() >= 0.95 * scores.quality_large.mean() - 1e-9
    assert out.review.mean() <= 0.15 + 1e-9
    always_large = calibrate.Plan(router=-np.inf, small=np.inf, large=-np.inf)
    assert out.cost.sum() < calibrate.simulate(scores, always_large).cost.sum()  # it saves
    expected = choice.expected
    assert expected["quality"]["ci95"][0] <= expected["quality"]["value"] <= expected["quality"]["ci95"][1]


@pytest.mark.unit
def test_a_large_share_target_is_met_at_the_best_quality_and_an_impossible_one_says_so() -> None:
    scores = _scores()
    share = calibrate.choose(scores, max_large_share=0.3)
    assert calibrate.simulate(scores, share.plan).large.mean() <= 0.3 + 1e-9
    impossible = calibrate.choose(scores, target_quality=1.4, max_review_share=0.0)
    assert not impossible.met
    assert "no plan meets the target" in impossible.note


@pytest.mark.unit
def test_simulation_follows_the_graph() -> None:
    scores = calibrate.Scores(
        need_large=np.array([0.9, -0.5, -0.5, -0.5]),
        p_small=np.array([0.9, 0.9, 0.1, 0.1]),
        p_large=np.array([0.8, 0.8, 0.8, 0.1]),
        quality_small=np.array([1.0, 1.0, 0.0, 0.0]),
        quality_large=np.array([1.0, 1.0, 1.0, 1.0]),
        cost_small=np.ones(4),
        cost_large=np.full(4, 10.0),
        groups=np.array(["a", "b", "c", "d"]),
    )
    out = calibrate.simulate(scores, calibrate.Plan(router=0.5, small=0.5, large=0.5))
    # started large and accepted; small accepted; small escalated, large accepted; escalated to review
    assert out.quality.tolist() == [1.0, 1.0, 1.0, 0.0]
    assert out.cost.tolist() == [10.0, 1.0, 11.0, 11.0]
    assert out.review.tolist() == [0.0, 0.0, 0.0, 1.0]


# -- the registry ----------------------------------------------------------------------------------


def _version_folder(tmp_path: Path, name: str, small: str, large: str) -> Path:
    folder = tmp_path / name
    components = (
        ("router", {"models": {"small": small, "large": large}}),
        ("verifier-small", {"model": small}),
        ("verifier-large", {"model": large}),
    )
    for component, meta in components:
        (folder / component).mkdir(parents=True)
        (folder / component / ("router.json" if component == "router" else "verifier.json")).write_text(
            json.dumps(meta)
        )
    (folder / "manifest.json").write_text(json.dumps({"trained_on": {"description": name}}))
    return folder


@pytest.mark.integration
def test_versions_promote_canary_and_roll_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_SMALL_MODEL", "fake:small")
    monkeypatch.setenv("HYBRID_LARGE_MODEL", "fake:large")
    settings = resolve_settings()
    assert registry.resolve(settings).version == "shipped"

    v1 = registry.add_version(
        settings, _version_folder(tmp_path, "a", "fake:small", "fake:large"), actor="ana"
    )
    v2 = registry.add_version(
        settings, _version_folder(tmp_path, "b", "fake:small", "fake:large"), actor="ana"
    )
    assert (v1, v2) == ("v1", "v2")
    with pytest.raises(registry.RegistryError, match="already exists"):
        registry.add_version(settings, _version_folder(tmp_path, "c", "x", "y"), version="v1")

    registry.promote(settings, v1, actor="ana")
    served = registry.resolve(settings, "any-thread")
    assert (served.version, served.origin, served.stale) == ("v1", "promoted", ())
    assert Path(served.paths["router"]).parent == settings.data_dir / "registry" / "v1"

    registry.start_canary(settings, v2, 0.5, actor="bo")
    chosen = {registry.resolve(settings, f"thread-{i}").version for i in range(40)}
    assert chosen == {"v1", "v2"}
    sticky = registry.resolve(settings, "thread-7").version
    assert all(registry.resolve(settings, "thread-7").version == sticky for _ in range(5))

    registry.promote(settings, v2, actor="bo")  # ends the canary
    assert registry.state(settings, fresh=True).canary is None
    assert registry.resolve(settings, "thread-1").version == "v2"
    assert registry.rollback(settings, actor="cy") == "v1"
    assert registry.rollback(settings, actor="cy") == "shipped"
    with pytest.raises(registry.RegistryError, match="nothing to roll back"):
        registry.rollback(settings, actor="cy")
    assert [e["action"] for e in registry.history(settings)] == [
        "promote",
        "canary",
        "promote",
        "rollback",
        "rollback",
    ]


@pytest.mark.integration
def test_artefacts_trained_on_other_models_are_stale_and_every_route_says_so(
    tmp_path: Path, fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hybrid import api

    settings = resolve_settings()
    version = registry.add_version(
        settings, _version_folder(tmp_path, "old", "ollama:a", "ollama:b"), actor="ana"
    )
    registry.promote(settings, version, actor="ana")
    monkeypatch.setenv("HYBRID_ROUTER", "heuristic")
    fakes.set("small", "Paris.")
    answer = api.ask("What is the capital of France?")
    versions = answer.route["versions"]
    assert versions["version"] == "v1"
    assert "router calibrated for ollama:a -> ollama:b, serving fake:small -> fake:large" in versions["stale"]
    assert any("are stale" in reason and "hybrid tune" in reason for reason in answer.route["reasons"])


@pytest.mark.integration
def test_a_canary_share_outside_zero_to_one_and_an_unknown_version_are_refused() -> None:
    settings = resolve_settings()
    with pytest.raises(registry.RegistryError, match="no version"):
        registry.promote(settings, "v9", actor="x")
    with pytest.raises(registry.RegistryError, match="share"):
        registry.start_canary(settings, "shipped", 1.5, actor="x")


# -- shadow scheduling -------------------------------------------------------------------------------


@pytest.mark.integration
def test_shadow_runs_respect_the_sample_the_data_boundary_and_the_queue(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hybrid import shadow

    monkeypatch.setenv("HYBRID_SHADOW_RATE", "1")
    settings = resolve_settings()
    values = {
        "status": "answered",
        "trace_id": "t1",
        "answered_by": "fake:small",
        "question": "q",
        "messages": [],
        "drafts": [{"tier": "small", "model": "fake:small", "text": "a", "error": None}],
        "route": {"allowed_tiers": ["small"], "models": {"small": ["fake:small"], "large": []}},
    }
    assert shadow.schedule(settings, values, thread_id="t") == "skipped_boundary"
    assert shadow.sampled("any", 1.0)
    assert sum(shadow.sampled(f"trace-{i}", 0.25) for i in range(2000)) == pytest.approx(500, abs=80)
    assert shadow.schedule(settings, {**values, "cached": {"answer": "a"}}, thread_id="t") == "not_sampled"


@pytest.mark.integration
@pytest.mark.parametrize("kept", ["prompts", "answers"])
def test_no_shadow_pair_is_kept_for_a_service_tier_that_keeps_only_hashes(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch, kept: str
) -> None:
    from hybrid import shadow

    monkeypatch.setenv("HYBRID_SHADOW_RATE", "1")
    retention = {"prompts": "keep", "answers": "keep"} | {kept: "hash"}
    values = {
        "status": "answered",
        "trace_id": "t1",
        "answered_by": "fake:small",
        "question": "q",
        "messages": [],
        "drafts": [{"tier": "small", "model": "fake:small", "text": "a", "error": None}],
        "route": {
            "allowed_tiers": ["small", "large"],
            "models": {"small": ["fake:small"], "large": ["fake:large"]},
            "policies": {"tier": "enterprise"} | retention,
        },
    }
    from hybrid.observability import REGISTRY

    def skipped() -> float:  # counters add up over the session: compare differences
        return REGISTRY.get_sample_value("hybrid_shadow_runs_total", {"outcome": "skipped_retention"}) or 0.0

    before = skipped()
    assert shadow.schedule(resolve_settings(), values, thread_id="t") == "skipped_retention"
    assert skipped() == before + 1
    # A tier that keeps text gets past this check (to the next: here, no large tier to run).
    kept = {"allowed_tiers": ["small"], "models": {"small": ["fake:small"], "large": []}, "policies": {}}
    assert shadow.schedule(resolve_settings(), {**values, "route": kept}, thread_id="t") == "skipped_boundary"


@pytest.mark.integration
def test_a_sampled_turn_becomes_a_pair_after_the_answer_and_a_failing_shadow_never_touches_it(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    from hybrid import api
    from hybrid.database import database_for, shadow_pairs

    monkeypatch.setenv("HYBRID_SHADOW_RATE", "1")
    monkeypatch.setenv("HYBRID_ROUTER", "heuristic")
    fakes.set("small", "Paris is the capital of France.")
    fakes.set("large", "Paris.")
    answer = api.ask("What is the capital of France?", reference=["Paris"])
    assert answer.answered_by == "fake:small"
    assert api.wait_for_shadow_runs(30)
    fakes.set("large", RuntimeError("the large model is down"))
    failed = api.ask("What is the capital of Spain?")
    assert (failed.status, failed.answer) == ("answered", "Paris is the capital of France.")
    assert api.wait_for_shadow_runs(30)

    with database_for(resolve_settings()).engine.connect() as connection:
        rows = {r.trace_id: r for r in connection.execute(sa.select(shadow_pairs))}
    pair = rows[answer.trace_id]
    assert (pair.shadow_tier, pair.shadow_outcome, pair.reference) == ("large", "ok", ["Paris"])
    assert (pair.small["text"], pair.large["text"]) == ("Paris is the capital of France.", "Paris.")
    assert pair.route["versions"]["version"] == "shipped"
    broken = rows[failed.trace_id]
    assert broken.shadow_outcome == "failed"
    assert "the large model is down" in broken.large["error"]
    # The fake's two calls for the second question: the user's small answer, the failed shadow.
    assert len(fakes.calls("large")) == 2


@pytest.mark.integration
def test_an_escalated_turn_is_a_pair_without_running_anything(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    from hybrid import api
    from hybrid.database import database_for, shadow_pairs

    monkeypatch.setenv("HYBRID_SHADOW_RATE", "1")
    monkeypatch.setenv("HYBRID_SMALL_ACCEPT_THRESHOLD", "1.01")  # every small draft escalates
    fakes.set("small", "Maybe Lyon.")
    fakes.set("large", "Paris.")
    answer = api.ask("What is the capital of France?")
    assert answer.answered_by == "fake:large"
    assert api.wait_for_shadow_runs(30)
    with database_for(resolve_settings()).engine.connect() as connection:
        row = connection.execute(sa.select(shadow_pairs)).one()
    assert (row.shadow_tier, row.shadow_outcome, row.shadow_cost) == (None, "observed", 0.0)
    assert len(fakes.calls("large")) == 1


# -- tuning on little traffic ------------------------------------------------------------------------


def _pair(i: int, group: str, small_good: bool, large_good: bool) -> Pair:
    def draft(model: str, good: bool, cost: float) -> TierDraft:
        return TierDraft(model=model, text="red" if good else "I do not know", cost=cost)

    return Pair(
        id=f"{group}-{i}",
        group=group,
        question=f"Question {i} about {group}: what colour is thing {i}?",
        passages=(f"Thing {i} of {group} is red.",),
        small=draft("small", small_good, 0.001),
        large=draft("large", large_good, 0.01),
        small_quality=float(small_good),
        large_quality=float(large_good),
        small_good=small_good,
        large_good=large_good,
        source="reference",
    )


TWO_ARTICLES = [_pair(i, "Orchards", False, False) for i in range(4)] + [
    _pair(i, "Lighthouses", i % 2 == 0, i < 3) for i in range(4)
]
# Traffic: every conversation its own group, one of eight answered right by both tiers.
EIGHT_CONVERSATIONS = [_pair(0, "thread-0", True, True)] + [
    _pair(i, f"thread-{i}", False, False) for i in range(1, 8)
]


@pytest.mark.integration
@pytest.mark.parametrize("pairs", [TWO_ARTICLES, EIGHT_CONVERSATIONS], ids=["two-articles", "eight-threads"])
def test_folds_whose_pairs_all_ended_alike_still_tune(tmp_path: Path, pairs: list[Pair]) -> None:
    """Little traffic: a router fold trained on pairs that all ended alike, or on one group, has
    nothing to learn a route from; tuning goes on with the prior and writes a version."""
    from hybrid.tuning.tune import tune

    report = tune(pairs, tmp_path / "v1", models={"small": "s:a", "large": "l:b"}, description="t", folds=3)

    assert report.pairs == 8
    manifest = json.loads((tmp_path / "v1" / "manifest.json").read_text())
    assert manifest["trained_on"]["small_good"] == sum(p.small_good for p in pairs)
    assert manifest["trained_on"]["large_good"] == sum(p.large_good for p in pairs)
    assert {"router", "verifier-small", "verifier-large"} <= {p.name for p in (tmp_path / "v1").iterdir()}


@pytest.mark.unit
def test_pairs_that_cannot_train_a_version_say_why_and_write_nothing(tmp_path: Path) -> None:
    from hybrid.errors import NotEnoughToLearn
    from hybrid.tuning.tune import tune

    models = {"small": "s:a", "large": "l:b"}
    all_wrong = [_pair(i, f"thread-{i}", False, i % 2 == 0) for i in range(6)]
    with pytest.raises(NotEnoughToLearn, match="every small-tier draft of the 6 pairs was wrong"):
        tune(all_wrong, tmp_path / "v1", models=models, description="t")
    one_group = [_pair(i, "thread-0", i % 2 == 0, True) for i in range(6)]
    with pytest.raises(NotEnoughToLearn, match="at least two groups"):
        tune(one_group, tmp_path / "v1", models=models, description="t")
    assert not (tmp_path / "v1").exists()
