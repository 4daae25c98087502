"""Render the README's CLI reference (from `hybrid --help`) and settings reference (from
`Settings`), so the docs cannot drift.

python scripts/cli_reference.py          print both references
python scripts/cli_reference.py --write  replace them in README.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from pydantic.fields import FieldInfo

from hybrid.cli import cli

README = Path(__file__).resolve().parent.parent / "README.md"
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
    if isinstance(value, Path) and value.is_relative_to(README.parent):
        return f"`{value.relative_to(README.parent)}`"
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


def replace_in(text: str, reference: str, start: str = START, end: str = END) -> str:
    """`text` with the block between the markers replaced by `reference`."""
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{reference}\n{end}{tail}"


def rendered_readme(text: str) -> str:
    """The README with both references brought up to date."""
    text = replace_in(text, render())
    return replace_in(text, render_settings(), SETTINGS_START, SETTINGS_END)


if __name__ == "__main__":
    if "--write" in sys.argv:
        README.write_text(rendered_readme(README.read_text()))
    else:
        print(render_settings() + "\n\n" + render())
