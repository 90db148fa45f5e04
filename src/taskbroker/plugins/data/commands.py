"""``taskbroker data``: load, generate, export and list the schedule data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from taskbroker.schedule.store import ScheduleStore

__all__ = ["data"]


def _store() -> ScheduleStore:
    from taskbroker.plugins.data import schedule_store

    return schedule_store()


@click.group()
def data() -> None:
    """The residency-program data the built-in plugins analyse."""


@data.command("generate")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--faculty", type=int, default=40, show_default=True)
@click.option("--residents", type=int, default=60, show_default=True)
@click.option("--days", type=int, default=90, show_default=True)
@click.option("--services", type=int, default=6, show_default=True)
@click.option("--absence-rate", type=float, default=0.05, show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Write JSON here instead of loading it into the database.")
@click.option("--if-empty", is_flag=True, help="Only load when the database has no program.")
def data_generate(seed: int, faculty: int, residents: int, days: int, services: int,
                  absence_rate: float, output: Path | None, if_empty: bool) -> None:
    """Generate a realistic synthetic program (and load it, unless --output)."""
    from taskbroker.schedule.generator import generate_program
    from taskbroker.schedule.io import program_to_json

    store = None if output else _store()
    if store is not None and if_empty and not store.is_empty():
        click.echo("schedule data already loaded; nothing generated", err=True)
        return
    program = generate_program(seed=seed, faculty=faculty, residents=residents, days=days,
                               services=services, absence_rate=absence_rate)
    if output:
        output.write_text(json.dumps(program_to_json(program), indent=1))
        click.echo(f"wrote {output}", err=True)
        return
    assert store is not None
    store.save_program(program)
    click.echo(f"loaded program {program.program.name!r}: {len(program.people)} people, "
               f"{len(program.runs)} runs", err=True)


@data.command("load")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def data_load(path: Path) -> None:
    """Load a program JSON file (replaces the schedule data)."""
    from taskbroker.schedule.io import program_from_json

    try:
        program = program_from_json(json.loads(path.read_text()))
    except (ValueError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    _store().save_program(program)
    click.echo(f"loaded {path}", err=True)


@data.command("export")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None)
def data_export(output: Path | None) -> None:
    """Write the stored program as JSON (stdout by default)."""
    from taskbroker.schedule.io import program_to_json

    text = json.dumps(program_to_json(_store().load_program()), indent=1)
    if output:
        output.write_text(text)
    else:
        click.echo(text)


@data.command("runs")
def data_runs() -> None:
    """List the schedule runs (id, created_at, status, assignments, dates), newest first; the
    current schedule is the newest successful one."""
    from taskbroker.plugins.data.runs import run_summaries

    click.echo(json.dumps(run_summaries(_store().load_program()), indent=2))
