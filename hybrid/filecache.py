"""Values read from files (a router, a verifier, their descriptions), read again when the files
change, with the files' times looked at no more than once every `RECHECK_S` per value.

A request reads the router, both verifiers and what each was calibrated for several times over,
and each look at a file's time is a system call: under load a thread that makes one hands the GIL
to another and waits to get it back. Looking once a second instead of dozens of times a request
cut the server's CPU per request at concurrency 8 (docs/benchmarks.md). A file changed by another
process is therefore picked up within `RECHECK_S`; one written through this process's own `save`
is forgotten at once, by every cache (`forget`).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

RECHECK_S = 1.0

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    stamp: Hashable
    value: T
    checked: float


class FileCache(Generic[T]):
    """One value per path it was read from, loaded by `load` and trusted while `stamp` (the files'
    times) is unchanged.

    `stamp` is called at most once every `recheck_s` per path; an error it raises (a file gone)
    reaches the caller, and the value is loaded again once the stamp can be read."""

    def __init__(self, recheck_s: float = RECHECK_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._recheck_s = recheck_s
        self._clock = clock
        self._entries: dict[str, _Entry[T]] = {}
        self._lock = threading.Lock()
        _caches.add(self)

    def get(self, path: Path, stamp: Callable[[], Hashable], load: Callable[[], T]) -> T:
        """The value read from `path` (a folder or a file), loaded again when `stamp` changes."""
        # Absolute, not resolved: resolving looks at every folder on the way (system calls again).
        key = str(path) if path.is_absolute() else os.path.abspath(path)
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and now - entry.checked < self._recheck_s:
            return entry.value
        try:
            current = stamp()
        except Exception:
            with self._lock:
                self._entries.pop(key, None)
            raise
        if entry is not None and entry.stamp == current:
            entry.checked = now
            return entry.value
        value = load()
        with self._lock:
            self._entries[key] = _Entry(current, value, now)
        return value

    def forget(self, folder: Path) -> None:
        """Drop the values read from `folder` or a file in it, however their key spelt the path."""
        target = Path(folder).resolve()
        with self._lock:
            for key in [k for k in self._entries if _within(Path(k).resolve(), target)]:
                del self._entries[key]


_caches: weakref.WeakSet[FileCache[object]] = weakref.WeakSet()


def forget(folder: Path) -> None:
    """Every cache drops what it read from `folder` (just written by this process)."""
    for cache in list(_caches):
        cache.forget(folder)


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def mtimes(*files: Path) -> tuple[int, ...]:
    """The files' modification times (ns): a stamp for `FileCache.get`."""
    return tuple(file.stat().st_mtime_ns for file in files)
