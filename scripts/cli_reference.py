"""Render the README's CLI reference from `hybrid --help`, so the docs cannot drift.

python scripts/cli_reference.py          print the reference
python scripts/cli_reference.py --write  replace it in README.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hybrid.cli import cli

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


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


def replace_in(text: str, reference: str) -> str:
    """`text` with the block between the markers replaced by `reference`."""
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{reference}\n{END}{tail}"


if __name__ == "__main__":
    if "--write" in sys.argv:
        README.write_text(replace_in(README.read_text(), render()))
    else:
        print(render())
