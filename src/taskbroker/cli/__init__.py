"""The ``taskbroker`` command: a thin adapter over TaskService, plus process entry points.

    taskbroker serve [--transport http|stdio]   MCP server (embedded: also runs a worker)
    taskbroker worker | beat                    Celery worker / beat scheduler
    taskbroker plugins                          installed plugins and their task types
    taskbroker tasks start|status|cancel|list|types
    taskbroker token create                     add a static bearer token
    taskbroker db upgrade|current               the database schema (Alembic)
    taskbroker data generate|load|export|runs   schedule data (the built-in data plugin)

Plugins add commands through ``taskbroker_register_commands``; they are loaded the first time
a command that is not built in is looked up, so built-in commands never pay for it.
"""

from __future__ import annotations

import sys

import click

from taskbroker.cli.db import db
from taskbroker.cli.plugins import plugins
from taskbroker.cli.processes import beat, ping, serve, worker
from taskbroker.cli.tasks import tasks
from taskbroker.cli.tokens import token
from taskbroker.core.settings import get_settings

__all__ = ["PluginCommands", "main"]


class PluginCommands(click.Group):
    """The ``taskbroker`` group: its own commands, plus the ones plugins register (lazily)."""

    _plugins_loaded = False

    def _load_plugin_commands(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from taskbroker.app import load_app_plugins

        load_app_plugins(get_settings()).register_commands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command, the plugins' included."""
        self._load_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A built-in command, else one a plugin registers."""
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self._load_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command


@click.group(cls=PluginCommands)
@click.version_option(package_name="taskbroker")
def main() -> None:
    """taskbroker: long-running background tasks for MCP clients."""
    from taskbroker.observability.logging import configure_logging

    # logs go to stderr: stdout carries command output (JSON) and, for stdio, the MCP stream
    configure_logging(get_settings(), stream=sys.stderr)


for _command in (serve, worker, beat, ping, db, plugins, tasks, token):
    main.add_command(_command)
