"""Artefacts read from files are read again when the files change, looking at them once a second."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hybrid import filecache
from hybrid.filecache import FileCache, mtimes
from hybrid.registry import shipped_paths
from hybrid.verification.model import VerifierModel

pytestmark = pytest.mark.unit


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _touch(file: Path, text: str, mtime_ns: int) -> None:
    file.write_text(text)
    os.utime(file, ns=(mtime_ns, mtime_ns))


def test_a_changed_file_is_read_again_once_the_recheck_interval_has_passed(tmp_path: Path) -> None:
    file, clock, stamps = tmp_path / "a.json", _Clock(), []
    _touch(file, "one", 1_000)
    cache: FileCache[str] = FileCache(recheck_s=1.0, clock=clock)

    def stamp() -> tuple[int, ...]:
        stamps.append(clock.now)
        return mtimes(file)

    assert cache.get(file, stamp, file.read_text) == "one"
    _touch(file, "two", 2_000)
    clock.now += 0.5
    assert cache.get(file, stamp, file.read_text) == "one"  # trusted: not looked at yet
    assert stamps == [100.0]
    clock.now += 0.6
    assert cache.get(file, stamp, file.read_text) == "two"
    assert stamps == [100.0, 101.1]


def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    file, clock, reads = tmp_path / "a.json", _Clock(), []
    _touch(file, "one", 1_000)
    cache: FileCache[str] = FileCache(recheck_s=1.0, clock=clock)

    def load() -> str:
        reads.append(1)
        return file.read_text()

    for _ in range(3):
        assert cache.get(file, lambda: mtimes(file), load) == "one"
        clock.now += 5
    assert len(reads) == 1


def test_a_file_gone_raises_and_is_loaded_again_when_it_is_back(tmp_path: Path) -> None:
    file, clock = tmp_path / "a.json", _Clock()
    _touch(file, "one", 1_000)
    cache: FileCache[str] = FileCache(recheck_s=1.0, clock=clock)
    assert cache.get(file, lambda: mtimes(file), file.read_text) == "one"
    file.unlink()
    clock.now += 2
    with pytest.raises(FileNotFoundError):
        cache.get(file, lambda: mtimes(file), file.read_text)
    _touch(file, "one again", 1_000)  # the same time: only the forgotten entry makes it read
    assert cache.get(file, lambda: mtimes(file), file.read_text) == "one again"


def test_what_this_process_saves_is_seen_at_once_by_every_cache(tmp_path: Path) -> None:
    folder = tmp_path / "verifier"
    meta = VerifierModel.load(shipped_paths()["small"]).meta  # type: ignore[arg-type]
    VerifierModel(meta | {"model": "openai:first"}).save(folder)
    assert VerifierModel.load(folder).meta["model"] == "openai:first"
    # Spelt another way, through a link: still the same folder to forget.
    link = tmp_path / "link"
    link.symlink_to(folder)
    assert VerifierModel.load(link).meta["model"] == "openai:first"
    VerifierModel(meta | {"model": "openai:second"}).save(folder)  # within the recheck interval
    assert VerifierModel.load(folder).meta["model"] == "openai:second"
    assert VerifierModel.load(link).meta["model"] == "openai:second"


def test_forget_drops_values_read_from_files_inside_the_folder(tmp_path: Path) -> None:
    file, clock = tmp_path / "router.json", _Clock()
    _touch(file, "one", 1_000)
    cache: FileCache[str] = FileCache(recheck_s=60.0, clock=clock)
    assert cache.get(file, lambda: mtimes(file), file.read_text) == "one"
    _touch(file, "two", 1_000)  # same time, as a copy that keeps times would leave it
    filecache.forget(tmp_path)
    assert cache.get(file, lambda: mtimes(file), file.read_text) == "two"


def test_a_relative_path_names_the_folder_it_named_when_it_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    cache: FileCache[str] = FileCache(recheck_s=60.0, clock=clock)
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        _touch(tmp_path / name / "a.json", name, 1_000)  # the same time in both
    read = []
    for name in ("one", "two"):
        monkeypatch.chdir(tmp_path / name)
        file = Path("a.json")
        read.append(cache.get(file, lambda file=file: mtimes(file), file.read_text))
    assert read == ["one", "two"]
