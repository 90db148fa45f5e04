"""``taskbroker plugins``: installed plugins, versions, hooks, task types and errors."""

from __future__ import annotations

import click

from taskbroker.cli.output import print_json
from taskbroker.core.settings import get_settings

__all__ = ["plugins"]


@click.command()
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
        print_json(rows)
        return
    for row in rows:
        version = f" {row['version']}" if row["version"] else ""
        click.echo(f"{row['name']}{version} ({row['source']})")
        click.echo(f"  task types: {', '.join(row['task_types']) or '-'}")
        click.echo(f"  hooks: {', '.join(row['hooks']) or '-'}")
        for err in row["errors"]:
            click.echo(f"  ERROR: {err}")
