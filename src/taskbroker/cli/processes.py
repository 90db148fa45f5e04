"""Process entry points: ``serve``, ``worker``, ``beat`` and ``ping``."""

from __future__ import annotations

import os
import sys

import click

from taskbroker.cli.output import print_json
from taskbroker.core.settings import get_settings

__all__ = ["beat", "ping", "serve", "worker"]


@click.command()
@click.option("--transport", type=click.Choice(["http", "stdio"]), default="http",
              show_default=True, help="MCP transport.")
@click.option("--host", default=None, help="HTTP bind address [TASKBROKER_HOST].")
@click.option("--port", type=int, default=None, help="HTTP port [TASKBROKER_PORT].")
@click.option("--worker/--no-worker", "with_worker", default=None,
              help="Supervise a worker subprocess (default: yes in embedded mode).")
@click.option("--beat/--no-beat", "with_beat", default=False, show_default=True,
              help="Also supervise `taskbroker beat` (the plugins' periodic schedule), so one "
                   "embedded process tree runs everything; run one beat per deployment.")
def serve(transport: str, host: str | None, port: int | None, with_worker: bool | None,
          with_beat: bool) -> None:
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
    children: list[WorkerSupervisor] = []
    if with_worker or (with_worker is None and settings.embedded):
        children.append(WorkerSupervisor([sys.executable, "-m", "taskbroker", "worker"],
                                         env=dict(os.environ),
                                         grace=settings.shutdown_grace_seconds))
    if with_beat:
        children.append(WorkerSupervisor([sys.executable, "-m", "taskbroker", "beat"],
                                         env=dict(os.environ),
                                         grace=settings.shutdown_grace_seconds))
    for child in children:
        child.start()

    def cleanup() -> None:
        reaper.stop()
        for child in children:
            child.stop()

    # returns (or, over stdio, exits 0) on SIGTERM/SIGINT, after cleanup()
    serve_mcp(app, transport,  # type: ignore[arg-type]
              host=host or settings.host, port=port if port is not None else settings.port,
              cleanup=cleanup)


@click.command()
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
    from taskbroker.supervisor import PARENT_ENV, watch_parent

    if os.environ.get(PARENT_ENV, "").isdigit():  # started by `serve`: never outlive it
        watch_parent(int(os.environ[PARENT_ENV]), settings.shutdown_grace_seconds)
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


@click.command()
def beat() -> None:
    """Run Celery beat with the periodic schedules plugins register."""
    from taskbroker.beat import run_beat
    from taskbroker.observability.logging import configure_logging

    settings = get_settings()
    configure_logging(settings, stream=sys.stderr)
    from taskbroker.supervisor import PARENT_ENV, watch_parent

    if os.environ.get(PARENT_ENV, "").isdigit():  # started by `serve --beat`: never outlive it
        watch_parent(int(os.environ[PARENT_ENV]), settings.shutdown_grace_seconds)
    run_beat(settings)


@click.command()
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
    print_json(replies)
