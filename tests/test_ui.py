"""The Streamlit pages, run headless in-process (`AppTest`) with fake models behind the real façade."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from hybrid import api
from hybrid.database import audit, database_for
from hybrid.settings import resolve_settings
from tests.conftest import REPO
from tests.fakes import FakeModels
from ui.streaming import LiveAnswer

APP = str(REPO / "ui" / "app.py")


def open_app(page: str | None = None, **query: str) -> AppTest:
    """The app as a browser would open it, optionally on a page and with URL query parameters."""
    app = AppTest.from_file(APP, default_timeout=60)
    for key, value in query.items():
        app.query_params[key] = value
    app.run()
    if page:
        app.switch_page(page).run()
    assert not app.exception, app.exception
    return app


def ask(app: AppTest, question: str) -> AppTest:
    app.chat_input[0].set_value(question).run()
    assert not app.exception, app.exception
    return app


def texts(element) -> str:
    """Every Markdown and caption text inside an element, joined."""
    return "\n".join(m.value for m in [*element.markdown, *element.caption])


def refuse_then_answer(fakes: FakeModels) -> None:
    """Small says it does not know; large answers questions about France; anything else fails both."""
    fakes.set("small", "I don't know.")
    fakes.set(
        "large", lambda m: "Paris is the capital of France." if "France" in m[-1].text else "I don't know."
    )


# --- Chat ------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_an_answer_shows_its_route_badge_score_reason_usage_and_sources(
    fakes: FakeModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "france.md").write_text("# France\n\nThe capital of France is Paris, on the Seine.")
    api.ingest([docs])
    monkeypatch.setenv("HYBRID_RETRIEVAL", "always")
    fakes.set("small", "The capital of France is Paris.")

    app = ask(open_app(), "What is the capital of France?")

    assistant = app.chat_message[1]
    assert assistant.markdown[0].value == "The capital of France is Paris."
    shown = texts(assistant)
    assert ":green-badge[:material/bolt: small model]" in shown
    assert "verifier 1.00 ≥ 0.60" in shown
    answer = api.answer_for(app.query_params["thread"])
    assert answer.explanation in shown
    assert "tokens" in shown
    assert "cost $0" in shown
    (sources,) = assistant.expander
    assert sources.label == "Sources (1)"
    assert "france.md" in texts(sources)
    assert "The capital of France is Paris, on the Seine." in texts(sources)


@pytest.mark.integration
def test_an_escalated_answer_shows_the_small_draft_it_replaced(fakes: FakeModels) -> None:
    refuse_then_answer(fakes)

    app = ask(open_app(), "What is the capital of France?")

    assistant = app.chat_message[1]
    assert assistant.markdown[0].value == "Paris is the capital of France."
    assert ":blue-badge[:material/psychology: large model]" in texts(assistant)
    replaced = next(e for e in assistant.expander if e.label.startswith("Replaced draft of the small model"))
    assert "~~I don't know.~~" in texts(replaced)
    assert "failed verification" in texts(replaced)


def shown_while_answering(message) -> str:
    """The record the chat keeps of what the live view showed while this answer was made."""
    (marker,) = [m.value for m in message.markdown if "data-shown" in m.value]
    return re.search(r'data-shown="([^"]*)"', marker).group(1)


@pytest.mark.integration
def test_a_finished_answer_keeps_a_record_of_what_the_live_view_showed(fakes: FakeModels) -> None:
    refuse_then_answer(fakes)

    app = ask(open_app(), "What is the capital of France?")

    # The draft, struck out, and the large model's answer were on screen for a moment each; the
    # finished message says so, in order.
    shown = shown_while_answering(app.chat_message[1])
    assert shown == "small:draft small:not-accepted large:draft large:verified"
    fakes.set("small", "The capital of France is Paris.")
    ask(app, "And what is the capital of France again?")
    assert shown_while_answering(app.chat_message[1]) == shown  # each answer keeps its own
    assert shown_while_answering(app.chat_message[3]) == "small:draft small:verified"
    reloaded = open_app(thread=app.query_params["thread"])  # another session showed nothing live
    assert not [md for m in reloaded.chat_message for md in m.markdown if "data-shown" in md.value]


@pytest.mark.integration
def test_the_live_view_marks_the_draft_then_verifies_or_replaces_it(fakes: FakeModels) -> None:
    refuse_then_answer(fakes)
    live = LiveAnswer()
    seen = []
    for event in api.stream("What is the capital of France?"):
        live.feed(event)
        seen.append([(d.tier, d.state) for d in live.drafts])

    assert ("small", "drafting") in {d for step in seen for d in step}  # tokens arrive before the verdict
    assert [("small", "checking")] in seen
    assert [("small", "failed"), ("large", "drafting")] in seen
    assert seen[-1] == [("small", "failed"), ("large", "verified")]
    assert live.drafts[0].text == "I don't know."
    assert "refuses or does not know" in live.drafts[0].note
    assert live.drafts[1].text == "Paris is the capital of France."
    assert live.answer is not None
    assert live.answer.answered_by == "fake:large"


@pytest.mark.integration
def test_a_conversation_continues_and_survives_a_reload(fakes: FakeModels) -> None:
    # Either tier answers alike: this test is about the conversation, not where each turn goes.
    fakes.set("small", lambda messages: f"Answer {len(messages)}.")
    fakes.set("large", lambda messages: f"Answer {len(messages)}.")
    app = ask(ask(open_app(), "First question?"), "Second question?")
    thread = app.query_params["thread"]
    assert [m.markdown[0].value for m in app.chat_message] == [
        "First question?",
        "Answer 2.",
        "Second question?",
        "Answer 4.",
    ]

    reloaded = open_app(thread=thread)  # a new browser session on the same URL

    assert [m.markdown[0].value for m in reloaded.chat_message] == [
        "First question?",
        "Answer 2.",
        "Second question?",
        "Answer 4.",
    ]
    assert api.answer_for(thread).question == "Second question?"


@pytest.mark.integration
def test_the_sidebar_lists_conversations_and_reopens_one(fakes: FakeModels) -> None:
    fakes.set("small", "Paris.")
    first = api.ask("What is the capital of France?")
    api.ask("Tell me about hafnium")

    app = open_app()
    labels = [b.label for b in app.sidebar.button if b.key and b.key.startswith("open-")]
    assert labels == ["Tell me about hafnium", "What is the capital of France?"]

    app.button(key=f"open-{first.thread_id}").click().run()

    assert app.query_params["thread"] == first.thread_id
    assert [m.markdown[0].value for m in app.chat_message] == ["What is the capital of France?", "Paris."]
    app.sidebar.button[0].click().run()  # New conversation
    assert "thread" not in app.query_params
    assert not app.chat_message


@pytest.mark.integration
def test_sidebar_overrides_apply_to_this_conversation(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HYBRID_SMALL_MODEL")
    monkeypatch.delenv("HYBRID_LARGE_MODEL")
    monkeypatch.setenv(
        "HYBRID_PROFILES",
        '{"fakes": {"small": "fake:small", "large": "fake:large"}, '
        '"alt": {"small": "fake:alt", "large": "fake:large"}}',
    )
    monkeypatch.setenv("HYBRID_PROFILE", "fakes")
    fakes.set("small", "Paris.")
    fakes.set("alt", "Paris, says alt.")
    app = open_app()

    app.selectbox(key="profile").select("alt").run()
    app.toggle(key="retrieval").set_value(False).run()
    ask(app, "What is the capital of France?")
    answer = api.answer_for(app.query_params["thread"])
    assert answer.answered_by == "fake:alt"
    assert answer.route["needs_kb"] is False

    app.selectbox(key="route").select("human").run()
    ask(app, "And of Italy?")
    first = app.query_params["thread"]
    answer = api.answer_for(first)
    assert answer.status == "pending_review"
    assert answer.route["forced"] is True

    app.sidebar.button[0].click().run()  # a new conversation starts from the defaults
    assert (app.selectbox(key="profile").value, app.selectbox(key="route").value) == ("fakes", "auto")
    assert app.toggle(key="retrieval").value is True
    app.button(key=f"open-{first}").click().run()  # and each conversation keeps its own
    assert (app.selectbox(key="profile").value, app.selectbox(key="route").value) == ("alt", "human")


@pytest.mark.integration
def test_a_pending_answer_waits_then_updates_when_a_reviewer_resolves_it(fakes: FakeModels) -> None:
    fakes.set("small", "Paris.")
    app = open_app(route="human")
    ask(app, "What is the capital of France?")
    thread = app.query_params["thread"]

    assistant = app.chat_message[1]
    assert assistant.markdown[0].value == "Waiting for a reviewer (route forced to human review)."
    assert ":orange-badge[:material/hourglass_top: waiting for review]" in texts(assistant)
    assert "looks again every" in texts(app)
    assert app.chat_input[0].disabled

    api.resume(thread, {"action": "edit", "answer": "Paris, of course.", "reviewer": "ana"})
    app.run()  # what the page's poll does every few seconds

    assistant = app.chat_message[1]
    assert assistant.markdown[0].value == "Paris, of course."
    assert ":orange-badge[:material/person: human]" in texts(assistant)
    assert "answer written by reviewer ana" in texts(assistant)
    assert not app.chat_input[0].disabled


@pytest.mark.integration
def test_thumbs_on_each_answer_are_recorded_as_feedback(fakes: FakeModels) -> None:
    fakes.set("small", "Paris.")
    app = ask(ask(open_app(), "What is the capital of France?"), "Are you sure?")
    thread = app.query_params["thread"]
    first, second = api.conversation(thread)

    app.feedback(key=f"rate-{first.trace_id}").set_value(0).run()
    app.feedback(key=f"rate-{second.trace_id}").set_value(1).run()

    assert api.ratings(thread) == {first.trace_id: "down", second.trace_id: "up"}
    assert open_app(thread=thread).feedback(key=f"rate-{first.trace_id}").value == 0  # shown after a reload


@pytest.mark.unit
def test_a_bad_question_is_refused_with_the_reason(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYBRID_MAX_QUESTION_CHARS", "20")
    fakes.set("small", "Paris.")

    app = ask(open_app(), "What is the capital of France, please?")

    assert "the limit is 20" in app.error[0].value


# --- Review ----------------------------------------------------------------------------------------


def pending_case(fakes: FakeModels) -> api.Answer:
    refuse_then_answer(fakes)
    answer = api.ask("Who discovered the element hafnium?")
    assert answer.status == "pending_review"
    return answer


@pytest.mark.integration
def test_the_review_page_shows_each_case_with_drafts_reasons_and_sources(fakes: FakeModels) -> None:
    pending_case(fakes)

    app = open_app("review.py")

    shown = texts(app)
    assert "#### Who discovered the element hafnium?" in shown
    assert "Why: the large model's answer failed verification" in shown
    assert "**small model** `fake:small`" in shown
    assert "**large model** `fake:large`" in shown
    assert "refuses or does not know" in shown
    assert next(b for b in app.button if b.label == "Approve the latest answer").disabled  # no name yet
    assert not [b for b in app.button if b.label == "Escalate to the large model"]  # the large model failed


@pytest.mark.integration
@pytest.mark.parametrize(
    ("action", "fields", "status", "text"),
    [
        ("approve", {}, "answered", "Paris."),
        ("edit", {"answer": "Paris, of course."}, "answered", "Paris, of course."),
        ("reject", {"reason": "out of scope"}, "rejected", None),
        ("escalate", {}, "answered", "Paris is the capital of France."),
    ],
)
def test_a_reviewer_resolves_a_case(
    fakes: FakeModels, action: str, fields: dict[str, str], status: str, text: str | None
) -> None:
    refuse_then_answer(fakes)
    fakes.set("small", "Paris.")
    answer = api.ask("What is the capital of France?", force_route="human")
    case_id = api.pending_reviews()[0].case_id
    app = open_app("review.py")
    app.text_input(key="reviewer").input("ana").run()
    for name, value in fields.items():
        (app.text_area if name == "answer" else app.text_input)(key=f"{name}-{case_id}").input(value)
    label = {
        "approve": "Approve the latest answer",
        "edit": "Answer with this text",
        "reject": "Reject",
        "escalate": "Escalate to the large model",
    }[action]
    next(b for b in app.button if b.label == label).click().run()

    assert not app.exception
    resolved = api.answer_for(answer.thread_id)
    assert resolved.status == status
    assert resolved.answer == text
    assert resolved.review is not None
    assert resolved.review["reviewer"] == "ana"
    assert f"{action} →" in app.success[0].value
    assert "Nothing waiting for a reviewer." in app.success[1].value


@pytest.mark.integration
def test_a_case_resolved_elsewhere_says_who_resolved_it(fakes: FakeModels) -> None:
    answer = pending_case(fakes)
    app = open_app("review.py")
    app.text_input(key="reviewer").input("ana").run()

    api.resume(answer.thread_id, {"action": "reject", "reviewer": "bo"})  # another reviewer, first
    next(b for b in app.button if b.label == "Approve the latest answer").click().run()

    assert "Could not approve “Who discovered the element hafnium?”" in app.error[0].value
    assert "already resolved (reject) by bo" in app.error[0].value
    assert api.answer_for(answer.thread_id).status == "rejected"


# --- Knowledge -------------------------------------------------------------------------------------


@pytest.mark.integration
def test_ingesting_a_folder_reports_added_unchanged_and_failed_files(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "llamas.md").write_text("# Llamas\n\nLlamas hum when they are content.")
    (docs / "broken.pdf").write_bytes(b"not a pdf")
    app = open_app("knowledge.py")
    assert [m.value for m in app.metric][:2] == ["0", "0"]

    app.text_input(key="folder").input(str(docs))
    next(b for b in app.button if b.label == "Ingest").click().run()

    assert not app.exception
    assert "1 chunk(s) added" in app.warning[0].value  # a file failed, so a warning
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Chunks added"] == "1"
    assert metrics["Files failed"] == "1"
    assert metrics["Chunks"] == "1"  # the collection overview counts what this run ingested
    failed = app.dataframe[1].value
    assert list(failed["file"]) == [str(docs / "broken.pdf")]

    next(b for b in app.button if b.label == "Ingest").click().run()
    assert {m.label: m.value for m in app.metric}["Unchanged"] == "1"


@pytest.mark.integration
def test_uploaded_files_are_ingested(isolated: Path) -> None:
    app = open_app("knowledge.py")
    app.get("file_uploader")[0].set_value([("notes.md", b"# Notes\n\nAlpacas hum.", "text/markdown")])
    next(b for b in app.button if b.label == "Ingest").click().run()

    assert not app.exception
    assert "1 chunk(s) added" in app.success[0].value
    assert (isolated / "uploads" / "notes.md").exists()
    assert api.collection_stats().sources[0].source == str(isolated / "uploads" / "notes.md")


@pytest.mark.integration
def test_the_knowledge_base_can_be_searched_directly(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "llamas.md").write_text("# Llamas\n\nLlamas hum when they are content.")
    (docs / "ports.md").write_text("# Ports\n\nThe dev server listens on port 2025.")
    api.ingest([docs])
    app = open_app("knowledge.py")

    app.text_input(key="query").input("which port does the dev server use")
    next(b for b in app.button if b.label == "Search").click().run()

    results = [m.value for m in app.markdown if m.value.startswith("**1.")]
    assert results
    assert "ports.md" in results[0]
    assert "The dev server listens on port 2025." in texts(app)


# --- Dashboard -------------------------------------------------------------------------------------


@pytest.mark.unit
def test_the_dashboard_without_traffic_says_so() -> None:
    app = open_app("dashboard.py")
    assert "No questions recorded" in app.info[0].value


@pytest.mark.integration
def test_the_dashboard_charts_recorded_traffic_in_the_chosen_range(fakes: FakeModels) -> None:
    refuse_then_answer(fakes)
    old = api.ask("What is the capital of France?")  # escalated
    api.ask("Who discovered the element hafnium?")  # pending review
    fakes.set("small", "Paris.")
    api.ask("What is the capital of France?")  # small
    with database_for(resolve_settings()).engine.begin() as connection:  # the first one, two days ago
        connection.execute(
            sa.update(audit)
            .where(audit.c.trace_id == old.trace_id)
            .values(at=datetime.now(UTC) - timedelta(days=2))
        )

    app = open_app("dashboard.py")  # last 7 days
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Questions"] == "3"
    assert metrics["Escalated to the large model"] == "67%"
    assert metrics["Sent to a reviewer"] == "33%"
    charts = app.get("vega_lite_chart")
    assert len(charts) == 6  # route mix, rates, cost, tokens, latency, verifier scores

    versions = app.dataframe[0].value  # the router and verifier versions, side by side
    assert versions["version"].tolist() == ["shipped"]
    assert versions["turns"].tolist() == [3]
    assert versions["review share"].tolist() == ["33.3%"]

    app.segmented_control(key="range").set_value("Last 24 hours").run()
    assert {m.label: m.value for m in app.metric}["Questions"] == "2"


@pytest.mark.integration
def test_charts_are_built_from_the_records(fakes: FakeModels) -> None:
    from ui import charts

    refuse_then_answer(fakes)
    api.ask("What is the capital of France?")
    fakes.set("small", "Paris.")
    api.ask("What is the capital of France?")
    turns = api.traffic()
    bucket = charts.bucket_for(timedelta(minutes=5))

    mix = charts.route_mix(turns, bucket).to_dict()
    (counts,) = mix["datasets"].values()
    assert sorted((row["outcome"], row["questions"]) for row in counts) == [("large", 1), ("small", 1)]
    scores = charts.verifier_scores(turns)
    assert scores is not None
    (checks,) = scores.to_dict()["datasets"].values()
    assert sorted((c["tier"], c["outcome"]) for c in checks) == [
        ("large model", "passed"),
        ("small model", "failed"),
        ("small model", "passed"),
    ]
    assert charts.latency(turns) is not None
    assert charts.tokens(turns) is not None
    cost = charts.cost(turns).to_dict()
    (series,) = cost["datasets"].values()
    assert {row["series"] for row in series} == {"actual cost", "large model only"}
