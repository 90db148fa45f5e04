"""Alembic's environment for taskbroker: runs on the connection :mod:`..migrate` hands it."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=context.config.attributes.get("metadata"),
    render_as_batch=connection.dialect.name == "sqlite",
    version_table=context.config.attributes["version_table"],
)
with context.begin_transaction():
    context.run_migrations()
