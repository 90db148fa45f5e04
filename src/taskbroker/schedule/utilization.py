"""Faculty utilization per day and its risk levels.

utilization(day) = required faculty half-days / available faculty half-days, where required is
the sum of the requirements of the day's slots and available is two half-days per faculty
member not on approved absence.  Levels compare exactly (rational arithmetic, no float
rounding at the thresholds): GREEN < 0.70 <= YELLOW < 0.80 <= ORANGE < 0.90 <= RED < 0.95
<= BLACK.  A day needing faculty with nobody available is BLACK; a day needing nobody is 0.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction

from taskbroker.schedule.program import Program
from taskbroker.schedule.staffing import StaffingModel

__all__ = ["LEVELS", "NO_DATA", "DayUtilization", "high_risk_periods", "level_for",
           "mark_days_without_data", "utilization_by_day"]

LEVELS: tuple[tuple[Fraction, str], ...] = (
    (Fraction(70, 100), "GREEN"),
    (Fraction(80, 100), "YELLOW"),
    (Fraction(90, 100), "ORANGE"),
    (Fraction(95, 100), "RED"),
)
HIGH_RISK = frozenset({"RED", "BLACK"})
#: the level of a day the schedule has no data for (never GREEN: nothing is known)
NO_DATA = "NO_DATA"


def level_for(required: int | Fraction, available: int | Fraction) -> str:
    """The level of ``required / available`` (exact comparison at the thresholds)."""
    if available <= 0:
        return "BLACK" if required > 0 else "GREEN"
    ratio = Fraction(required) / Fraction(available)
    for bound, name in LEVELS:
        if ratio < bound:
            return name
    return "BLACK"


@dataclass(frozen=True)
class DayUtilization:
    """One day: required and available faculty half-days, the ratio and its level."""

    date: dt.date
    required: int
    available: int
    level: str
    absent_faculty: int

    @property
    def utilization(self) -> float:
        """required / available (inf when nobody is available but someone is needed)."""
        if self.available == 0:
            return float("inf") if self.required else 0.0
        return self.required / self.available

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (utilization null when infinite or unknown)."""
        u = self.utilization
        known = u != float("inf") and self.level != NO_DATA
        return {"date": self.date.isoformat(), "utilization": round(u, 4) if known
                else None, "level": self.level, "required_half_days": self.required,
                "available_half_days": self.available, "absent_faculty": self.absent_faculty}


def utilization_by_day(model: StaffingModel) -> list[DayUtilization]:
    """Utilization of every day of the model's window."""
    required: Counter[dt.date] = Counter()
    for block in model.blocks:
        required[block.date] += sum(s.requirement for s in block.slots)
    total = len(model.faculty)
    out = []
    for day in model.dates():
        present = model.present_by_date.get(day, (1 << total) - 1).bit_count()
        available = 2 * present
        out.append(DayUtilization(day, required[day], available,
                                  level_for(required[day], available), total - present))
    return out


def mark_days_without_data(days: list[DayUtilization],
                           has_data: Callable[[dt.date], bool]) -> list[DayUtilization]:
    """``days`` with the level of every day without schedule data set to :data:`NO_DATA`."""
    return [d if has_data(d.date) else replace(d, level=NO_DATA) for d in days]


def high_risk_periods(
    days: list[DayUtilization], program: Program, model: StaffingModel
) -> list[dict[str, object]]:
    """Contiguous runs of RED/BLACK days with their drivers (who is away and why)."""
    periods: list[list[DayUtilization]] = []
    for d in days:
        if d.level in HIGH_RISK:
            if periods and (d.date - periods[-1][-1].date).days == 1:
                periods[-1].append(d)
            else:
                periods.append([d])
    out = []
    fac = set(model.faculty)
    for run in periods:
        first, last = run[0].date, run[-1].date
        types: Counter[str] = Counter()
        people: set[str] = set()
        for a in program.absences:
            if (a.status == "approved" and a.person in fac and a.start <= last
                    and a.end >= first):
                types[a.type] += 1
                people.add(a.person)
        peak = max(run, key=lambda d: d.utilization)
        drivers = [f"{n} faculty away ({t})" for t, n in types.most_common()]
        if not drivers:
            drivers = ["required staffing exceeds the faculty roster"]
        out.append({
            "start": first.isoformat(), "end": last.isoformat(), "days": len(run),
            "peak_utilization": peak.as_dict()["utilization"], "peak_level": peak.level,
            "absent_faculty": sorted(people), "drivers": drivers,
        })
    return out
