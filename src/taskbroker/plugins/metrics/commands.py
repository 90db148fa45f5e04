"""The metrics plugin's CLI command: ``taskbroker data snapshots``."""

from __future__ import annotations

import json

import click

__all__ = ["snapshots"]


@click.command("snapshots")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
def snapshots(limit: int) -> None:
    """List stored metrics snapshots, newest first (taken by metrics_snapshot)."""
    from taskbroker.plugins.metrics.snapshots import list_snapshots

    click.echo(json.dumps(list_snapshots(limit), indent=2, default=str))
