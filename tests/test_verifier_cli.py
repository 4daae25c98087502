"""`hybrid verifier train|calibrate` on a small JSONL, the shipped artifact with real MiniLM, and a quick
`hybrid eval verifier` that runs the real small model (SmolLM2-135M)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from graphs.state import Draft, Hit
from hybrid.cli import cli
from hybrid.settings import DEFAULT_VERIFIER_PATH
from hybrid.verification.judge import judge_draft
from hybrid.verification.model import VerifierModel
from tests.conftest import REPO
from tests.fakes import small_draft

XQUAD = REPO.parent / "shared" / "data" / "qa" / "xquad-en-dev.json"

TOPICS = [
    ("The Rhine flows through Basel, Strasbourg and Cologne before reaching Rotterdam.",
     "Which cities does the Rhine flow through?", "The Rhine flows through Basel, Strasbourg and Cologne."),
    ("Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911.",
     "When did Marie Curie win the Nobel Prize in Chemistry?", "Marie Curie won it in 1911."),
    ("The Amazon rainforest covers about 5.5 million square kilometres of South America.",
     "How large is the Amazon rainforest?", "It covers about 5.5 million square kilometres."),
    ("Johannes Gutenberg introduced movable-type printing to Europe around 1440 in Mainz.",
     "Where did Gutenberg introduce printing?", "Gutenberg introduced printing in Mainz."),
]  # fmt: skip


def write_jsonl(path: Path) -> Path:
    """Good answers grounded in their passage; bad ones invented, off topic or refusing."""
    lines = []
    for n in range(6):
        for t, (passage, question, answer) in enumerate(TOPICS):
            other = TOPICS[(t + 1) % len(TOPICS)][0]
            meta = {"mean_token_logprob": -0.2 - 0.05 * n, "min_token_prob": 0.3}
            unsure = {"mean_token_logprob": -1.1, "min_token_prob": 0.05}
            group = f"topic{t}-{n % 3}"
            lines += [
                {"question": question, "answer": answer, "passages": [passage], "finish_reason": "stop",
                 "model_meta": meta, "good": 1, "group": group},
                {"question": question, "answer": f"It was decided in {1700 + 37 * n} by Napoleon Bonaparte.",
                 "passages": [other], "finish_reason": "stop",
                 "model_meta": unsure, "good": 0, "group": group},
                {"question": question, "answer": "I'm sorry, the sources do not say.", "passages": [other],
                 "finish_reason": "stop", "model_meta": meta, "good": 0, "group": group},
            ]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.mark.integration
def test_train_then_calibrate(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "drafts.jsonl")
    out = tmp_path / "verifier-test"
    runner = CliRunner()

    trained = runner.invoke(
        cli, ["verifier", "train", "--data", str(data), "--out", str(out), "--cv-folds", "3"]
    )

    assert trained.exit_code == 0, trained.output
    assert f"verifier written to {out} (72 drafts; out of fold AUROC" in trained.stdout
    meta = json.loads((out / "verifier.json").read_text())
    assert meta["training_data"]["description"] == "drafts.jsonl (72 drafts)"
    assert meta["training_data"]["good"] == 24
    assert meta["metrics"]["out_of_fold"]["calibrated"]["auroc"] > 0.9
    assert meta["threshold"] is None
    assert len(meta["coefficients"]) == len(meta["feature_names"]) == len(meta["means"])

    calibrated = runner.invoke(
        cli,
        ["verifier", "calibrate", "--data", str(data), "--target-precision", "0.9", "--verifier", str(out)],
    )

    assert calibrated.exit_code == 0, calibrated.output
    assert f"saved to {out / 'verifier.json'}" in calibrated.stdout
    assert "expected precision" in calibrated.stdout
    assert "95% CI" in calibrated.stdout
    threshold = json.loads((out / "verifier.json").read_text())["threshold"]
    assert threshold["rule"] == "target_precision=0.9"
    assert threshold["precision"] >= 0.9
    assert "out-of-fold" in threshold["calibrated_on"]
    assert VerifierModel.load(out).threshold == threshold["value"]

    by_share = runner.invoke(
        cli,
        ["verifier", "calibrate", "--data", str(data), "--max-reject-share", "0.5", "--verifier", str(out)],
    )
    assert by_share.exit_code == 0, by_share.output
    assert json.loads((out / "verifier.json").read_text())["threshold"]["accept_share"] >= 0.5


@pytest.mark.unit
def test_calibrate_needs_exactly_one_rule(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "drafts.jsonl")
    result = CliRunner().invoke(cli, ["verifier", "calibrate", "--data", str(data)])
    assert result.exit_code == 2
    assert "exactly one of --target-precision and --max-reject-share" in result.output


@pytest.mark.unit
def test_bad_training_data_gives_one_clear_line(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"question": "q", "answer": "a"}\n')
    result = CliRunner().invoke(cli, ["verifier", "train", "--data", str(data)])
    assert result.exit_code == 1
    assert "bad.jsonl:1: missing 'good'" in result.output


def _draft(text: str, finish: str = "stop", logprob: float = -0.4) -> Draft:
    meta = {"mean_token_logprob": logprob, "min_token_prob": 0.1}
    return small_draft(text, model="llamacpp:smollm2-135m-instruct", finish=finish, meta=meta)


PASSAGE = (
    "The Panthers defense gave up just 308 points, ranking sixth in the league, while also leading the "
    "NFL in interceptions with 24 and boasting four Pro Bowl selections. Pro Bowl defensive tackle Kawann "
    "Short led the team in sacks with 11, while also forcing three fumbles and recovering two."
)


@pytest.mark.integration
def test_the_shipped_verifier_prefers_a_correct_grounded_answer() -> None:
    model = VerifierModel.load(DEFAULT_VERIFIER_PATH)
    assert model.threshold is not None
    question = "How many points did the Panthers defense surrender?"
    hits = [
        Hit(id="1", text=PASSAGE, source="panthers.txt", score=1.0, similarity=0.7, ranks={}, metadata={})
    ]

    def score(text: str, finish: str = "stop") -> float:
        verdict = judge_draft(question, _draft(text, finish), hits, None, verifier_path=DEFAULT_VERIFIER_PATH)
        assert verdict["calibrated"]
        return verdict["score"]

    # The phrase the shipped small model writes (it answers from a Q:/A: transcript); the verifier
    # is calibrated on answers of that kind.
    correct = score("308 points.")
    assert correct > score("The Panthers defense surrendered 512 points.")  # wrong, unsupported number
    assert correct > score("Bananas are a good source of potassium and vitamin B6.")  # ungrounded
    assert correct > score("How many points did the Panthers defense surrender?")  # echo
    assert correct > score("I'm sorry, I don't know.")  # refusal
    assert correct > score("The Panthers defense the Panthers defense the Panthers defense the", "length")


@pytest.mark.e2e
def test_eval_verifier_on_a_few_questions_with_the_real_small_model() -> None:
    runner = CliRunner()
    args = ["eval", "verifier", "--xquad", str(XQUAD), "--max-items", "12", "--folds", "2", "--json"]

    result = runner.invoke(cli, args)

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == 12
    assert report["folds"] == 2
    for score in ("heuristic", "calibrated"):
        assert set(report[score]) == {"auroc", "brier", "ece"}
        assert 0.0 <= report[score]["brier"] <= 1.0
    assert report["at_threshold"]["rule"] == "target_precision=0.9"
    assert len(report["at_threshold"]["thresholds"]) == 2

    again = runner.invoke(cli, args)  # the answers are cached: no model call, same figures
    assert json.loads(again.stdout) == report
    assert "generating" not in again.output
