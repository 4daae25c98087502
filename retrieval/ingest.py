"""Knowledge ingestion: files → chunks with content-derived ids → embeddings → Chroma.

Re-ingesting unchanged files adds nothing (ids are hashes of chunk text). A file that cannot be
read is reported with its reason and nothing of it is written; the others are still ingested.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hybrid.settings import Settings

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".text", ".rst"}
CHUNK_SIZE = 800
CHUNK_OVERLAP = 120


@dataclass
class Chunk:
    id: str
    text: str
    metadata: dict[str, str | int | float]


@dataclass
class IngestReport:
    """What an ingestion did, file by file."""

    files: int = 0
    chunks_added: int = 0
    chunks_unchanged: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """One line for people."""
        line = (
            f"{self.files} file(s): {self.chunks_added} chunk(s) added, "
            f"{self.chunks_unchanged} unchanged, {len(self.failed)} failed in {self.seconds:.1f}s"
        )
        return line + "".join(f"\n  failed: {path}: {reason}" for path, reason in self.failed.items())


def chunk_id(text: str) -> str:
    """Content-derived id: the same text always gets the same id."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files named directly, and every file under named folders (hidden ones skipped), sorted."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.parts)
            )
        else:
            yield path


def split_document(path: Path, text: str) -> list[Chunk]:
    """Chunks of one document, with source, title, section and modified-time metadata."""
    from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    title = path.stem.replace("-", " ").replace("_", " ")
    sections: list[tuple[str, str]] = []
    if path.suffix.lower() in {".md", ".markdown"}:
        headers = [("#", "h1"), ("##", "h2"), ("###", "h3")]
        docs = MarkdownHeaderTextSplitter(headers, strip_headers=False).split_text(text)
        title = next((d.metadata["h1"] for d in docs if "h1" in d.metadata), title)
        for doc in docs:
            section = doc.metadata.get("h3") or doc.metadata.get("h2") or doc.metadata.get("h1", "")
            sections.append((section, doc.page_content))
    else:
        sections.append(("", text))
    modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).isoformat()
    file_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    chunks: dict[str, Chunk] = {}
    for section, body in sections:
        for piece in splitter.split_text(body):
            if piece.strip():
                cid = chunk_id(piece)
                chunks[cid] = Chunk(
                    cid,
                    piece,
                    {
                        "source": str(path),
                        "title": title,
                        "section": section,
                        "modified": modified,
                        "file_hash": file_hash,
                    },
                )
    return list(chunks.values())


def read_text(path: Path) -> str:
    """A text file's content, with a clear error for what is not readable text."""
    if path.suffix.lower() not in TEXT_SUFFIXES:
        raise ValueError(f"unsupported file type {path.suffix or '(none)'!r}")
    data = path.read_bytes()
    if b"\x00" in data:
        raise ValueError("binary content in a text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8 (byte {exc.start})") from None


def ingest(
    paths: Iterable[str | Path],
    settings: Settings,
    *,
    collection: str | None = None,
    progress: Callable[[Path], None] | None = None,
) -> IngestReport:
    """Add the chunks of every readable file under `paths` to the knowledge base."""
    from retrieval.embeddings import embed
    from retrieval.store import get_collection

    started = time.perf_counter()
    report = IngestReport()
    store = get_collection(settings, collection)
    for path in iter_files(paths):
        report.files += 1
        if progress:
            progress(path)
        try:
            if not path.exists():
                raise FileNotFoundError("no such file or folder")
            chunks = split_document(path, read_text(path))
        except (OSError, ValueError) as exc:
            report.failed[str(path)] = str(exc) or type(exc).__name__
            continue
        existing = set(store.get(ids=[c.id for c in chunks], include=[])["ids"]) if chunks else set()
        new = [c for c in chunks if c.id not in existing]
        report.chunks_unchanged += len(chunks) - len(new)
        if new:
            # One write per file: a file's chunks land together or not at all.
            store.upsert(
                ids=[c.id for c in new],
                documents=[c.text for c in new],
                metadatas=[c.metadata for c in new],
                embeddings=embed([c.text for c in new]),
            )
            report.chunks_added += len(new)
    report.seconds = time.perf_counter() - started
    return report
