"""``taskbroker tasks``: start, poll, cancel and list tasks as the local principal."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from taskbroker.cli.output import print_json, service_call
from taskbroker.core.pipeline.models import DEFAULT_LIST_LIMIT, FINAL_STATUSES, MAX_LIST_LIMIT

__all__ = ["tasks"]


@click.group()
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
@click.option("--notice-after", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="With --follow: say so when no worker has picked the task up after this "
                   "many seconds.")
def tasks_start(task_type: str, param_items: tuple[str, ...], params_json: str | None,
                priority: int | None, idempotency_key: str | None, follow: bool,
                notice_after: float) -> None:
    """Start a task of TASK_TYPE."""
    params: dict[str, Any] = json.loads(params_json) if params_json else {}
    params.update(dict(_parse_param(i) for i in param_items))
    receipt = service_call("start", task_type, params, priority=priority,
                            idempotency_key=idempotency_key)
    if not follow:
        print_json(receipt)
        return
    click.echo(f"started {receipt.task_id}", err=True)
    final = _follow(receipt.task_id, notice_after=notice_after)
    print_json(final)
    if final.status != "success":
        sys.exit(1)


def _follow(task_id: str, *, notice_after: float = 10.0) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from taskbroker.app import build_app, local_principal

    app = build_app()
    who = local_principal(app.settings)
    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    # progress and notices on stderr: stdout carries only the final JSON
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        handle = bar.add_task("pending", total=100)
        began, noticed = time.monotonic(), False
        while True:
            status = app.service.status(who, task_id)
            if status.status == "pending" and not noticed \
                    and time.monotonic() - began >= notice_after:
                noticed = True
                bar.console.print(
                    f"taskbroker: no worker has picked up task {task_id} after "
                    f"{notice_after:g} s: is a worker running for its queue? (`taskbroker "
                    "worker`; in embedded mode `taskbroker serve` starts one). Still waiting; "
                    "Ctrl-C stops waiting, the task stays queued.", style="yellow", soft_wrap=True)
            bar.update(handle, completed=status.progress,
                       description=f"{status.status}: {status.message or ''}"[:60])
            if status.status in FINAL_STATUSES:
                return status
            time.sleep(0.5)


@tasks.command("status")
@click.argument("task_id")
def tasks_status(task_id: str) -> None:
    """Show a task's status, progress and result."""
    print_json(service_call("status", task_id))


@tasks.command("cancel")
@click.argument("task_id")
def tasks_cancel(task_id: str) -> None:
    """Cancel a queued or running task."""
    print_json(service_call("cancel", task_id))


@tasks.command("retry")
@click.argument("task_id")
def tasks_retry(task_id: str) -> None:
    """Start a finished task again (same type and params), linked to it by retry_of."""
    print_json(service_call("retry", task_id))


@tasks.command("list")
@click.option("--type", "task_type", default=None, help="Only this task type.")
@click.option("--limit", type=click.IntRange(1, MAX_LIST_LIMIT), default=DEFAULT_LIST_LIMIT,
              show_default=True,
              help="At most this many tasks (total_active counts all).")
def tasks_list(task_type: str | None, limit: int) -> None:
    """List queued and running tasks, oldest first."""
    print_json(service_call("list_active", task_type, limit=limit))


@tasks.command("types")
def tasks_types() -> None:
    """Describe every registered task type."""
    print_json(service_call("list_types"))
