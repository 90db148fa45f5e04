"""``resilience_crisis_deactivation``: end the active crisis (recorded with who and why)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskbroker.core.contract.tasktype import TaskContext
from taskbroker.plugins.resilience._common import DEFENSE_LEVELS, now_iso, resolve_store
from taskbroker.schedule.store import ScheduleStore

__all__ = ["CrisisDeactivationParams", "run"]


class CrisisDeactivationParams(BaseModel):
    """An optional closing note; the deactivating admin is the authenticated caller."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000,
                               description="Why the crisis is over.")


def run(params: CrisisDeactivationParams, ctx: TaskContext, *,
        store: ScheduleStore | None = None) -> dict[str, Any]:
    """Deactivate the active crisis; ValueError when there is none."""
    if not ctx.owner:
        raise ValueError("no authenticated user to record as deactivating the crisis")
    st = resolve_store(store)
    ctx.progress(0, "closing the crisis")
    ctx.raise_if_cancelled()
    crisis = st.deactivate_crisis(deactivated_by=ctx.owner, reason=params.reason)
    started = dt.datetime.fromisoformat(crisis["activated_at"].replace("Z", "+00:00"))
    ended = dt.datetime.fromisoformat(crisis["deactivated_at"].replace("Z", "+00:00"))
    ctx.progress(100, "crisis ended")
    return {
        "timestamp": now_iso(),
        "crisis_active": False,
        "crisis_id": crisis["id"],
        "severity": crisis["severity"],
        "approved_by": crisis["approved_by"],
        "activated_at": crisis["activated_at"],
        "deactivated_at": crisis["deactivated_at"],
        "deactivated_by": crisis["deactivated_by"],
        "reason": params.reason,
        "duration_minutes": round((ended - started).total_seconds() / 60, 1),
        "defense_level": 1,
        "defense_level_name": DEFENSE_LEVELS[1],
    }
