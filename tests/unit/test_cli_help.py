"""Every `dora` command's `--help` shows at least one example (in-process: fast)."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
import typer.main
from typer.testing import CliRunner

from dora.cli.main import app


def _leaves(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    subcommands = getattr(command, "commands", None)
    if subcommands:
        for name, sub in subcommands.items():
            yield from _leaves(sub, (*path, name))
    else:
        yield path


COMMANDS = sorted(_leaves(typer.main.get_command(app)))


def test_the_walk_finds_the_commands() -> None:
    names = {" ".join(path) for path in COMMANDS}
    expected = {
        "apply",
        "delete",
        "get",
        "describe",
        "why",
        "pause",
        "resume",
        "validate",
        "version",
        "profile init",
        "profile use",
        "profile list",
        "profile delete",
        "token create",
        "token list",
        "token revoke",
        "server api",
        "server scheduler",
        "ls",
        "upload",
        "download",
        "sync",
        "workspace clone",
        "credits",
    }
    assert expected <= names


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_help_has_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, result.output
    assert "dora " in result.output.split("Example", 1)[1], result.output


def test_top_level_help_starts_with_the_usual_commands() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    for line in ("dora profile init", "dora apply -f job.yaml", "dora get wk", "dora why wk"):
        assert line in result.output
