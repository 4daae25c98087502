"""The knowledge base as an operator sees it: what is in a collection, and where uploads go.

Ingestion and search themselves are `api.ingest` and `api.search`; this adds what a UI needs
around them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, Field

from hybrid.settings import resolve_settings

_PAGE = 5000


class SourceStats(BaseModel):
    """One ingested file."""

    source: str
    chunks: int
    modified: str = Field("", description="The file's modification time when it was ingested.")
    sensitive: int = Field(0, description="Chunks holding personal data or secrets.")
    injection: int = Field(0, description="Chunks that look like instructions aimed at a model.")


class CollectionStats(BaseModel):
    """What a collection holds."""

    name: str
    location: str = Field(description="The embedded store's folder, or the Chroma server's URL.")
    chunks: int
    version: int = Field(description="Changes counted by ingestion (each run that added or removed chunks).")
    sources: list[SourceStats] = Field(description="Per file, most chunks first.")


def collection_stats(collection: str | None = None) -> CollectionStats:
    """Chunks, files and flagged chunks of the (configured) collection."""
    from retrieval.store import collection_version, get_collection

    settings = resolve_settings()
    store = get_collection(settings, collection)
    count, version = collection_version(store)
    sources: dict[str, SourceStats] = {}
    for offset in range(0, count, _PAGE):
        page = store.get(include=["metadatas"], limit=_PAGE, offset=offset)
        for found in page["metadatas"] or []:
            meta = found or {}
            name = str(meta.get("source", "?"))
            stats = sources.setdefault(name, SourceStats(source=name, chunks=0))
            stats.chunks += 1
            stats.modified = str(meta.get("modified", stats.modified))
            stats.sensitive += meta.get("sensitivity", "none") != "none"
            stats.injection += bool(meta.get("injection"))
    return CollectionStats(
        name=collection or settings.collection,
        location=settings.chroma_url or str(settings.chroma_path),
        chunks=count,
        version=version,
        sources=sorted(sources.values(), key=lambda s: (-s.chunks, s.source)),
    )


def save_uploads(files: Iterable[tuple[str, bytes]]) -> list[Path]:
    """Store uploaded files (name, content) under the data directory; return their paths.

    Uploads keep a stable path (`<data dir>/uploads/<name>`), because a chunk's id derives from
    its file's path: uploading the same file again then adds nothing, and a changed file of the
    same name replaces the old one on a sync.
    """
    folder = resolve_settings().data_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for name, content in files:
        target = folder / Path(name).name  # never a path the uploader chose
        if not target.name or target.name.startswith("."):
            raise ValueError(f"cannot store an upload named {name!r}")
        target.write_bytes(content)
        saved.append(target)
    return saved


def files_under(paths: Iterable[str | Path]) -> list[Path]:
    """The files an ingestion of `paths` will read (to size a progress bar)."""
    from retrieval.ingest import iter_files

    return list(iter_files(paths))
