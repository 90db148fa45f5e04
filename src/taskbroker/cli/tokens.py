"""``taskbroker token``: static bearer tokens."""

from __future__ import annotations

from pathlib import Path

import click

from taskbroker.core.settings import get_settings

__all__ = ["token"]


@click.group()
def token() -> None:
    """Manage static bearer tokens."""


@token.command("create")
@click.option("--user", required=True, help="User id the token authenticates.")
@click.option("--roles", default="", help="Comma list of roles (e.g. admin).")
@click.option("--file", "path", type=click.Path(path_type=Path), default=None,
              help="Token file [TASKBROKER_TOKEN_FILE].")
def token_create(user: str, roles: str, path: Path | None) -> None:
    """Create a token for USER and print it once (the file keeps only its hash)."""
    from taskbroker.mcp.tokens import add_token

    target = path or get_settings().token_file
    if target is None:
        raise click.ClickException("give --file or set TASKBROKER_TOKEN_FILE")
    click.echo(add_token(target, user, [r.strip() for r in roles.split(",") if r.strip()]))
