"""Readers for each supported file type. Each returns the file's sections, or raises `LoadError`
with a reason a person can act on (nothing of an unreadable file is ingested).

Prose (Markdown, text, HTML, PDF) is split into chunks later; records of a corpus (BEIR
`corpus.jsonl`, SQuAD-format JSON, JSONL with a text field) are passages already and stay whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class LoadError(ValueError):
    """A file that cannot be ingested, with the reason."""


@dataclass
class Section:
    """A piece of a document before chunking."""

    text: str
    metadata: dict[str, str | int] = field(default_factory=dict)
    prose: bool = True
    """Prose is split into chunks; a corpus record is kept whole (up to a size limit)."""


def read_text(path: Path) -> str:
    """A text file's content as UTF-8 (a BOM is allowed), with a clear error otherwise."""
    data = path.read_bytes()
    if b"\x00" in data:
        raise LoadError("binary content (NUL bytes) in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(f"not valid UTF-8 (byte {exc.start}); convert the file to UTF-8") from None


def _title_from_name(path: Path) -> str:
    return path.stem.replace("-", " ").replace("_", " ").strip() or path.name


def markdown_sections(text: str, default_title: str) -> list[Section]:
    """Sections of a Markdown text, with the document title and each section's heading."""
    from langchain_text_splitters import MarkdownHeaderTextSplitter

    headers = [("#", "h1"), ("##", "h2"), ("###", "h3")]
    docs = MarkdownHeaderTextSplitter(headers, strip_headers=False).split_text(text)
    title = next((d.metadata["h1"] for d in docs if "h1" in d.metadata), default_title)
    return [
        Section(
            d.page_content,
            {
                "title": title,
                "section": d.metadata.get("h3") or d.metadata.get("h2") or d.metadata.get("h1", ""),
            },
        )
        for d in docs
        if d.page_content.strip()
    ]


def load_markdown(path: Path) -> list[Section]:
    return markdown_sections(read_text(path), _title_from_name(path))


def load_text(path: Path) -> list[Section]:
    text = read_text(path)
    return [Section(text, {"title": _title_from_name(path), "section": ""})] if text.strip() else []


def load_html(path: Path) -> list[Section]:
    """HTML as Markdown-like text (headings kept as sections); scripts, styles and navigation dropped."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(read_text(path), "html.parser")
    for tag in soup(["script", "style", "nav", "header", "footer", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    lines = []
    for element in soup.find_all(["h1", "h2", "h3", "h4", "p", "li", "pre", "td", "blockquote"]):
        text = element.get_text(" ", strip=True)
        if not text or element.find_parent(["li", "td", "blockquote"]) is not None:
            continue
        level = {"h1": "# ", "h2": "## ", "h3": "### "}.get(element.name, "")
        lines.append(f"{level}{text}")
    if not lines:
        raise LoadError("no text found in the HTML")
    return markdown_sections("\n\n".join(lines), title or _title_from_name(path))


def load_pdf(path: Path) -> list[Section]:
    """One section per page, with its page number."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            raise LoadError("encrypted PDF")
        title = (reader.metadata.title if reader.metadata else None) or _title_from_name(path)
        pages = [(number, page.extract_text() or "") for number, page in enumerate(reader.pages, start=1)]
    except LoadError:
        raise
    except (PdfReadError, RecursionError, Exception) as exc:  # a damaged file fails in many places
        raise LoadError(f"corrupt or unreadable PDF ({type(exc).__name__}: {exc})"[:300]) from None
    sections = [
        Section(text, {"title": str(title), "section": "", "page": n}) for n, text in pages if text.strip()
    ]
    if not sections:
        raise LoadError("no extractable text in the PDF (a scanned document?)")
    return sections


def _record(obj: Any, where: str) -> Section:
    if not isinstance(obj, dict):
        raise LoadError(f"{where}: expected a JSON object")
    text = next((obj[key] for key in ("text", "contents", "content") if isinstance(obj.get(key), str)), None)
    if text is None:
        raise LoadError(f"{where}: no text field (text, contents or content)")
    title = str(obj.get("title") or "")
    doc_id = str(obj.get("_id", obj.get("id", "")))
    body = f"{title}\n{text}" if title else text
    return Section(body, {"title": title, "section": "", "doc_id": doc_id}, prose=False)


def load_jsonl(path: Path) -> list[Section]:
    """One record per line (BEIR `corpus.jsonl`: `_id`, `title`, `text`)."""
    sections = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoadError(f"line {number}: invalid JSON ({exc.msg})") from None
        except RecursionError:
            raise LoadError(f"line {number}: JSON nested too deeply to read") from None
        sections.append(_record(obj, f"line {number}"))
    return sections


def _squad_paragraphs(data: list[Any]) -> Iterator[Section]:
    for article_number, article in enumerate(data):
        if not isinstance(article, dict):
            raise LoadError(f"SQuAD-format JSON: article {article_number} is not an object")
        title = str(article.get("title", f"article {article_number}"))
        paragraphs = article.get("paragraphs", [])
        if not isinstance(paragraphs, list):
            raise LoadError(f"SQuAD-format JSON: the paragraphs of article {article_number} are not a list")
        for number, paragraph in enumerate(paragraphs):
            if not isinstance(paragraph, dict):
                raise LoadError(
                    f"SQuAD-format JSON: paragraph {number} of article {article_number} is not an object"
                )
            context = paragraph.get("context")
            if isinstance(context, str) and context.strip():
                yield Section(
                    f"{title}\n{context}",
                    {"title": title, "section": "", "doc_id": f"{title}#{number}"},
                    prose=False,
                )


def load_json(path: Path) -> list[Section]:
    """SQuAD-format JSON (each paragraph a document) or a list of records."""
    try:
        obj = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise LoadError(f"invalid JSON at line {exc.lineno} ({exc.msg})") from None
    except RecursionError:
        raise LoadError("JSON nested too deeply to read") from None
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        sections = list(_squad_paragraphs(obj["data"]))
        if not sections:
            raise LoadError("SQuAD-format JSON without paragraphs")
        return sections
    if isinstance(obj, list):
        return [_record(item, f"record {n}") for n, item in enumerate(obj)]
    raise LoadError("unrecognised JSON layout: expected SQuAD format ({'data': [...]}) or a list of records")


LOADERS: dict[str, Callable[[Path], list[Section]]] = {
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_text,
    ".text": load_text,
    ".rst": load_text,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".jsonl": load_jsonl,
    ".json": load_json,
}


def load(path: Path) -> list[Section]:
    """The sections of a supported file; `LoadError` saying why for a file that cannot be read
    (never another error: one bad file must not stop the ingestion of the others)."""
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        known = ", ".join(sorted(LOADERS))
        raise LoadError(f"unsupported file type {path.suffix or '(none)'!r}; supported: {known}")
    try:
        return loader(path)
    except (LoadError, OSError):
        raise
    except (RecursionError, Exception) as exc:
        raise LoadError(f"could not read it ({type(exc).__name__}: {exc})"[:300]) from None
