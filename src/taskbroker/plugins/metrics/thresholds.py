"""How a metric value is graded good / warning / critical, stated with every result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["COMPLIANCE", "COVERAGE", "FAIRNESS", "Status", "Thresholds", "metric_result"]

Status = Literal["good", "warning", "critical"]


@dataclass(frozen=True)
class Thresholds:
    """Grading rule of one metric (higher is better).

    ``value >= warning_below`` is good, ``critical_below <= value < warning_below`` is warning,
    ``value < critical_below`` is critical.  ``benchmark`` is the target a program should meet.
    """

    metric: str
    unit: str
    warning_below: float
    critical_below: float
    benchmark: float
    benchmark_note: str

    def status(self, value: float) -> Status:
        """The grade of ``value``."""
        if value >= self.warning_below:
            return "good"
        if value >= self.critical_below:
            return "warning"
        return "critical"

    def describe(self) -> dict[str, Any]:
        """The rule as JSON, for the result (so every status says why)."""
        return {
            "good": f"value >= {self.warning_below}",
            "warning": f"{self.critical_below} <= value < {self.warning_below}",
            "critical": f"value < {self.critical_below}",
            "warning_below": self.warning_below,
            "critical_below": self.critical_below,
        }


FAIRNESS = Thresholds(
    metric="fairness",
    unit="index 0..1 (1 - Gini of hours within a cohort; 1 = perfectly even)",
    warning_below=0.90,
    critical_below=0.80,
    benchmark=0.90,
    benchmark_note="Gini <= 0.10 of hours within each cohort",
)
COVERAGE = Thresholds(
    metric="coverage",
    unit="percent of required slots staffed",
    warning_below=98.0,
    critical_below=95.0,
    benchmark=100.0,
    benchmark_note="every slot that needs faculty has enough present faculty",
)
COMPLIANCE = Thresholds(
    metric="compliance",
    unit="percent of residents with no ACGME duty-hour violation",
    warning_below=100.0,
    critical_below=95.0,
    benchmark=100.0,
    benchmark_note="ACGME: every resident within the duty-hour rules",
)


def metric_result(thresholds: Thresholds, value: float, details: dict[str, Any]) -> dict[str, Any]:
    """The uniform shape of one metric: value, status, thresholds, benchmark, details."""
    return {
        "value": round(value, 4),
        "unit": thresholds.unit,
        "status": thresholds.status(value),
        "thresholds": thresholds.describe(),
        "benchmark": {"value": thresholds.benchmark, "meaning": thresholds.benchmark_note},
        "details": details,
    }
