"""``resilience_crisis_activation``: record a crisis with its defense level and load shedding.

The severity maps to a defense level (minor 2 CONTROL, moderate 3 SAFETY_SYSTEMS, severe 4
CONTAINMENT, critical 5 EMERGENCY) and to cumulative load-shedding actions.  The approver is
the authenticated caller (``ctx.owner``); an ``approved_by`` parameter, if present, must name
the same user (the service fills it in; a different value is refused here too).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskbroker.core.contract.tasktype import TaskContext
from taskbroker.plugins.resilience._common import (
    DEFENSE_LEVELS,
    SEVERITY_LEVEL,
    Severity,
    now_iso,
    resolve_store,
)
from taskbroker.schedule.store import ScheduleStore

__all__ = ["CrisisActivationParams", "load_shedding_actions", "run"]

_ACTIONS: dict[str, list[str]] = {
    "minor": [
        "Freeze approval of new non-emergency leave",
        "Defer non-clinical faculty time (administration, research) in the affected weeks",
    ],
    "moderate": [
        "Cancel elective and educational sessions to free faculty half-days",
        "Reassign faculty from non-essential services to cover essential gaps",
    ],
    "severe": [
        "Suspend non-essential services: {non_essential}",
        "Activate the backup call pool",
    ],
    "critical": [
        "Run essential services only ({essential}) on the precomputed fallback schedule",
        "Notify the DIO / GME office and hospital incident command",
    ],
}


class CrisisActivationParams(BaseModel):
    """Severity and reason; ``approved_by`` is filled with the authenticated admin."""

    model_config = ConfigDict(extra="forbid")

    severity: Severity = Field(description="minor, moderate, severe or critical.")
    reason: str = Field(min_length=1, max_length=2000, description="Why the crisis is declared.")
    approved_by: str | None = Field(
        default=None, max_length=200,
        description="Set by the server to the authenticated admin; any other value is refused.")


def load_shedding_actions(severity: str, essential: list[str],
                          non_essential: list[str]) -> list[str]:
    """The cumulative actions of ``severity`` (each level adds to the ones below)."""
    order = list(SEVERITY_LEVEL)
    fill = {"essential": ", ".join(essential) or "none defined",
            "non_essential": ", ".join(non_essential) or "none defined"}
    out = []
    for level in order[: order.index(severity) + 1]:
        out.extend(a.format(**fill) for a in _ACTIONS[level])
    return out


def approver(params_value: str | None, ctx: TaskContext) -> str:
    """The approving user: the authenticated caller; a conflicting parameter is an error."""
    if ctx.owner and params_value and params_value != ctx.owner:
        raise ValueError(f"approved_by: must be the authenticated user {ctx.owner!r}")
    who = ctx.owner or params_value
    if not who:
        raise ValueError("approved_by: no authenticated user to record as approver")
    return who


def run(params: CrisisActivationParams, ctx: TaskContext, *,
        store: ScheduleStore | None = None) -> dict[str, Any]:
    """Activate crisis mode and store it (superseding an active crisis)."""
    who = approver(params.approved_by, ctx)
    st = resolve_store(store)
    ctx.progress(0, "reading the services")
    program = st.load_program() if not st.is_empty() else None
    services = program.services if program else ()
    actions = load_shedding_actions(params.severity,
                                    [s.id for s in services if s.essential],
                                    [s.id for s in services if not s.essential])
    ctx.raise_if_cancelled()
    previous = st.active_crisis()
    level = SEVERITY_LEVEL[params.severity]
    ctx.progress(50, "recording the crisis")
    crisis = st.activate_crisis(severity=params.severity, reason=params.reason,
                                approved_by=who, defense_level=level,
                                defense_level_name=DEFENSE_LEVELS[level], actions=actions)
    ctx.progress(100, "crisis active")
    return {
        "timestamp": now_iso(),
        "crisis_active": True,
        "crisis_id": crisis["id"],
        "severity": params.severity,
        "defense_level": level,
        "defense_level_name": DEFENSE_LEVELS[level],
        "reason": params.reason,
        "approved_by": who,
        "activated_at": crisis["activated_at"],
        "actions_taken": actions,
        "superseded_crisis_id": previous["id"] if previous else None,
    }
