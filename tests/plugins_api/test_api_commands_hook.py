"""``taskbroker_register_commands``: plugins add CLI commands the way the built-ins do, hooks are
called through pluggy (ordering and wrappers honoured), and a broken plugin stays isolated."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import click
from click.testing import CliRunner

from taskbroker import hookimpl
from taskbroker.core.contract.plugins import load_plugins

GREETER = """
    import click
    from taskbroker import hookimpl

    @hookimpl
    def taskbroker_register_commands(cli):
        @cli.command()
        @click.argument("name")
        def greet(name):
            '''Say hello.'''
            click.echo(f"Hello, {name}!")
"""

BROKEN = """
    from taskbroker import hookimpl

    @hookimpl
    def taskbroker_register_commands(cli):
        raise RuntimeError("command bug")
"""


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tmp_path),
           "TASKBROKER_PLUGIN_MODULES": "tbx_greeter,tbx_broken_commands",
           "TASKBROKER_LOAD_PLUGINS": "", "TASKBROKER_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-m", "taskbroker", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_a_plugin_command_runs_and_a_broken_one_is_reported(tmp_path: Path) -> None:
    (tmp_path / "tbx_greeter.py").write_text(textwrap.dedent(GREETER))
    (tmp_path / "tbx_broken_commands.py").write_text(textwrap.dedent(BROKEN))
    done = _cli(tmp_path, "greet", "Ada")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hello, Ada!"
    # the built-in data plugin's group and the metrics plugin's subcommand are there too
    helped = _cli(tmp_path, "data", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "snapshots" in helped.stdout and "generate" in helped.stdout
    listed = _cli(tmp_path, "plugins")
    lines = listed.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("tbx_broken_commands"))
    assert "ERROR: register_commands failed: RuntimeError('command bug')" in lines[at + 3]


class First:
    """Creates a group (tryfirst), though registered last."""

    @hookimpl(tryfirst=True)
    def taskbroker_register_commands(self, cli: click.Group) -> None:
        cli.add_command(click.Group("shared"))


class Last:
    """Adds to the group (trylast), though registered first."""

    @hookimpl(trylast=True)
    def taskbroker_register_commands(self, cli: click.Group) -> None:
        group = cli.commands["shared"]
        assert isinstance(group, click.Group)

        @group.command()
        def hi() -> None:
            click.echo("hi from the last plugin")


class Watcher:
    """A new-style wrapper: sees every other implementation run and may act after them."""

    seen: list[str] = []

    @hookimpl(wrapper=True)
    def taskbroker_register_commands(self, cli: click.Group):  # type: ignore[no-untyped-def]
        self.seen.append("before")
        result = yield
        self.seen.append(f"after: {sorted(cli.commands)}")
        return result


def test_hooks_are_called_through_pluggy_with_its_ordering_and_wrappers() -> None:
    plugins = load_plugins(objects=[("last", Last()), ("watcher", Watcher()),
                                    ("first", First())], entry_points=False)
    cli = click.Group("taskbroker")
    plugins.register_commands(cli)
    assert plugins.errors == []
    result = CliRunner().invoke(cli, ["shared", "hi"])
    assert result.exit_code == 0, result.output
    assert result.output == "hi from the last plugin\n"
    assert Watcher.seen == ["before", "after: ['shared']"]


def test_one_plugins_failure_does_not_stop_the_others() -> None:
    class Raises:
        @hookimpl(tryfirst=True)
        def taskbroker_register_commands(self, cli: click.Group) -> None:
            raise ValueError("nope")

    class Adds:
        @hookimpl
        def taskbroker_register_commands(self, cli: click.Group) -> None:
            cli.add_command(click.Command("added"))

    plugins = load_plugins(objects=[("adds", Adds()), ("raises", Raises())],
                           entry_points=False)
    cli = click.Group("taskbroker")
    plugins.register_commands(cli)
    assert "added" in cli.commands
    assert plugins.errors == ["raises: register_commands failed: ValueError('nope')"]
