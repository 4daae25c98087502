"""The docs: a short README that opens with the two commands, links that resolve, and generated
references that match the code."""

from __future__ import annotations

import importlib.util
import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from tests.conftest import REPO

pytestmark = pytest.mark.unit

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
MAX_README_LINES = 250


def _tokens(page: Path) -> list[Token]:
    return MarkdownIt("commonmark").enable("table").parse(page.read_text())


def _walk(tokens: list[Token]) -> Iterator[Token]:
    for token in tokens:
        yield token
        if token.children:
            yield from _walk(token.children)


def _links(page: Path) -> list[str]:
    """Every link and image target of a Markdown page (code blocks hold none)."""
    found = []
    for token in _walk(_tokens(page)):
        if token.type == "link_open":
            found.append(str(token.attrs["href"]))
        elif token.type == "image":
            found.append(str(token.attrs["src"]))
    return found


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation dropped, spaces to
    hyphens, and `-1`, `-2`, ... after repeats."""
    tokens = _tokens(page)
    seen: dict[str, int] = {}
    for opening, inline in itertools.pairwise(tokens):
        if opening.type != "heading_open":
            continue
        text = "".join(child.content for child in inline.children or [])
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def _relative(href: str) -> bool:
    parts = urlsplit(href)
    return not parts.scheme and not parts.netloc


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for href in filter(_relative, _links(page)):
        parts = urlsplit(href)
        target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        if not target.exists():
            broken.append(f"{href}: no such file")
        elif parts.fragment and target.suffix == ".md" and unquote(parts.fragment) not in _anchors(target):
            broken.append(f"{href}: no such heading in {target.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: {broken}"


def test_the_link_checker_sees_links_and_anchors() -> None:
    # Guards the test above against passing because it found nothing to check.
    readme_links = _links(README)
    assert "docs/benchmarks.md#getting-the-data" in readme_links
    assert "docs/index.md" in readme_links
    assert {"getting-the-data", "router-decision-latency-and-minilms-cost"} <= _anchors(
        REPO / "docs" / "benchmarks.md"
    )


def test_every_docs_page_is_listed_in_the_index() -> None:
    index = REPO / "docs" / "index.md"
    listed = {(index.parent / href).resolve() for href in _links(index) if _relative(href)}
    missing = [p.name for p in PAGES if p.parent == index.parent and p != index and p not in listed]
    assert not missing, f"add {missing} to docs/index.md"


def test_readme_is_a_short_page_for_users() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES, "move detail to docs/ and link to it"
    assert "../shared" not in text, "name public sources; our CI's data folder belongs in docs/benchmarks.md"


def test_readme_opens_with_the_two_commands() -> None:
    tokens = _tokens(README)
    first_block = next(t for t in tokens if t.type == "fence")
    first_section = next(t for t in tokens if t.type == "heading_open" and t.tag == "h2")
    assert first_block.map is not None
    assert first_section.map is not None
    assert first_block.map[0] < first_section.map[0], "the two commands come before any section"
    assert first_block.info == "bash"
    commands = [line.split("#")[0].strip() for line in first_block.content.strip().splitlines()]
    assert commands == ["make run", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()


def _cli_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_reference", REPO / "scripts" / "cli_reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_cli_and_settings_references_are_current() -> None:
    module = _cli_reference()
    assert set(module.PAGES) == {REPO / "docs" / "cli.md", REPO / "docs" / "configuration.md"}
    for page in module.PAGES:
        text = page.read_text()
        assert module.rendered(page, text) == text, f"{page.relative_to(REPO)} is stale: run `make docs`"
    assert "`hybrid eval routing`" in (REPO / "docs" / "cli.md").read_text()
    assert "`HYBRID_PROFILE`" in (REPO / "docs" / "configuration.md").read_text()


def test_a_page_without_its_markers_is_an_error_not_a_silent_append() -> None:
    module = _cli_reference()
    with pytest.raises(ValueError, match="markers"):
        module.replace_in("# CLI reference\n", "generated")
