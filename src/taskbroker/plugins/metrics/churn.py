"""Differences between two sets of assignments, keyed by (person, date, half).

* added: the block is assigned to the person in the new set only;
* removed: in the old set only;
* changed: in both, with a different service or different hours;
* unchanged: in both, same service and hours.

``churn_rate = (added + removed + changed) / (added + removed + changed + unchanged)``, i.e.
the share of all (person, block) keys present in either set that differ; 0 when both are empty.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from taskbroker.schedule.program import Assignment

__all__ = ["AssignmentDiff", "diff_assignments"]

Key = tuple[str, dt.date, str]
_EPS = 1e-9


def _row(a: Assignment) -> dict[str, Any]:
    return {"person": a.person, "date": a.date.isoformat(), "half": a.half,
            "service": a.service, "hours": a.hours}


@dataclass
class AssignmentDiff:
    """The result of :func:`diff_assignments`."""

    added: list[Assignment] = field(default_factory=list)
    removed: list[Assignment] = field(default_factory=list)
    changed: list[tuple[Assignment, Assignment]] = field(default_factory=list)
    unchanged: int = 0

    @property
    def differing(self) -> int:
        """Number of (person, block) keys that differ."""
        return len(self.added) + len(self.removed) + len(self.changed)

    @property
    def churn_rate(self) -> float:
        """Differing keys over all keys present in either set (0..1)."""
        total = self.differing + self.unchanged
        return self.differing / total if total else 0.0

    def per_person(self) -> list[dict[str, Any]]:
        """Churn per person, most churned first."""
        counts: dict[str, dict[str, int]] = defaultdict(
            lambda: {"added": 0, "removed": 0, "changed": 0, "unchanged": 0})
        for a in self.added:
            counts[a.person]["added"] += 1
        for a in self.removed:
            counts[a.person]["removed"] += 1
        for old, _new in self.changed:
            counts[old.person]["changed"] += 1
        rows = []
        for person, c in counts.items():
            total = c["added"] + c["removed"] + c["changed"]
            rows.append({"person": person, **{k: c[k] for k in ("added", "removed", "changed")},
                         "total": total})
        rows.sort(key=lambda r: (-r["total"], r["person"]))
        return rows

    def as_dict(self, *, shown: int | None = 50) -> dict[str, Any]:
        """Counts, churn and listings of the edits (the first ``shown`` of each kind; None:
        all of them)."""
        return {
            "added_count": len(self.added),
            "removed_count": len(self.removed),
            "changed_count": len(self.changed),
            "unchanged_count": self.unchanged,
            "churn_rate": round(self.churn_rate, 4),
            "people_affected": len(self.per_person()),
            "added": [_row(a) for a in self.added[:shown]],
            "removed": [_row(a) for a in self.removed[:shown]],
            "changed": [{"before": _row(o), "after": _row(n)} for o, n in self.changed[:shown]],
            "listing_cap": shown,
        }


def diff_assignments(old: Iterable[Assignment], new: Iterable[Assignment]) -> AssignmentDiff:
    """Compare ``old`` and ``new`` per (person, date, half); lists are sorted by key."""
    before: dict[Key, Assignment] = {(a.person, a.date, a.half): a for a in old}
    after: dict[Key, Assignment] = {(a.person, a.date, a.half): a for a in new}
    diff = AssignmentDiff()
    for key in sorted(before.keys() | after.keys()):
        o, n = before.get(key), after.get(key)
        if o is None and n is not None:
            diff.added.append(n)
        elif n is None and o is not None:
            diff.removed.append(o)
        elif o is not None and n is not None:
            if o.service != n.service or abs(o.hours - n.hours) > _EPS:
                diff.changed.append((o, n))
            else:
                diff.unchanged += 1
    return diff
