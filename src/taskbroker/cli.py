"""The ``taskbroker`` command: a thin adapter over TaskService, plus process entry points.

    taskbroker serve [--transport http|stdio]   MCP server (embedded: also runs a worker)
    taskbroker worker | beat                    Celery worker / beat scheduler
    taskbroker plugins                          installed plugins and their task types
    taskbroker tasks start|status|cancel|list|types
    taskbroker token create                     add a static bearer token
    taskbroker data generate|load|export|runs   schedule data (the built-in data plugin)

Plugins add commands through ``taskbroker_register_commands``; they are loaded the first time
a command that is not built in is looked up, so built-in commands never pay for it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel

from taskbroker.core.pipeline.errors import TaskbrokerError
from taskbroker.core.pipeline.models import DEFAULT_LIST_LIMIT, FINAL_STATUSES, MAX_LIST_LIMIT
from taskbroker.core.settings import get_settings

__all__ = ["main"]


def _print(obj: Any) -> None:
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    elif isinstance(obj, list):
        obj = [o.model_dump(mode="json") if isinstance(o, BaseModel) else o for o in obj]
    click.echo(json.dumps(obj, indent=2, default=str))


def _service_call(fn_name: str, *args: Any, **kwargs: Any) -> Any:
    from taskbroker.app import build_app, local_principal

    app = build_app()
    fn = getattr(app.service, fn_name)
    try:
        return fn(local_principal(app.settings), *args, **kwargs)
    except TaskbrokerError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None


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


# --- processes ---------------------------------------------------------------------------


@main.command()
@click.option("--transport", type=click.Choice(["http", "stdio"]), default="http",
              show_default=True, help="MCP transport.")
@click.option("--host", default=None, help="HTTP bind address [TASKBROKER_HOST].")
@click.option("--port", type=int, default=None, help="HTTP port [TASKBROKER_PORT].")
@click.option("--worker/--no-worker", "with_worker", default=None,
              help="Supervise a worker subprocess (default: yes in embedded mode).")
def serve(transport: str, host: str | None, port: int | None, with_worker: bool | None) -> None:
    """Run the MCP server (streamable HTTP at /mcp, or stdio)."""
    from taskbroker.app import build_app, build_reaper
    from taskbroker.mcp.run import serve_mcp
    from taskbroker.observability.logging import configure_logging
    from taskbroker.supervisor import WorkerSupervisor

    settings = get_settings()
    configure_logging(settings, stream=sys.stderr)
    app = build_app(settings)
    reaper = build_reaper(app)
    reaper.start()
    supervisor = None
    if with_worker or (with_worker is None and settings.embedded):
        supervisor = WorkerSupervisor([sys.executable, "-m", "taskbroker", "worker"],
                                      env=dict(os.environ))
        supervisor.start()
    try:
        serve_mcp(app, transport,  # type: ignore[arg-type]
                  host=host or settings.host, port=port if port is not None else settings.port)
    finally:
        reaper.stop()
        if supervisor is not None:
            supervisor.stop()


@main.command()
@click.option("--queues", "-Q", default=None, help="Comma list of queues (default: all).")
@click.option("--concurrency", "-c", type=int, default=None, help="Worker processes.")
@click.option("--pool", type=click.Choice(["prefork", "solo", "threads"]), default=None)
@click.option("--loglevel", "-l", default=None)
@click.option("--hostname", "-n", default=None, help="Worker node name.")
def worker(queues: str | None, concurrency: int | None, pool: str | None,
           loglevel: str | None, hostname: str | None) -> None:
    """Run a Celery worker for every registered task type."""
    from taskbroker.observability.logging import configure_logging

    settings = get_settings()
    configure_logging(settings, stream=sys.stderr)
    from taskbroker import worker as worker_module

    argv = ["worker", "-Q", queues or ",".join(worker_module.queues),
            "--pool", pool or settings.worker_pool,
            "--loglevel", (loglevel or settings.log_level).upper(),
            "--without-gossip", "--without-mingle"]
    n = concurrency or settings.worker_concurrency or (2 if settings.embedded else None)
    if n:
        argv += ["--concurrency", str(n)]
    if hostname:
        argv += ["--hostname", hostname]
    worker_module.app.worker_main(argv)


@main.command()
def beat() -> None:
    """Run Celery beat with the periodic schedules plugins register."""
    from taskbroker.beat import run_beat
    from taskbroker.observability.logging import configure_logging

    settings = get_settings()
    configure_logging(settings, stream=sys.stderr)
    run_beat(settings)


@main.command()
@click.option("--timeout", type=float, default=3.0, show_default=True)
@click.option("--local", is_flag=True, help="Ping only this host's worker (celery@hostname).")
def ping(timeout: float, local: bool) -> None:
    """Ping workers over the broker; exit 0 when at least one answers."""
    import socket

    from taskbroker.app import build_app

    app = build_app()
    dest = [f"celery@{socket.gethostname()}"] if local else None
    replies = app.celery.control.ping(timeout=timeout, destination=dest)
    if not replies:
        raise click.ClickException("no worker answered")
    _print(replies)


# --- plugins -----------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List installed plugins, their versions, hooks, task types and load errors."""
    from taskbroker.app import load_app_plugins

    loaded = load_app_plugins(get_settings())
    loaded.register_commands(click.Group("taskbroker"))  # so broken command hooks show too
    rows = [
        {"name": i.name, "version": i.version, "source": i.source, "hooks": i.hooks,
         "task_types": i.task_types, "errors": i.errors}
        for i in loaded.info.values()
    ]
    if as_json:
        _print(rows)
        return
    for row in rows:
        version = f" {row['version']}" if row["version"] else ""
        click.echo(f"{row['name']}{version} ({row['source']})")
        click.echo(f"  task types: {', '.join(row['task_types']) or '-'}")
        click.echo(f"  hooks: {', '.join(row['hooks']) or '-'}")
        for err in row["errors"]:
            click.echo(f"  ERROR: {err}")


# --- tasks -------------------------------------------------------------------------------


@main.group()
def tasks() -> None:
    """Start, poll, cancel and list tasks (as the configured local principal)."""


def _parse_param(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise click.BadParameter(f"{item!r}: expected key=value", param_hint="--param")
    key, raw = item.split("=", 1)
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


@tasks.command("start")
@click.argument("task_type")
@click.option("--param", "-p", "param_items", multiple=True, help="key=value (value as JSON "
              "when it parses, else a string); repeatable.")
@click.option("--params-json", default=None, help="All params as one JSON object.")
@click.option("--priority", type=int, default=None)
@click.option("--idempotency-key", default=None)
@click.option("--follow", "-f", is_flag=True, help="Show progress until the task ends.")
def tasks_start(task_type: str, param_items: tuple[str, ...], params_json: str | None,
                priority: int | None, idempotency_key: str | None, follow: bool) -> None:
    """Start a task of TASK_TYPE."""
    params: dict[str, Any] = json.loads(params_json) if params_json else {}
    params.update(dict(_parse_param(i) for i in param_items))
    receipt = _service_call("start", task_type, params, priority=priority,
                            idempotency_key=idempotency_key)
    if not follow:
        _print(receipt)
        return
    click.echo(f"started {receipt.task_id}", err=True)
    final = _follow(receipt.task_id)
    _print(final)
    if final.status != "success":
        sys.exit(1)


def _follow(task_id: str) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from taskbroker.app import build_app, local_principal

    app = build_app()
    who = local_principal(app.settings)
    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        handle = bar.add_task("queued", total=100)
        while True:
            status = app.service.status(who, task_id)
            bar.update(handle, completed=status.progress,
                       description=f"{status.status}: {status.message or ''}"[:60])
            if status.status in FINAL_STATUSES:
                return status
            time.sleep(0.5)


@tasks.command("status")
@click.argument("task_id")
def tasks_status(task_id: str) -> None:
    """Show a task's status, progress and result."""
    _print(_service_call("status", task_id))


@tasks.command("cancel")
@click.argument("task_id")
def tasks_cancel(task_id: str) -> None:
    """Cancel a queued or running task."""
    _print(_service_call("cancel", task_id))


@tasks.command("list")
@click.option("--type", "task_type", default=None, help="Only this task type.")
@click.option("--limit", type=click.IntRange(1, MAX_LIST_LIMIT), default=DEFAULT_LIST_LIMIT,
              show_default=True,
              help="At most this many tasks (total_active counts all).")
def tasks_list(task_type: str | None, limit: int) -> None:
    """List queued and running tasks, oldest first."""
    _print(_service_call("list_active", task_type, limit=limit))


@tasks.command("types")
def tasks_types() -> None:
    """Describe every registered task type."""
    _print(_service_call("list_types"))


# --- tokens ------------------------------------------------------------------------------


@main.group()
def token() -> None:
    """Manage static bearer tokens."""


@token.command("create")
@click.option("--user", required=True, help="User id the token authenticates.")
@click.option("--roles", default="", help="Comma list of roles (e.g. admin).")
@click.option("--file", "path", type=click.Path(path_type=Path), default=None,
              help="Token file [TASKBROKER_TOKEN_FILE].")
def token_create(user: str, roles: str, path: Path | None) -> None:
    """Create a token for USER and print it once (the file keeps only its hash)."""
    from taskbroker.mcp.tokens import add_token

    target = path or get_settings().token_file
    if target is None:
        raise click.ClickException("give --file or set TASKBROKER_TOKEN_FILE")
    click.echo(add_token(target, user, [r.strip() for r in roles.split(",") if r.strip()]))
