"""Every command of the ``sesam`` group, subcommands included, for the tests that walk them all."""

from __future__ import annotations

from typing import Iterator

import click

from sesam_cli.main import cli


def walk_commands(command: click.Command = cli, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """(names after ``sesam``, command) for the group itself (``()``) and every command below it."""
    yield path, command
    if isinstance(command, click.Group):
        context = click.Context(command)
        for name in command.list_commands(context):
            yield from walk_commands(command.get_command(context, name), path + (name,))


def option_names(command: click.Command) -> list[str]:
    """The long option names of ``command`` (``--x`` and a flag's ``--no-x`` / other spelling); ``--help``
    and hidden options (an old spelling kept working) left out."""
    names = []
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            names += [name for name in (*param.opts, *param.secondary_opts) if name.startswith("--")]
    return [name for name in names if name != "--help"]
