"""The program JSON file: :func:`program_to_json` and :func:`program_from_json`.

The shape is DESIGN.md's "Program file"; the generator and ``taskbroker data export`` write it,
``taskbroker data load`` reads it.  Load errors name the offending record, e.g.
``runs[r1].assignments[3].person: unknown person id 'x'`` or ``people[2].pgy: ...``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from taskbroker.schedule.program import Program

__all__ = ["ProgramLoadError", "program_from_json", "program_to_json"]


class ProgramLoadError(ValueError):
    """A program file that does not validate; the message names the record and field."""


def program_to_json(program: Program) -> dict[str, Any]:
    """The program as a JSON-ready dict (dates ISO strings, tuples as lists)."""
    return program.model_dump(mode="json")


def _where(loc: tuple[Any, ...], data: Any) -> str:
    """``people[3:fac-004].pgy`` style location of a pydantic error inside ``data``."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            label = str(part)
            item = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(item, dict) and "id" in item:
                label = f"{part}:{item['id']}"
            out += f"[{label}]"
            node = item
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "program"


def program_from_json(data: Any) -> Program:
    """Validate a program file's parsed JSON; :class:`ProgramLoadError` names the record."""
    if not isinstance(data, dict):
        raise ProgramLoadError("program file: expected a JSON object at the top level")
    try:
        return Program.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:10]:
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(
                ("function-", "tagged-union"))))
            msg = err["msg"]
            if err["type"] == "value_error":
                msg = msg.removeprefix("Value error, ")
                problems.append(msg if not loc else f"{_where(loc, data)}: {msg}")
            else:
                problems.append(f"{_where(loc, data)}: {msg}")
        more = exc.error_count() - len(problems)
        suffix = f" (and {more} more)" if more > 0 else ""
        raise ProgramLoadError("invalid program file: " + "; ".join(problems) + suffix) from None
