"""The built-in ``metrics`` plugin: is the schedule fair, covered and compliant, and is it
getting better or worse?  Five task types; definitions and thresholds in README.md."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from taskbroker import TaskType, hookimpl
from taskbroker.plugins.data.params import ADMIN_ROLE, PLANNER_ROLE
from taskbroker.plugins.metrics import (
    cleanup,
    computation,
    fairness_report,
    snapshots,
    version_diff,
)
from taskbroker.plugins.metrics.params import (
    CleanupParams,
    ComputationParams,
    FairnessReportParams,
    SnapshotParams,
    VersionDiffParams,
)
from taskbroker.plugins.metrics.schedules import taskbroker_register_schedules  # noqa: F401

__all__ = ["TASK_TYPES", "taskbroker_register_commands", "taskbroker_register_migrations",
           "taskbroker_register_task_types"]

TASK_TYPES: tuple[TaskType, ...] = (
    TaskType(
        name="metrics_computation",
        description="Compute fairness, coverage and ACGME compliance of the current schedule "
        "for a date window, with workload and stability against the previous run.",
        run=computation.run,
        params=ComputationParams,
        estimated_duration="2-5 minutes",
    ),
    TaskType(
        name="metrics_snapshot",
        description="Compute the schedule metrics for today .. today + period_days and store "
        "them as a snapshot.",
        run=snapshots.run,
        params=SnapshotParams,
        estimated_duration="1-2 minutes",
        required_role=PLANNER_ROLE, mutates=True,
    ),
    TaskType(
        name="metrics_cleanup",
        description="Delete metrics snapshots older than retention_days (never schedule data).",
        run=cleanup.run,
        params=CleanupParams,
        estimated_duration="1-2 minutes",
        required_role=ADMIN_ROLE, mutates=True,
    ),
    TaskType(
        name="metrics_fairness_report",
        description="Weekly fairness over the last weeks_back weeks with trend, anomalies and "
        "recommendations.",
        run=fairness_report.run,
        params=FairnessReportParams,
        estimated_duration="2-4 minutes",
    ),
    TaskType(
        name="metrics_version_diff",
        description="Compare two schedule runs: added, removed and changed assignments, "
        "per-person churn and metric deltas.",
        run=version_diff.run,
        params=VersionDiffParams,
        estimated_duration="1-3 minutes",
    ),
)


@hookimpl
def taskbroker_register_migrations(register: Callable[[str, Path], None]) -> None:
    """The snapshots table's revisions (version table ``taskbroker_schema_metrics``)."""
    register("metrics", Path(__file__).resolve().parent / "migrations")


@hookimpl(trylast=True)
def taskbroker_register_commands(cli: click.Group) -> None:
    """Add ``taskbroker data snapshots`` (to the data plugin's group)."""
    from taskbroker.plugins.data import data_group
    from taskbroker.plugins.metrics.commands import snapshots

    data_group(cli).add_command(snapshots)


@hookimpl
def taskbroker_register_task_types(register: Callable[[TaskType], None]) -> None:
    """Register the five metrics task types."""
    for task_type in TASK_TYPES:
        register(task_type)
