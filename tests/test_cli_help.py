"""Every command explains itself and is documented (sqlite-utils' habit)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cervixbatch.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        found.append((full, command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, full + " "))
    return found


@pytest.mark.parametrize(("name", "command"), _commands(main))
def test_every_command_has_help_and_is_in_the_readme(name: str, command: click.Command) -> None:
    """Each command has help text, --help works, and the README names it."""
    assert command.help and len(command.help.strip()) > 20, name
    result = CliRunner().invoke(main, [*name.split(), "--help"])
    assert result.exit_code == 0
    assert f"cervixbatch {name}" in README, f"README does not mention `cervixbatch {name}`"
    for option in command.params:
        if isinstance(option, click.Option) and not option.hidden:
            assert option.help, (name, option.name)
