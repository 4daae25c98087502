"""Render the CLI reference (from `hybrid --help`) into docs/cli.md and the settings reference (from
`Settings`) into docs/configuration.md, so the docs cannot drift.

python scripts/cli_reference.py          print both references
python scripts/cli_reference.py --write  replace them in docs/cli.md and docs/configuration.md

Each page keeps its hand-written prose; only the block between its two markers is generated.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click
from pydantic.fields import FieldInfo

from hybrid.cli import cli
from hybrid.settings import shipped as shipped_root_of

ROOT = Path(__file__).resolve().parent.parent


def shipped_root() -> Path:
    return shipped_root_of(".")


CLI_PAGE = ROOT / "docs" / "cli.md"
SETTINGS_PAGE = ROOT / "docs" / "configuration.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"
SETTINGS_START, SETTINGS_END = "<!-- settings-reference:start -->", "<!-- settings-reference:end -->"


def _commands(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            found += _commands(command.commands[name], [*path, name])
    return found


def render() -> str:
    """Markdown with the help text of every command."""
    blocks = []
    for path, command in _commands(cli, ["hybrid"]):
        with click.Context(
            command, info_name=" ".join(path), terminal_width=100, help_option_names=["-h", "--help"]
        ) as ctx:
            blocks.append(f"### `{' '.join(path)}`\n\n```\n{command.get_help(ctx)}\n```")
    return "\n\n".join(blocks)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        if not isinstance(value, dict | list):
            return "see meaning"  # computed on this machine: the description says how
    else:
        value = field.default
    if value is None or value == {}:
        return "none" if value is None else "`{}`"
    if isinstance(value, Path):
        # Files shipped with the package are named as the repository names them, wherever this
        # checkout (or the installed package) lives, so the page is the same on every machine.
        shipped = shipped_root()
        if value.is_relative_to(shipped):
            return f"`data/{value.relative_to(shipped).as_posix()}`"
        if value.is_relative_to(ROOT):
            return f"`{value.relative_to(ROOT).as_posix()}`"
    return f"`{value}`"


def render_settings() -> str:
    """A Markdown table of every setting: environment variable, default, meaning, per-run or not."""
    from hybrid.settings import PER_RUN_FIELDS, Settings

    rows = ["| environment variable | default | per run | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        per_run = "yes" if name in PER_RUN_FIELDS else ""
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `HYBRID_{name.upper()}` | {_default(field)} | {per_run} | {meaning} |")
    return "\n".join(rows)


# Each generated page: its markers and what goes between them.
PAGES: dict[Path, tuple[str, str, Callable[[], str]]] = {
    CLI_PAGE: (START, END, render),
    SETTINGS_PAGE: (SETTINGS_START, SETTINGS_END, render_settings),
}


def replace_in(text: str, reference: str, start: str = START, end: str = END) -> str:
    """`text` with the block between the markers replaced by `reference`."""
    if start not in text or end not in text:
        raise ValueError(f"the page has lost its markers {start} ... {end}")
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{reference}\n{end}{tail}"


def rendered(page: Path, text: str) -> str:
    """`text`, the contents of `page`, with its generated block brought up to date."""
    start, end, make = PAGES[page]
    return replace_in(text, make(), start, end)


def write() -> list[Path]:
    """Regenerate every page whose block is out of date; the pages changed."""
    changed = []
    for page in PAGES:
        text = page.read_text()
        new = rendered(page, text)
        if new != text:
            page.write_text(new)
            changed.append(page)
    return changed


if __name__ == "__main__":
    if "--write" in sys.argv:
        for page in write():
            print(f"updated {page.relative_to(ROOT)}")
    else:
        print(render_settings() + "\n\n" + render())
