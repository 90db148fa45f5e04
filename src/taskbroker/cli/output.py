"""What every CLI command shares: JSON output, and a service call as the local principal."""

from __future__ import annotations

import json
from typing import Any

import click
from pydantic import BaseModel

from taskbroker.core.pipeline.errors import TaskbrokerError, client_text

__all__ = ["print_json", "service_call"]


def print_json(obj: Any) -> None:
    """Print ``obj`` (a model, a list of models, or plain data) as indented JSON."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    elif isinstance(obj, list):
        obj = [o.model_dump(mode="json") if isinstance(o, BaseModel) else o for o in obj]
    click.echo(json.dumps(obj, indent=2, default=str))


def service_call(fn_name: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``TaskService.<fn_name>`` as the local principal; its errors become click errors."""
    from taskbroker.app import build_app, local_principal

    app = build_app()
    fn = getattr(app.service, fn_name)
    try:
        return fn(local_principal(app.settings), *args, **kwargs)
    except TaskbrokerError as exc:
        # the same kinds and texts as the MCP tools' errors
        raise click.ClickException(client_text(exc) or f"InternalError: {exc}") from None
