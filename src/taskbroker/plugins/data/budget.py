"""The result budget of the built-in task types: agent-sized answers by default.

Every built-in task type's result fits in :data:`RESULT_BUDGET_BYTES` (32 KB of compact JSON)
at 100 faculty x 365 days with its default ``detail="summary"``: long lists are cut to a fixed
length, their full length is given beside them (``<list>_total``) and a ``truncated`` entry
says what was cut and how to get everything (``detail="full"``, whose size grows with the
program).  Stored metrics snapshots always hold the summary form.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

__all__ = ["RESULT_BUDGET_BYTES", "Detail", "cap", "detail_field"]

#: the largest result (compact JSON) a built-in task type returns with detail="summary"
RESULT_BUDGET_BYTES = 32 * 1024

Detail = Literal["summary", "full"]


def detail_field() -> Any:
    """The ``detail`` parameter of the task types with long lists."""
    return Field(default="summary", description=(
        "summary (default): long lists are cut so the result stays under 32 KB, with their "
        "totals and a note in 'truncated'; full: every item (the result grows with the "
        "program)."))


def cap(container: dict[str, Any], key: str, limit: int, *, detail: str, what: str) -> None:
    """Cut ``container[key]`` (a list) to ``limit`` items unless ``detail`` is ``full``;
    always record its length in ``<key>_total`` and, when cut, say so in ``truncated``."""
    items = container[key]
    total = len(items)
    container[f"{key}_total"] = total
    if detail == "full" or total <= limit:
        return
    container[key] = items[:limit]
    container.setdefault("truncated", {})[key] = (
        f"showing {limit} of {total} {what}; detail='full' returns all of them")
