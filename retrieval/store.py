"""Where the knowledge lives: an embedded Chroma store in the data directory, or a Chroma server.

Two processes must not open one embedded store: Chroma does not coordinate them and can hang
(chroma-core/chroma#7040) or corrupt the store. The first process to open it takes an exclusive
lock for its lifetime (released by the OS even if it is killed); a second one fails at once with
a message saying who holds it and how to share the knowledge base through a Chroma server.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hybrid.errors import HybridError
from hybrid.settings import Settings

VERSION_KEY = "hybrid_version"
# Every Chroma client we build: no product telemetry (Chroma would otherwise send it to PostHog).
CLIENT_SETTINGS = {"anonymized_telemetry": False}


class StoreBusy(HybridError):
    """The embedded store is open in another process."""


@dataclass
class _Opened:
    client: Any
    lock_file: Any | None


_clients: dict[str, _Opened] = {}
_clients_lock = threading.Lock()


def _lock_embedded(path: Path) -> Any:
    path.mkdir(parents=True, exist_ok=True)
    lock_path = path / ".hybrid.lock"
    lock_file = lock_path.open("a+")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.seek(0)
        holder = lock_file.read().strip() or "another process"
        lock_file.close()
        raise StoreBusy(
            f"the knowledge base at {path} is in use by {holder}; an embedded Chroma store serves one "
            f"process at a time. Stop that process, or share the store through a Chroma server: "
            f"`chroma run --path {path} --port 8000` and HYBRID_CHROMA_URL=http://127.0.0.1:8000"
        ) from None
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(f"pid {os.getpid()} ({' '.join(sys.argv)[:200]})")
    lock_file.flush()
    return lock_file


def client_for(settings: Settings) -> Any:
    """The Chroma client for the configured store, opened once per process."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    key = settings.chroma_url or str(settings.chroma_path)
    with _clients_lock:
        if key not in _clients:
            chroma_settings = ChromaSettings(**CLIENT_SETTINGS)  # costs ms: build once
            if settings.chroma_url:
                url = urlparse(settings.chroma_url)
                client = chromadb.HttpClient(
                    host=url.hostname or "127.0.0.1",
                    port=url.port or (443 if url.scheme == "https" else 8000),
                    ssl=url.scheme == "https",
                    settings=chroma_settings,
                )
                _clients[key] = _Opened(client, None)
            else:
                lock_file = _lock_embedded(settings.chroma_path)
                client = chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)
                _clients[key] = _Opened(client, lock_file)
        return _clients[key].client


def opened_client(settings: Settings) -> Any | None:
    """The Chroma client this process has open for the configured store, if any (opens nothing)."""
    with _clients_lock:
        opened = _clients.get(settings.chroma_url or str(settings.chroma_path))
    return opened.client if opened else None


def reset() -> None:
    """Close stores opened by this process and release their locks (as a restart would)."""
    from chromadb.api.shared_system_client import SharedSystemClient

    with _clients_lock:
        for opened in _clients.values():
            if opened.lock_file is not None:
                opened.lock_file.close()
        _clients.clear()
        SharedSystemClient.clear_system_cache()


def get_collection(settings: Settings, name: str | None = None) -> Any:
    """The named (default: configured) collection, created empty if missing, with our embeddings."""
    from chromadb.errors import NotFoundError

    from retrieval.embeddings import MiniLMEmbeddingFunction

    client = client_for(settings)
    function = MiniLMEmbeddingFunction()
    try:  # a plain get is ten times cheaper than get-or-create, and this runs on every query
        return client.get_collection(name or settings.collection, embedding_function=function)
    except NotFoundError:
        return client.get_or_create_collection(
            name or settings.collection,
            embedding_function=function,
            configuration={"hnsw": {"space": "cosine"}},
        )


def collection_version(collection: Any) -> tuple[int, int]:
    """(number of chunks, change counter): changes whenever our ingestion changes the collection."""
    return collection.count(), int((collection.metadata or {}).get(VERSION_KEY, 0))


def bump_version(collection: Any) -> None:
    """Record that the collection's content changed (derived indexes rebuild on next use)."""
    metadata = dict(collection.metadata or {})
    metadata[VERSION_KEY] = int(metadata.get(VERSION_KEY, 0)) + 1
    metadata.pop("hnsw:space", None)  # set at creation; Chroma refuses to modify it
    collection.modify(metadata=metadata)
