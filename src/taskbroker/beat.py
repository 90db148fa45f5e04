"""Periodic work: the entries plugins ask for through ``taskbroker_register_schedules``, run by
Celery beat.

Each entry names a task type.  When it is due, beat starts it through
:meth:`TaskService.start <taskbroker.core.pipeline.service.TaskService.start>` in its own
process, as the system principal ``Principal(settings.beat_user, {"admin"})``: a periodic
run gets a ledger record, passes the middleware (validation, rate limits, tracing) and is
polled, listed and cancelled like any other task.  No extra hop through a worker is needed.

``TASKBROKER_SCHEDULES`` (JSON) overrides entries by name::

    {"metrics_snapshot": "off", "resilience_health_check": "*/5 * * * *", "x": 600}

``"off"`` disables an entry, a 5-field crontab string (minute hour day-of-month month
day-of-week, UTC) or a number of seconds replaces its schedule.  An override naming no entry,
or a malformed one, stops beat with an error that names the entry.

Why one module of ~320 lines: entries, overrides and the scheduler are one concept (periodic
runs) and are read together; the Celery scheduler subclass is the only Celery-specific part.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery.beat import PersistentScheduler, ScheduleEntry, Service
from celery.schedules import BaseSchedule, crontab, schedule

from taskbroker.core.pipeline.errors import TaskbrokerError
from taskbroker.core.pipeline.principal import ADMIN_ROLE, Principal
from taskbroker.core.settings import Settings

if TYPE_CHECKING:
    from taskbroker.app import App
    from taskbroker.core.contract.plugins import Plugins

__all__ = [
    "BeatEntry",
    "ScheduleError",
    "TaskbrokerScheduler",
    "apply_overrides",
    "beat_entries",
    "beat_principal",
    "collect_entries",
    "parse_overrides",
    "parse_schedule",
    "run_beat",
]

log = logging.getLogger("taskbroker.beat")

#: the value of an override that disables an entry
OFF = "off"


class ScheduleError(ValueError):
    """A schedule entry or an override of one is invalid; the message names the entry."""


@dataclass(frozen=True)
class BeatEntry:
    """One periodic run: start ``task_type`` with ``params`` whenever ``schedule`` is due.

    Attributes:
        name: the entry's unique name (what ``TASKBROKER_SCHEDULES`` overrides refer to).
        task_type: name of a registered task type.
        schedule: a Celery schedule (:class:`~celery.schedules.crontab` or an interval).
        params: the parameters each run is started with.
        plugin: the plugin that registered the entry.
    """

    name: str
    task_type: str
    schedule: BaseSchedule
    params: dict[str, Any] = field(default_factory=dict)
    plugin: str | None = None

    def describe(self) -> str:
        """A one-line human description, e.g. ``metrics_cleanup: <crontab: 30 3 * * *>``."""
        return f"{self.name}: {self.task_type} {_describe_schedule(self.schedule)}"


def _describe_schedule(value: BaseSchedule) -> str:
    if isinstance(value, crontab):
        return (f"at crontab '{value._orig_minute} {value._orig_hour} "
                f"{value._orig_day_of_month} {value._orig_month_of_year} "
                f"{value._orig_day_of_week}' (UTC)")
    if isinstance(value, schedule):
        return f"every {value.run_every.total_seconds():g} s"
    return repr(value)


def parse_schedule(value: Any, *, entry: str) -> BaseSchedule:
    """Turn a schedule as plugins and settings write it into a Celery schedule.

    Accepted: a Celery schedule object (``crontab(...)``), a positive number of seconds (int,
    float, numeric string or :class:`datetime.timedelta`), or a 5-field crontab string
    ``"minute hour day-of-month month day-of-week"``.  Anything else is a
    :class:`ScheduleError` naming ``entry``.
    """
    if isinstance(value, BaseSchedule):
        return value
    seconds: float | None = None
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            fields = text.split()
            if len(fields) != 5:
                raise ScheduleError(
                    f"schedule entry {entry!r}: {value!r} is not a schedule; expected 'off', "
                    "a number of seconds or a 5-field crontab 'minute hour day-of-month "
                    "month day-of-week'"
                ) from None
            try:
                return crontab.from_string(" ".join(fields))
            except (ValueError, TypeError, IndexError) as exc:
                raise ScheduleError(
                    f"schedule entry {entry!r}: invalid crontab {value!r}: {exc}"
                ) from None
    else:
        raise ScheduleError(
            f"schedule entry {entry!r}: expected a crontab or a number of seconds, got "
            f"{type(value).__name__}"
        )
    if not seconds > 0:
        raise ScheduleError(
            f"schedule entry {entry!r}: the interval must be a positive number of seconds, "
            f"got {value!r}"
        )
    return schedule(run_every=dt.timedelta(seconds=seconds))


def parse_overrides(raw: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """``TASKBROKER_SCHEDULES`` as a dict ``{entry name: "off" | crontab | seconds}``."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ScheduleError(f"TASKBROKER_SCHEDULES is not valid JSON: {exc}") from None
    else:
        value = raw
    if not isinstance(value, Mapping):
        raise ScheduleError(
            'TASKBROKER_SCHEDULES must be a JSON object {"<entry name>": "off" | '
            f'"<crontab>" | seconds}}, got {type(value).__name__}'
        )
    return dict(value)


def collect_entries(plugins: Plugins) -> list[BeatEntry]:
    """The entries every plugin registered, validated against the registry.

    An entry with a bad schedule, an unknown task type, parameters the type rejects, or a name
    another entry already took is skipped and recorded in that plugin's errors (shown by
    ``taskbroker plugins``); the other entries stand.
    """
    entries: dict[str, BeatEntry] = {}
    for raw in plugins.schedules():
        plugin = raw.get("plugin") or "?"
        name = raw.get("name")
        try:
            if not isinstance(name, str) or not name:
                raise ScheduleError(f"schedule entry name must be a non-empty string: {name!r}")
            if name in entries:
                raise ScheduleError(
                    f"schedule entry {name!r} registered twice: by plugin "
                    f"{entries[name].plugin!r} and by plugin {plugin!r}"
                )
            task_type = raw.get("task_type")
            if task_type not in plugins.registry:
                raise ScheduleError(
                    f"schedule entry {name!r}: unknown task type {task_type!r}"
                )
            params = dict(raw.get("params") or {})
            try:
                plugins.registry.validate(task_type, params)
            except TaskbrokerError as exc:
                raise ScheduleError(f"schedule entry {name!r}: {exc}") from None
            entries[name] = BeatEntry(name, task_type, parse_schedule(raw.get("schedule"),
                                                                      entry=name),
                                      params, plugin)
        except ScheduleError as exc:
            info = plugins.info.get(plugin)
            if info is not None:
                info.errors.append(str(exc))
            log.error("plugin %s: %s", plugin, exc)
    return list(entries.values())


def apply_overrides(entries: Iterable[BeatEntry], overrides: Mapping[str, Any]) -> list[BeatEntry]:
    """Apply settings overrides: ``"off"`` drops an entry, anything else replaces its schedule.

    An override naming no registered entry is a :class:`ScheduleError` (a typo would otherwise
    silently leave the entry running).
    """
    by_name = {e.name: e for e in entries}
    unknown = sorted(set(overrides) - set(by_name))
    if unknown:
        known = ", ".join(sorted(by_name)) or "none"
        raise ScheduleError(
            f"schedule entry {unknown[0]!r} in TASKBROKER_SCHEDULES is not registered by any "
            f"plugin; registered entries: {known}"
        )
    result = []
    for name, entry in by_name.items():
        if name not in overrides:
            result.append(entry)
            continue
        value = overrides[name]
        if isinstance(value, str) and value.strip().lower() == OFF:
            log.info("schedule entry %s disabled by settings", name)
            continue
        result.append(replace(entry, schedule=parse_schedule(value, entry=name)))
    return result


def beat_entries(plugins: Plugins, settings: Settings) -> list[BeatEntry]:
    """What beat runs: the plugins' valid entries with the settings' overrides applied."""
    return apply_overrides(collect_entries(plugins), parse_overrides(settings.schedules))


def beat_principal(settings: Settings) -> Principal:
    """The system principal periodic runs are started as (``TASKBROKER_BEAT_USER``, admin)."""
    return Principal(settings.beat_user, frozenset({ADMIN_ROLE}))


def celery_beat_schedule(entries: Iterable[BeatEntry]) -> dict[str, dict[str, Any]]:
    """``beat_schedule`` for Celery: one entry per :class:`BeatEntry`."""
    return {
        e.name: {
            "task": f"taskbroker.tasks.{e.task_type}",
            "schedule": e.schedule,
            "kwargs": {"task_type": e.task_type, "params": dict(e.params)},
        }
        for e in entries
    }


class TaskbrokerScheduler(PersistentScheduler):
    """A beat scheduler whose due entries are started through :class:`TaskService`.

    The schedule's last-run times persist in the schedule file like Celery's default
    scheduler.  :attr:`taskbroker_app` is bound by :func:`run_beat` (a subclass per process).
    """

    #: the application whose service starts the runs (bound by :func:`run_beat`)
    taskbroker_app: App | None = None
    #: entries never publish raw Celery messages, so beat needs no producer of its own
    producer = None

    def apply_async(self, entry: ScheduleEntry, producer: Any = None, advance: bool = True,
                    **kwargs: Any) -> Any:
        """Start the entry's task type as the beat principal (errors are logged, not raised)."""
        entry = self.reserve(entry) if advance else entry
        if "task_type" not in (entry.kwargs or {}):  # Celery's own (celery.backend_cleanup)
            return super().apply_async(entry, producer=producer, advance=False, **kwargs)
        app = self.taskbroker_app
        try:
            if app is None:
                raise RuntimeError("TaskbrokerScheduler used without an application")
            task_type = entry.kwargs["task_type"]
            params = dict(entry.kwargs.get("params") or {})
            receipt = app.service.start(beat_principal(app.settings), task_type, params)
            log.info("beat started %s (entry %s) as task %s", task_type, entry.name,
                     receipt.task_id)
            return receipt
        except TaskbrokerError as exc:
            log.error("beat could not start entry %s: %s: %s", entry.name,
                      type(exc).__name__, exc)
            return None
        finally:
            self._tasks_since_sync += 1
            if self.should_sync():
                self._do_sync()


def run_beat(settings: Settings, *, schedule_file: Path | None = None,
             max_interval: float | None = None) -> None:
    """Run beat until SIGTERM/SIGINT with the plugins' entries and the settings' overrides.

    The schedule file (last-run times) defaults to ``<data_dir>/beat-schedule``.  Invalid
    overrides stop beat at once with :class:`SystemExit` naming the entry.
    """
    from taskbroker.app import build_app

    app = build_app(settings)
    try:
        entries = beat_entries(app.plugins, settings)
    except ScheduleError as exc:
        raise SystemExit(f"taskbroker beat: {exc}") from None
    for error in app.plugins.errors:
        log.error("plugin error: %s", error)
    app.celery.conf.beat_schedule = celery_beat_schedule(entries)
    if not entries:
        log.warning("beat: no schedule entries registered; beat will idle")
    for entry in entries:
        log.info("beat entry %s", entry.describe())

    path = schedule_file or settings.data_dir / "beat-schedule"
    path.parent.mkdir(parents=True, exist_ok=True)
    scheduler_cls = type("BoundTaskbrokerScheduler", (TaskbrokerScheduler,),
                         {"taskbroker_app": app})
    service = Service(app.celery, scheduler_cls=scheduler_cls,  # type: ignore[arg-type]
                      schedule_filename=str(path), max_interval=max_interval)

    def _stop(signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("beat running as %s with %d entries (schedule file %s)", settings.beat_user,
             len(entries), path)
    service.start()
