"""``resilience_contingency``: N-1 and N-2 over the look-ahead window."""

from __future__ import annotations

from collections import Counter
from typing import Any

from taskbroker.core.contract.tasktype import TaskContext
from taskbroker.plugins.resilience._common import (
    DaysAheadParams,
    load_window,
    now_iso,
    period,
    stepper,
    window_coverage,
)
from taskbroker.schedule.contingency import ContingencyResult, analyse
from taskbroker.schedule.program import Program
from taskbroker.schedule.store import ScheduleStore

__all__ = ["recommendations", "run", "summarize"]

WORST = 10
SLOTS_SHOWN = 5


def _slots(items: list[tuple[str, tuple[str, ...]]]) -> list[dict[str, Any]]:
    return [{"block": label, "services": list(names)} for label, names in items[:SLOTS_SHOWN]]


def summarize(result: ContingencyResult, program: Program) -> dict[str, Any]:
    """The contingency fields of a result dict (counts, worst cases, recommendations)."""
    names = {p.id: p.name for p in program.people}
    n1_worst = []
    for f in sorted(result.n1, key=lambda f: (-len(result.n1[f]), f))[:WORST]:
        items = result.n1[f]
        services = Counter(s for _, names_ in items for s in names_)
        n1_worst.append({
            "faculty": f, "name": names.get(f, f), "failing_blocks": len(items),
            "slots": _slots(items),
            "why": f"no free qualified faculty could replace {f} on "
                   f"{', '.join(s for s, _ in services.most_common(3))}",
        })
    n2_worst = []
    for pair in sorted(result.n2_counts, key=lambda p: (-result.n2_counts[p], p))[:WORST]:
        items = result.n2_examples[pair]
        services = Counter(s for _, names_ in items for s in names_)
        n2_worst.append({
            "pair": list(pair), "names": [names.get(p, p) for p in pair],
            "failing_blocks": result.n2_counts[pair], "slots": _slots(items),
            "why": "either loss alone is covered by the last spare qualified faculty on "
                   f"{', '.join(s for s, _ in services.most_common(3))}; both losses are not",
        })
    return {
        "blocks_analysed": result.blocks,
        "n1_pass": result.n1_pass,
        "n1_vulnerabilities_count": len(result.n1),
        "n2_pass": result.n2_pass,
        "n2_fatal_pairs_count": len(result.n2_counts),
        "unstaffed_blocks_count": len(result.unstaffed),
        "unstaffed_blocks": _slots(result.unstaffed) if result.unstaffed else [],
        "n1_worst": n1_worst,
        "n2_worst": n2_worst,
        "recommendations": recommendations(result),
    }


def recommendations(result: ContingencyResult) -> list[str]:
    """Concrete actions a program director can take, most valuable first."""
    out = []
    if result.unstaffed:
        out.append(f"Staff the {len(result.unstaffed)} block(s) already short before any loss "
                   f"(first: {result.unstaffed[0][0]} on {', '.join(result.unstaffed[0][1])}).")
    bottleneck: Counter[str] = Counter()
    for items in result.n1.values():
        for _, names in items:
            bottleneck.update(names)
    for f in sorted(result.n1, key=lambda f: (-len(result.n1[f]), f))[:3]:
        out.append(f"Arrange backup for {f}: losing them breaks {len(result.n1[f])} block(s).")
    for service, n in bottleneck.most_common(2):
        out.append(f"Cross-train or credential more faculty for {service} "
                   f"(bottleneck in {n} single-loss failure(s)).")
    if result.n2_counts:
        out.append(f"{len(result.n2_counts)} faculty pair(s) must not be away together: "
                   "check leave requests against the N-2 list before approving them.")
    if not out:
        out.append("No action needed: every block survives any single or double faculty loss.")
    return out


def run(params: DaysAheadParams, ctx: TaskContext, *,
        store: ScheduleStore | None = None) -> dict[str, Any]:
    """Run N-1 and N-2 over ``params.days_ahead`` days of the current schedule."""
    program, start, model = load_window(params, ctx, store, model_progress=10)
    coverage = window_coverage(program, start, params.days_ahead)
    result = analyse(model, on_block=stepper(ctx, 15, 90, "analysing blocks (N-1, N-2)"))
    current = program.current_run()
    ctx.progress(95, "summarising")
    summary = summarize(result, program)
    if not coverage.with_data:
        # nothing was analysed: no pass, no "no action needed"
        summary.update(n1_pass=None, n2_pass=None, recommendations=[
            "No schedule data in the window: nothing was analysed. Load a schedule that "
            "covers it (taskbroker data load), or choose start_date and days_ahead within "
            f"the loaded schedule ({_loaded_span(program)})."])
    elif not coverage.complete:
        summary["recommendations"] = [r for r in summary["recommendations"]
                                      if not r.startswith("No action needed")] + [
            f"{coverage.requested_days - coverage.days_with_data} day(s) of the window have no "
            "schedule data and were not analysed: load the schedule for them."]
    return {"timestamp": now_iso(), "period": period(start, params.days_ahead),
            "data_coverage": coverage.as_dict(), "warnings": coverage.warnings(),
            "run_id": current.id if current else None, **summary}


def _loaded_span(program: Program) -> str:
    current = program.current_run()
    dates = [a.date for a in current.assignments] if current else []
    return f"{min(dates)}..{max(dates)}" if dates else "none loaded"
