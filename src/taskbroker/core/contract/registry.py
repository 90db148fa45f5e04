"""The catalog of task types: lookup, parameter validation, descriptions for clients."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ValidationError

from taskbroker.core.contract.tasktype import TaskType
from taskbroker.core.pipeline.errors import InvalidRequest

__all__ = ["DuplicateTaskType", "Registry", "format_validation_error"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class DuplicateTaskType(ValueError):
    """Two plugins registered the same task-type name."""


@dataclass(frozen=True)
class _Entry:
    task_type: TaskType
    schema: dict[str, Any]


class Registry:
    """Task types by name, each registered by exactly one plugin."""

    def __init__(self, task_types: Iterable[TaskType] = ()) -> None:
        self._entries: dict[str, _Entry] = {}
        for t in task_types:
            self.add(t)

    def add(self, task_type: TaskType, plugin: str | None = None) -> None:
        """Add ``task_type`` (registered by ``plugin``); a taken name is a DuplicateTaskType."""
        if not isinstance(task_type, TaskType):
            raise TypeError(f"register() takes a TaskType, got {type(task_type).__name__}")
        if plugin is not None and task_type.plugin is None:
            task_type = replace(task_type, plugin=plugin)
        if not _NAME.match(task_type.name):
            raise ValueError(
                f"task type name {task_type.name!r} must match [a-z][a-z0-9_]* (max 64 chars)"
            )
        if not (isinstance(task_type.params, type) and issubclass(task_type.params, BaseModel)):
            raise TypeError(f"task type {task_type.name!r}: params must be a pydantic model class")
        if not callable(task_type.run):
            raise TypeError(f"task type {task_type.name!r}: run must be callable")
        existing = self._entries.get(task_type.name)
        if existing is not None:
            raise DuplicateTaskType(
                f"task type {task_type.name!r} registered twice: by plugin "
                f"{existing.task_type.plugin!r} and by plugin {task_type.plugin!r}"
            )
        self._entries[task_type.name] = _Entry(task_type, task_type.params_schema())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def all(self) -> list[TaskType]:
        """Registered task types, sorted by name."""
        return [self._entries[n].task_type for n in self.names()]

    def get(self, name: str) -> TaskType:
        """The task type called ``name``; InvalidRequest listing the valid names otherwise."""
        entry = self._entries.get(name) if isinstance(name, str) else None
        if entry is None:
            valid = "valid task types: " + ", ".join(self.names())
            if name is None or name == "":
                raise InvalidRequest(f"task_type: required; {valid}")
            if not isinstance(name, str):
                raise InvalidRequest(
                    f"task_type: expected a string, got {type(name).__name__}; {valid}"
                )
            raise InvalidRequest(f"task_type: unknown task type {name[:100]!r}; {valid}")
        return entry.task_type

    def schema(self, name: str) -> dict[str, Any]:
        """JSON schema of the parameters of ``name`` (computed once)."""
        self.get(name)
        return self._entries[name].schema

    def validate(self, name: str, params: Mapping[str, Any] | None) -> tuple[TaskType, BaseModel]:
        """Look up ``name`` and validate ``params``; InvalidRequest naming the bad fields."""
        task_type = self.get(name)
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise InvalidRequest(
                f"params: must be an object (a JSON dict), got {type(params).__name__}"
            )
        try:
            # strict JSON validation: what a JSON client could mean, no loose coercion
            # (true is not 1, "5" is not 5; ISO date strings are dates)
            document = json.dumps(dict(params), default=str)
            return task_type, task_type.params.model_validate_json(document, strict=True)
        except ValidationError as exc:
            raise InvalidRequest(
                format_validation_error(exc, task_type, self._entries[name].schema)
            ) from None


def format_validation_error(exc: ValidationError, task_type: TaskType, schema: dict) -> str:
    """One readable message: each bad field, what was wrong, and what the type accepts."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown parameter"
        parts.append(f"{_field_path(err['loc'])}: {msg}")
    props = schema.get("properties", {})
    if props:
        accepted = ", ".join(
            f"{k} ({_describe(v)})" for k, v in props.items() if k not in task_type.secret_params
        )
    else:
        accepted = "no parameters"
    return f"invalid params for {task_type.name}: " + "; ".join(parts) + f". Accepted: {accepted}"


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``params.a.b[0]``; names that are not identifiers are quoted: ``params[':']``."""
    path = "params"
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.isidentifier():
            path += f".{part}"
        else:
            path += f"[{part[:40]!r}]"
    return path


def _describe(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return "one of " + "|".join(json.dumps(v) for v in prop["enum"])
    kind = prop.get("type") or "|".join(
        str(p.get("type", p.get("$ref", "?"))) for p in prop.get("anyOf", [])
    )
    bounds = [
        f"{sym}{prop[key]}"
        for key, sym in (("minimum", ">="), ("maximum", "<="), ("exclusiveMinimum", ">"),
                         ("exclusiveMaximum", "<"))
        if key in prop
    ]
    fmt = prop.get("format")
    desc = str(kind) + (f" {fmt}" if fmt else "") + (" " + " ".join(bounds) if bounds else "")
    if "default" in prop:
        desc += f", default {json.dumps(prop['default'])}"
    return desc
