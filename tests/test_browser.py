"""What users see: Debian's Chromium, driven by Playwright, against `hybrid ui` as a real Streamlit
server on a free port with its own data directory and the real embedded models.

Every test saves screenshots under tests/artifacts/screenshots/ (also when it fails), so a person
can look at the pages without starting anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from tests.conftest import REPO
from tests.servers import free_port, serving

pytestmark = pytest.mark.e2e

HYBRID = str(Path(sys.executable).parent / "hybrid")
CHROMIUM = "/usr/bin/chromium"
# The closed network refuses Chromium's background connections; these flags stop it making them.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Assertions on page contents retry: Streamlit attaches an element before it draws what is in it.
expect.set_options(timeout=30_000)
SCREENSHOTS = REPO / "tests" / "artifacts" / "screenshots"
# Token prices like an API's, so the cost and "saved" figures on the pages are not all zero.
PRICES = {
    "llamacpp:smollm2-135m-instruct": {"input_per_million": 0.05, "output_per_million": 0.1},
    "llamacpp:gemma-3-270m": {"input_per_million": 2.5, "output_per_million": 10},
}
MODEL_TIMEOUT_MS = 180_000  # the first question of a server loads the models on a shared CPU
# The test hook that paces the embedded models: a streamed draft stays on screen for at least a
# quarter of a second per token on any machine, so a screenshot of a page mid-answer catches it
# mid-answer. What the tests assert about those passing states is the record the page keeps
# (`data-shown`).
PACED = {"HYBRID_TEST_MIN_TOKEN_INTERVAL_S": "0.25"}


def server_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """This environment without HYBRID_* settings, plus the server's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRID_")}
    return env | {
        "HYBRID_DATA_DIR": str(data_dir),
        "HYBRID_CACHE": "off",  # the tests ask the same questions on purpose
        "HYBRID_PRICES": json.dumps(PRICES),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        "STREAMLIT_SERVER_HEADLESS": "true",
        **settings,
    }


@contextlib.contextmanager
def start_ui(data_dir: Path, **settings: str) -> Iterator[str]:
    """`hybrid ui` on a free port over `data_dir`, with the sample knowledge base ingested."""
    env = server_env(data_dir, **settings)
    # Ingest before the server starts: an embedded Chroma store serves one process at a time.
    subprocess.run(
        [HYBRID, "ingest", str(REPO / "data" / "knowledge")], env=env, check=True, capture_output=True
    )
    port = free_port()
    command = [HYBRID, "ui", "--server.port", str(port), "--server.address", "127.0.0.1"]
    url = f"http://127.0.0.1:{port}"
    with serving(command, f"{url}/_stcore/health", data_dir.parent / "streamlit.log", env=env):
        yield url


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One UI server for the module's tests; each test starts its own conversation.

    These tests are about what the page shows, so SmolLM2's grounded answers are accepted at a
    lower bar than the calibrated verifier's (which turns most of them down: test_verification).
    """
    data = tmp_path_factory.mktemp("ui") / "data"
    with start_ui(data, HYBRID_SMALL_ACCEPT_THRESHOLD="0.1", **PACED) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: run scripts/test-services.sh (make test does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


class Pages:
    """The browser tabs of one test."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 1100})
        self.opened: list[Any] = []

    def open(self, url: str) -> Any:
        page = self.context.new_page()
        page.set_default_timeout(30_000)
        page.goto(url)
        self.opened.append(page)
        return page


def shoot(page: Any, name: str, height: int | None = None) -> Path:
    """Save what the page shows. Streamlit scrolls inside its own container, so showing all of a
    long page takes a viewport as tall as the page."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    if height:
        page.set_viewport_size({"width": 1400, "height": height})
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled")  # expanders fully open
    return path


@pytest.fixture
def pages(browser: Any, request: pytest.FixtureRequest) -> Iterator[Pages]:
    """Tabs for one test; when the test fails, each tab's last state is saved as `failed-…`."""
    tabs = Pages(browser)
    failures = request.session.testsfailed
    yield tabs
    if request.session.testsfailed > failures:  # the call's report is counted before teardown
        for index, page in enumerate(tabs.opened):
            if not page.is_closed():
                shoot(page, f"failed-{request.node.name}-{index}")
    tabs.context.close()


def ask(page: Any, question: str) -> Any:
    """Type a question into the chat and send it; returns the assistant's (last) message."""
    box = page.get_by_placeholder("Ask a question")
    box.wait_for(timeout=60_000)
    box.fill(question)
    box.press("Enter")
    return page.locator('[data-testid="stChatMessage"]').last


def badge(message: Any, text: str) -> Any:
    return message.locator(".stMarkdownBadge", has_text=text)


def shown_while_answering(message: Any) -> Any:
    """The record a finished message keeps of the states the page showed while it was made."""
    return message.locator(".shown-while-answering")


def test_a_question_streams_a_draft_then_shows_the_answer_with_its_route_badge(ui: str, pages: Pages) -> None:
    page = pages.open(ui)

    # SmolLM2 answers this one right from the sample knowledge base, and the verifier accepts it
    # (the question "Which port does hybrid dev use?" it answers with a question: escalated).
    message = ask(page, "What port does hybrid dev listen on?")

    badge(message, "draft · small model").wait_for(timeout=MODEL_TIMEOUT_MS)  # paced: see PACED
    shoot(page, "chat-streaming")
    usage = message.get_by_text(re.compile(r"\d+ tokens"))
    usage.wait_for(timeout=MODEL_TIMEOUT_MS)
    # The small model's draft was shown, marked as a draft, while it was written, then verified.
    expect(shown_while_answering(message)).to_have_attribute("data-shown", "small:draft small:verified")
    expect(badge(message, "small model")).to_have_count(1)
    expect(badge(message, "verifier")).to_have_text(re.compile(r"verifier \d\.\d\d"))
    expect(message.locator('[data-testid="stMarkdownContainer"]').first).to_contain_text("2025")
    expect(message).to_contain_text("router:")
    expect(usage).to_contain_text(re.compile(r"cost \$\d"))
    message.get_by_text("Sources (").click()
    message.get_by_text("interfaces.md").first.wait_for()
    shoot(page, "chat-answer")

    # The conversation is in the URL: a reload (a new session) shows it again.
    assert "thread=" in page.url
    page.reload()
    reopened = page.locator('[data-testid="stChatMessage"]')
    badge(reopened.last, "small model").wait_for()
    expect(reopened.first).to_have_text(re.compile(r"What port does hybrid dev listen on\?$"))


def test_an_escalation_visibly_replaces_the_small_draft(tmp_path: Path, pages: Pages) -> None:
    # A threshold no answer reaches: the small draft always fails verification and Gemma answers.
    with start_ui(tmp_path / "data", HYBRID_SMALL_ACCEPT_THRESHOLD="1.01", **PACED) as url:
        page = pages.open(url)
        message = ask(page, "Who wrote Hamlet?")

        # Shown while the large model writes, which PACED makes last.
        badge(message, "not accepted · small model").wait_for(timeout=MODEL_TIMEOUT_MS)
        shoot(page, "chat-escalating")
        message.get_by_text(re.compile(r"\d+ tokens")).wait_for(timeout=MODEL_TIMEOUT_MS)
        expect(shown_while_answering(message)).to_have_attribute(
            "data-shown", "small:draft small:not-accepted large:draft large:verified"
        )
        expect(badge(message, "large model")).to_have_count(1)
        expect(message.locator('[data-testid="stMarkdownContainer"]').first).to_contain_text("Shakespeare")
        expect(message).to_contain_text("escalated to the large model")
        message.get_by_text("Replaced draft of the small model").click()
        message.locator("del").first.wait_for()  # the small model's draft, struck out
        shoot(page, "chat-escalated")


def test_a_reviewer_resolves_a_pending_answer_and_the_chat_updates(ui: str, pages: Pages) -> None:
    chat = pages.open(f"{ui}/?route=human")  # the sidebar's "force a route", from the URL
    message = ask(chat, "What is the capital of Italy?")
    badge(message, "waiting for review").wait_for(timeout=MODEL_TIMEOUT_MS)
    chat.get_by_text("looks again every").wait_for()
    shoot(chat, "chat-pending")

    thread = parse_qs(urlparse(chat.url).query)["thread"][0]

    review = pages.open(f"{ui}/review")
    case = review.locator(f".st-key-case-{thread}")
    # The case's container is attached before its contents are drawn: wait for the text itself.
    expect(case).to_contain_text("What is the capital of Italy?")
    review.get_by_label("Your name").fill("ana")
    review.get_by_label("Your name").press("Enter")
    expect(case.get_by_role("button", name="Approve the latest answer")).to_be_enabled()  # a name is given
    case.get_by_label("Your answer").fill("Rome is the capital of Italy.")
    shoot(review, "review-queue", height=1300)
    case.get_by_role("button", name="Answer with this text").click()
    review.get_by_text("edit → answered: Rome is the capital of Italy.").wait_for(timeout=MODEL_TIMEOUT_MS)
    shoot(review, "review-resolved")

    # The chat tab was left alone: its poll picks up the verdict.
    badge(message, "human").wait_for(timeout=MODEL_TIMEOUT_MS)
    expect(message).to_contain_text("Rome is the capital of Italy.")
    expect(message).to_contain_text("answer written by reviewer ana")
    shoot(chat, "chat-after-review")


def test_the_dashboard_renders_charts_of_the_recorded_traffic(ui: str, pages: Pages) -> None:
    chat = pages.open(ui)
    message = ask(chat, "What is the capital of France?")
    message.get_by_text(re.compile(r"\d+ tokens")).wait_for(timeout=MODEL_TIMEOUT_MS)

    page = pages.open(f"{ui}/dashboard")
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    expect(charts).to_have_count(6, timeout=60_000)
    for index in range(6):  # vega-embed draws each chart in its own time: wait for each one's marks
        marks = charts.nth(index).locator("svg .mark-rect, svg .mark-line, svg .mark-symbol")
        expect(marks.first).to_be_attached(timeout=60_000)
    expect(page.get_by_text("Route mix")).to_have_count(1)
    expect(page.get_by_text("Saved").first).to_be_visible()
    shoot(page, "dashboard", height=1900)


def test_files_are_uploaded_ingested_and_searchable(ui: str, pages: Pages, tmp_path: Path) -> None:
    notes = tmp_path / "alpacas.md"
    notes.write_text("# Alpacas\n\nAlpacas hum softly when they are curious or content.")
    page = pages.open(f"{ui}/knowledge")

    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(notes))
    page.get_by_text("alpacas.md").first.wait_for()
    page.get_by_role("button", name="Ingest").click()
    page.get_by_text(re.compile(r"1 file\(s\): 1 chunk\(s\) added")).wait_for(timeout=MODEL_TIMEOUT_MS)
    page.get_by_role("tab", name="Search").click()
    page.get_by_label("Search the knowledge base").fill("do alpacas hum")
    page.get_by_role("button", name="Search", exact=True).and_(
        page.get_by_test_id(re.compile("FormSubmit"))
    ).click()
    page.get_by_text("Alpacas hum softly").first.wait_for(timeout=60_000)
    expect(page.get_by_text(re.compile(r"^1\. ")).first).to_contain_text("alpacas.md")
    shoot(page, "knowledge", height=1500)
