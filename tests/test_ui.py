"""The Streamlit chat, run headless in-process with fake models behind the real façade."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.conftest import REPO
from tests.fakes import FakeModels

APP = str(REPO / "ui" / "app.py")


def test_chat_shows_the_answer_with_its_route(fakes: FakeModels) -> None:
    fakes.set("small", "The capital of France is Paris.")
    app = AppTest.from_file(APP, default_timeout=30).run()
    assert not app.exception

    app.chat_input[0].set_value("What is the capital of France?").run()

    assert not app.exception
    assistant = app.chat_message[1]
    assert assistant.markdown[0].value == "The capital of France is Paris."
    assert "small model" in assistant.caption[0].value
    assert "verifier 1.00" in assistant.caption[0].value


def test_conversation_continues_on_one_thread(fakes: FakeModels) -> None:
    fakes.set("small", lambda messages: f"Answer {len(messages)}.")
    app = AppTest.from_file(APP, default_timeout=30).run()
    app.chat_input[0].set_value("First question?").run()
    thread = app.session_state["thread_id"]
    app.chat_input[0].set_value("Second question?").run()

    assert app.session_state["thread_id"] == thread
    assert [m.markdown[0].value for m in app.chat_message] == [
        "First question?",
        "Answer 2.",
        "Second question?",
        "Answer 4.",
    ]


def test_pending_reviews_and_errors_are_shown(fakes: FakeModels) -> None:
    fakes.set("small", "I don't know.")
    fakes.set("large", "I don't know either.")
    app = AppTest.from_file(APP, default_timeout=30).run()
    app.chat_input[0].set_value("Who discovered the element hafnium?").run()
    assert "Waiting for a reviewer" in app.chat_message[1].markdown[0].value
    assert "waiting for review" in app.chat_message[1].caption[0].value

    app.chat_input[0].set_value("Another?").run()
    assert "waiting for a review" in app.error[0].value
