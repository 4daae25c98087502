"""Knowledge ingestion: files → sections → chunks with content-derived ids → embeddings → Chroma.

- Re-ingesting unchanged files adds nothing: a chunk's id is a hash of its source and text.
- A file that cannot be read is reported with its reason and nothing of it is written; if storing
  fails half-way, the chunks already written for that file are removed again.
- With `sync`, chunks whose source file is gone, or whose file changed, are removed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field

from hybrid.injection import looks_like_injection
from hybrid.sensitivity import find_sensitive, sensitivity_level
from hybrid.settings import Settings
from retrieval.loaders import LoadError, Section, load
from retrieval.store import bump_version, get_collection

_READ_PAGE = 5000


class IngestReport(BaseModel):
    """What an ingestion did."""

    files: int = 0
    chunks_added: int = 0
    chunks_unchanged: int = 0
    chunks_removed: int = 0
    failed: dict[str, str] = Field(default_factory=dict, description="File → why it was not ingested.")
    seconds: float = 0.0
    embed_seconds: float = Field(0.0, description="Time spent embedding the added chunks.")

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def chunks_per_second(self) -> float:
        """Added chunks per second of the whole run."""
        return self.chunks_added / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        """A few lines for people."""
        line = (
            f"{self.files} file(s): {self.chunks_added} chunk(s) added, {self.chunks_unchanged} unchanged, "
            f"{self.chunks_removed} removed, {len(self.failed)} failed in {self.seconds:.1f}s"
        )
        if self.chunks_added and self.seconds:
            line += f" ({self.chunks_per_second:.3g} chunks/s)"
        if self.files and not self.chunks_added and not self.chunks_removed and not self.failed:
            line += "; nothing new"
        return line + "".join(f"\n  failed: {path}: {reason}" for path, reason in self.failed.items())


class Progress(Protocol):
    """Hooks an ingestion calls as it goes (a progress bar, a UI)."""

    def file_started(self, path: Path, chunks: int) -> None: ...
    def chunks_stored(self, count: int) -> None: ...


class Chunk(BaseModel):
    id: str
    text: str
    metadata: dict[str, bool | int | float | str]  # bool first: pydantic would turn True into 1


def chunk_id(source: str, text: str) -> str:
    """Content-derived id: the same text from the same file always gets the same id."""
    return hashlib.sha256(f"{source}\0{text}".encode()).hexdigest()[:32]


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files named directly, and every file under named folders (hidden ones skipped), sorted."""
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            yield from sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            yield path


def _pieces(section: Section, settings: Settings) -> list[str]:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    limit = settings.chunk_size if section.prose else settings.record_max_chars
    if len(section.text) <= limit:
        return [section.text]
    overlap = min(settings.chunk_overlap, limit // 4)
    return RecursiveCharacterTextSplitter(chunk_size=limit, chunk_overlap=overlap).split_text(section.text)


def chunk_file(path: Path, settings: Settings) -> list[Chunk]:
    """The chunks of one file, with source, title, section, page, modified time and content hash."""
    if not path.exists():
        raise LoadError("no such file or folder")
    source = str(path.resolve())
    modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).isoformat(timespec="seconds")
    file_hash = hashlib.sha256(path.read_bytes()).hexdigest()
    chunks: dict[str, Chunk] = {}
    for section in load(path):
        for piece in _pieces(section, settings):
            if piece.strip():
                cid = chunk_id(source, piece)
                metadata = {
                    "source": source,
                    "modified": modified,
                    "file_hash": file_hash,
                    # Marked once here so retrieval does not re-scan, and so operators can query them.
                    "sensitivity": sensitivity_level(find_sensitive(piece)),
                    "injection": looks_like_injection(piece),
                    **section.metadata,
                }
                chunks.setdefault(cid, Chunk(id=cid, text=piece, metadata=metadata))
    return list(chunks.values())


def _existing_ids(store: Any, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), _READ_PAGE):
        found.update(store.get(ids=ids[start : start + _READ_PAGE], include=[])["ids"])
    return found


def _store_chunks(store: Any, chunks: list[Chunk], settings: Settings, progress: Progress | None) -> float:
    """Embed and write chunks in batches; on failure remove what was written. Returns embed seconds."""
    from retrieval.embeddings import embed

    written: list[str] = []
    embed_seconds = 0.0
    batch = max(settings.embed_batch_size, 1) * 4
    try:
        for start in range(0, len(chunks), batch):
            part = chunks[start : start + batch]
            began = time.perf_counter()
            vectors = embed([c.text for c in part], settings.embed_batch_size, threads=settings.embed_threads)
            embed_seconds += time.perf_counter() - began
            store.upsert(
                ids=[c.id for c in part],
                documents=[c.text for c in part],
                metadatas=[c.metadata for c in part],
                embeddings=vectors,
            )
            written += [c.id for c in part]
            if progress:
                progress.chunks_stored(len(part))
    except BaseException:
        if written:
            store.delete(ids=written)
        raise
    return embed_seconds


def _in_scope(source: str, roots: list[Path]) -> bool:
    return any(source == str(root) or source.startswith(f"{root}/") for root in roots)


def _sync(store: Any, roots: list[Path], current: dict[str, set[str]], failed: set[str]) -> int:
    """Remove chunks under `roots` whose file is gone or no longer contains them."""
    stale: list[str] = []
    for offset in range(0, store.count(), _READ_PAGE):
        page = store.get(include=["metadatas"], limit=_READ_PAGE, offset=offset)
        for item, meta in zip(page["ids"], page["metadatas"] or [], strict=True):
            source = str((meta or {}).get("source", ""))
            if not _in_scope(source, roots) or source in failed:
                continue  # out of scope, or unreadable this time: keep what we had
            if item not in current.get(source, set()):
                stale.append(item)
    for start in range(0, len(stale), _READ_PAGE):
        store.delete(ids=stale[start : start + _READ_PAGE])
    return len(stale)


def ingest(
    paths: Iterable[str | Path],
    settings: Settings,
    *,
    collection: str | None = None,
    sync: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Add every readable file under `paths` to the knowledge base (and, with `sync`, prune)."""
    started = time.perf_counter()
    paths = [Path(p).expanduser() for p in paths]
    report = IngestReport()
    store = get_collection(settings, collection)
    current: dict[str, set[str]] = {}
    for path in iter_files(paths):
        report.files += 1
        try:
            chunks = chunk_file(path, settings)
        except (OSError, LoadError) as exc:
            report.failed[str(path)] = str(exc) or type(exc).__name__
            continue
        if progress:
            progress.file_started(path, len(chunks))
        existing = _existing_ids(store, [c.id for c in chunks])
        new = [c for c in chunks if c.id not in existing]
        try:
            report.embed_seconds += _store_chunks(store, new, settings, progress)
        except Exception as exc:  # the file is rolled back; the others go on
            report.failed[str(path)] = f"could not store its chunks: {type(exc).__name__}: {exc}"
            continue
        report.chunks_added += len(new)
        report.chunks_unchanged += len(chunks) - len(new)
        current[str(path.resolve())] = {c.id for c in chunks}
    if sync:
        roots = [p.resolve() for p in paths]
        report.chunks_removed = _sync(store, roots, current, {str(Path(f).resolve()) for f in report.failed})
    if report.chunks_added or report.chunks_removed:
        bump_version(store)
        from retrieval.lexical import lexical_index

        lexical_index(settings, collection, max_age_s=0)  # rebuild now, not on the first question
    report.seconds = time.perf_counter() - started
    return report
