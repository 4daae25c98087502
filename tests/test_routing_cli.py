"""`hybrid router train|calibrate` on a small JSONL, and `hybrid eval routing` on a small subset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hybrid import api
from hybrid.cli import cli
from hybrid.routing.model import RouterModel
from tests.conftest import REPO
from tests.fakes import FakeModels

ROUTELLM = REPO.parent / "shared" / "data" / "routellm"


def write_jsonl(path: Path, *, translations_ok: bool = False) -> Path:
    lines = []
    words = ["house", "cat", "table", "door", "book", "tree", "chair", "water", "car", "city", "sun", "moon"]
    if translations_ok:
        lines += [{"query": f"Translate the word '{w}' into French.", "small_correct": True,
                   "large_correct": True, "group": "translation"} for w in words]  # fmt: skip
    for i in range(24):
        lines.append({"query": f"Compute {17 + i} * {23 + 2 * i} - {i + 5} step by step.",
                      "small_correct": False, "large_correct": True, "group": "arithmetic"})  # fmt: skip
        lines.append({"query": f"Which river flows through city number {i} on the tourist map?",
                      "small_correct": True, "large_correct": True, "group": "trivia"})  # fmt: skip
    lines += [
        {"query": "What is 48 * 52 minus 19?", "label": 0, "weight": 2.0},
        {"query": "And the next one?", "context": "Name a river in France.", "label": 1},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.mark.integration
def test_train_then_calibrate(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "labels.jsonl")
    out = tmp_path / "router-test"
    runner = CliRunner()

    trained = runner.invoke(
        cli, ["router", "train", "--data", str(data), "--out", str(out), "--cv-folds", "3"]
    )

    assert trained.exit_code == 0, trained.output
    assert f"router written to {out}" in trained.stdout
    meta = json.loads((out / "router.json").read_text())
    assert meta["training_data"] == "labels.jsonl (50 examples)"
    # Two topics, easy to tell apart: every large-model win first, as the oracle (0.75 when half are wins).
    assert meta["metrics"]["out_of_fold"]["all"]["apgr"] == pytest.approx(0.75, abs=0.01)
    model = RouterModel.load(out)
    assert (
        model.score("Compute 31 * 47 - 12 step by step.").need_large
        > model.score("Which river flows here?").need_large
    )

    calibrated = runner.invoke(
        cli, ["router", "calibrate", "--data", str(data), "--max-large-share", "0.3", "--router", str(out)]
    )

    assert calibrated.exit_code == 0, calibrated.output
    assert f"saved to {out / 'router.json'}" in calibrated.stdout
    assert "expected quality" in calibrated.stdout
    assert "large-model share" in calibrated.stdout
    assert "95% CI" in calibrated.stdout
    threshold = json.loads((out / "router.json").read_text())["threshold"]
    assert threshold["rule"] == "max_large_share=0.3"
    assert threshold["large_share"] <= 0.3
    assert RouterModel.load(out).threshold == threshold["value"]

    from_scores = runner.invoke(
        cli, ["router", "calibrate", "--target-quality", "0.95", "--router", str(out)]
    )
    assert from_scores.exit_code == 0, from_scores.output
    record = json.loads((out / "router.json").read_text())["threshold"]
    assert record["calibrated_on"] == "the router's out-of-fold scores"
    assert record["quality"] >= 0.95 * record["large_accuracy"]


@pytest.mark.integration
def test_train_adds_feedback_with_a_weight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hybrid.feedback

    rows = [
        {"query": f"Compute {i} * 37 by hand.", "context": "", "label": 1, "source": "user"} for i in range(6)
    ]
    monkeypatch.setattr(hybrid.feedback, "labelled_examples", lambda settings: rows)
    data = write_jsonl(tmp_path / "labels.jsonl")
    default_root = tmp_path / "data" / "router"

    result = CliRunner().invoke(
        cli, ["router", "train", "--data", str(data), "--from-feedback", "--cv-folds", "0"]
    )

    assert result.exit_code == 0, result.output
    written = next(default_root.iterdir())  # a new versioned folder under the data directory
    assert str(written) in result.stdout
    meta = json.loads((written / "router.json").read_text())
    assert meta["training_data"].endswith("+ 6 feedback examples (weight 3)")
    assert meta["n_examples"] == 56


@pytest.mark.unit
def test_train_and_calibrate_refuse_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "hi", "label": 3}\n')
    nothing = runner.invoke(cli, ["router", "train"]).output
    assert "give --data FILE.jsonl, --routellm DIR or --from-feedback" in nothing
    result = runner.invoke(cli, ["router", "train", "--data", str(bad)])
    assert result.exit_code == 1
    assert "bad.jsonl:1" in result.output
    assert "small_ok must be 0 or 1" in result.output
    result = runner.invoke(
        cli, ["router", "calibrate", "--max-large-share", "0.3", "--target-quality", "0.9"]
    )
    assert "give exactly one of" in result.output


@pytest.mark.integration
def test_feedback_on_a_class_of_queries_changes_how_the_router_routes_it(
    tmp_path: Path, fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Users rate the small model's translations down; retrained on that, the router sends
    translations to the large model, and nothing else changes class."""
    base = write_jsonl(tmp_path / "labels.jsonl", translations_ok=True)
    runner = CliRunner()
    before = tmp_path / "before"
    trained = runner.invoke(cli, ["router", "train", "--data", str(base), "--out", str(before),
                                  "--cv-folds", "3", "--target-quality", "0.95"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    monkeypatch.setenv("HYBRID_ROUTER_PATH", str(before))
    probe = "Translate the word 'harbour' into French."
    assert api.ask(probe).route["route"] == "small"

    fakes.set("small", "Le harbour.")
    for word in ["window", "bread", "river", "summer", "friend", "mountain", "garden", "winter"]:
        answer = api.ask(f"Translate the word '{word}' into French.", force_route="small")
        api.feedback(answer.thread_id, "down", comment="not French")
    after = tmp_path / "after"
    retrained = runner.invoke(cli, ["router", "train", "--data", str(base), "--from-feedback",
                                    "--out", str(after), "--cv-folds", "3"])  # fmt: skip

    assert retrained.exit_code == 0, retrained.output
    meta = json.loads((after / "router.json").read_text())
    assert meta["training_data"].endswith("+ 8 feedback examples (weight 3)")
    assert "(target_quality=0.95) saved to" in retrained.output  # recalibrated by the current rule
    monkeypatch.setenv("HYBRID_ROUTER_PATH", str(after))
    moved = api.ask(probe)
    assert moved.route["route"] == "large", (moved.route["reasons"], retrained.output)
    assert moved.route["router"].startswith("learned (after")
    assert api.ask("Which river flows through city number 3 on the tourist map?").route["route"] == "small"


@pytest.mark.integration
@pytest.mark.timeout(900)  # trains and scores routers on four benchmarks: 1 min here, 3 with both cores busy
@pytest.mark.skipif(not ROUTELLM.is_dir(), reason=f"RouteLLM data not at {ROUTELLM}")
def test_eval_routing_on_a_small_subset(tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    result = CliRunner().invoke(
        cli,
        [
            "eval",
            "routing",
            "--routellm",
            str(ROUTELLM),
            "--max-items",
            "150",
            "--json",
            "--plot",
            str(plots),
        ],
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for name in ("mmlu_random_split", "mmlu_unseen_subjects", "gsm8k_query", "gsm8k_cascade"):
        for row in ("ours", "random", "oracle", "routellm_published"):
            assert set(report[name][row]) == {"apgr", "cpt50", "cpt80"}
        assert report[name]["items"] == 150
        assert 0 <= report[name]["ours"]["cpt50"] <= 1
        assert report[name]["oracle"]["apgr"] > 1
        assert (plots / f"{name}.png").stat().st_size > 1000
    assert report["gsm8k_cascade"]["ours"]["apgr"] > 0.6  # response checks work even on 120 rows
