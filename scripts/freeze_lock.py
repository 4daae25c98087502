"""Write requirements/lock.txt from the current venv: every runtime package pinned by version.

    .venv/bin/python scripts/freeze_lock.py

Test tools (requirements/test.txt), torch (installed first, from its own pin) and the project
itself are left out; packages installed from local files are pinned by version, like the rest.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

LOCK = Path(__file__).resolve().parent.parent / "requirements" / "lock.txt"
TEST_ONLY = {
    "pytest",
    "pluggy",
    "iniconfig",
    "pytest-timeout",
    "ruff",
    "playwright",
    "pyee",
    "greenlet",
    "import-linter",
    "grimp",
}
SKIP = TEST_ONLY | {"torch", "hybrid-ai", "pip", "setuptools", "wheel"}
HEADER = (
    "# Every runtime package, pinned (a freeze of a working venv: scripts/freeze_lock.py). Installed\n"
    "# with --no-deps by scripts/bootstrap.sh, after torch==2.13.0 (CPU build) and with llama.cpp\n"
    "# from the local wheelhouse.\n"
)


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


def main() -> None:
    pins = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and _normal(name) not in SKIP:
            pins[_normal(name)] = f"{name}=={dist.version}"
    LOCK.write_text(HEADER + "".join(f"{pins[key]}\n" for key in sorted(pins)))


if __name__ == "__main__":
    main()
