"""The operator console: server-rendered pages over :class:`TaskService` at ``/ui``.

A third thin adapter beside the MCP server and the CLI: every read and every action goes
through the same service operations (and so the same identity, authorization, rate limits,
validation, audit, traces and metrics).  :func:`~taskbroker.console.app.create_console_app`
builds it; :mod:`taskbroker.mcp.http` mounts it.
"""
