"""A start form from a task type's params JSON schema, and the params from a submitted form.

Scalars get an input of their kind (text, integer, number, checkbox, date, a select for an
enum); anything else (lists, objects) a JSON text field.  Submitted values are converted to
the schema's JSON types here; the service then validates them exactly as it validates an MCP
start (strict types, ranges, unknown fields refused by name).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskbroker.core.pipeline.errors import InvalidRequest

__all__ = ["FormField", "fields_for", "params_from"]


@dataclass(frozen=True)
class FormField:
    """One input of a start form.

    Attributes:
        name: the param's name (the input's name is ``p.<name>``).
        label: its title.
        kind: text, integer, number, boolean, date, select or json.
        required: the schema requires it.
        default: the default as the input shows it ("" for none).
        options: a select's choices.
        help: the schema's description.
        minimum, maximum: a number's bounds, when given.
    """

    name: str
    label: str
    kind: str
    required: bool
    default: str
    options: list[str] = field(default_factory=list)
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None


def _non_null(prop: Mapping[str, Any]) -> Mapping[str, Any]:
    """``X | None`` (anyOf [X, null]) as X."""
    options = [p for p in prop.get("anyOf", []) if p.get("type") != "null"]
    return {**prop, **options[0]} if len(options) == 1 else prop


def _kind(prop: Mapping[str, Any]) -> str:
    if "enum" in prop:
        return "select"
    kind = prop.get("type")
    if kind == "string":
        return "date" if prop.get("format") == "date" else "text"
    if kind in ("integer", "number", "boolean"):
        return str(kind)
    return "json"


def _shown(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "json":
        return json.dumps(value)
    if kind == "boolean":
        return "true" if value else ""
    return str(value)


def fields_for(schema: Mapping[str, Any]) -> list[FormField]:
    """The inputs of a start form for ``schema`` (a params model's JSON schema)."""
    required = set(schema.get("required", []))
    fields = []
    for name, raw in (schema.get("properties") or {}).items():
        prop = _non_null(raw)
        kind = _kind(prop)
        fields.append(FormField(
            name=name, label=str(raw.get("title") or name), kind=kind,
            required=name in required, default=_shown(raw.get("default"), kind),
            options=[str(o) for o in prop.get("enum", [])], help=str(raw.get("description", "")),
            minimum=prop.get("minimum"), maximum=prop.get("maximum")))
    return fields


def params_from(form: Mapping[str, str], fields: list[FormField]) -> dict[str, Any]:
    """The params a submitted form means: empty optional inputs are left out (the default
    applies); values are converted to their JSON types; a value that cannot be is an
    InvalidRequest naming the param."""
    params: dict[str, Any] = {}
    for f in fields:
        raw = form.get(f"p.{f.name}")
        if f.kind == "boolean":
            params[f.name] = raw is not None
            continue
        text = (raw or "").strip()
        if not text:
            if f.required:
                raise InvalidRequest(f"params.{f.name}: required")
            continue
        params[f.name] = _convert(f, text)
    return params


def _convert(f: FormField, text: str) -> Any:
    try:
        if f.kind == "integer":
            return int(text)
        if f.kind == "number":
            return float(text)
        if f.kind == "json":
            return json.loads(text)
    except ValueError:
        expected = {"integer": "a whole number", "number": "a number", "json": "JSON"}[f.kind]
        raise InvalidRequest(f"params.{f.name}: expected {expected}, got {text[:60]!r}"
                             ) from None
    return text
