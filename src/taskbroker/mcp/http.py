"""The HTTP face of the server: MCP over streamable HTTP at /mcp, plus health and metrics.

``/healthz`` answers while the process lives (liveness); ``/readyz`` checks the broker and the
ledger database (readiness); ``/metrics`` is Prometheus.  None of them needs a token; all of
them, like ``/mcp``, answer only the Host headers :class:`~taskbroker.core.hosts.HostPolicy`
accepts.  They are served on the MCP port, or on their own port (:func:`create_ops_app`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import mcp.server.lowlevel.server as lowlevel_server
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from taskbroker.core.hosts import LOOPBACK_NAMES, HostPolicy
from taskbroker.core.pipeline.service import TaskService
from taskbroker.mcp.http_guards import HostCheckMiddleware, SingleAuthorizationMiddleware
from taskbroker.mcp.seed_tools import QUICK_TOOLS
from taskbroker.mcp.sessions import FairSessionManager, SessionLimits

__all__ = ["create_http_app", "create_ops_app", "fair_streamable_app", "transport_security"]

Metrics = Callable[[], tuple[bytes, str]]


def transport_security(allowed_hosts: list[str]) -> TransportSecuritySettings:
    """The SDK's DNS-rebinding protection for /mcp: loopback names plus ``allowed_hosts``."""
    if "*" in allowed_hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    loopback = [f"{h}:*" for h in LOOPBACK_NAMES] + list(LOOPBACK_NAMES)
    hosts = loopback + [h for h in allowed_hosts if h]
    origins = [f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                     allowed_hosts=hosts, allowed_origins=origins)


def ops_routes(service: TaskService, metrics: Metrics | None) -> list[Route]:
    """``/healthz``, ``/readyz`` and ``/metrics``."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        def check() -> dict[str, str]:
            results: dict[str, str] = {}
            for name, probe in (("broker", service.broker.ping), ("database", service.ledger.ping)):
                try:
                    probe()
                    results[name] = "ok"
                except Exception as exc:
                    results[name] = f"unavailable ({type(exc).__name__})"
            return results

        results = await anyio.to_thread.run_sync(check)
        ok = all(v == "ok" for v in results.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": results},
                            status_code=200 if ok else 503)

    async def metrics_endpoint(_: Request) -> Response:
        if metrics is None:
            return PlainTextResponse("", media_type="text/plain")
        body, content_type = await anyio.to_thread.run_sync(metrics)
        return Response(body, media_type=content_type)

    return [Route("/healthz", healthz, methods=["GET"], include_in_schema=False),
            Route("/readyz", readyz, methods=["GET"], include_in_schema=False),
            Route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)]


def create_http_app(
    mcp: MCPServer,
    service: TaskService,
    *,
    host: str,
    allowed_hosts: list[str],
    metrics: Metrics | None = None,
    sessions: SessionLimits | None = None,
    ops_here: bool = True,
    mounts: dict[str, ASGIApp] | None = None,
) -> ASGIApp:
    """The app serving MCP at /mcp (sessions managed by :class:`FairSessionManager`), with
    /healthz, /readyz and /metrics unless ``ops_here`` is False (they have their own port),
    and each of ``mounts`` (e.g. the console at /ui) behind the same Host check."""
    if ops_here:
        for route in ops_routes(service, metrics):
            mcp.custom_route(route.path, methods=["GET"], include_in_schema=False)(
                route.endpoint)
    app = fair_streamable_app(mcp, sessions or SessionLimits(), host=host,
                              transport_security=transport_security(allowed_hosts))
    for path, mounted in (mounts or {}).items():
        app.router.routes.append(Mount(path, mounted))
    guarded = SingleAuthorizationMiddleware(app)
    return HostCheckMiddleware(guarded, HostPolicy.of(allowed_hosts))


def fair_streamable_app(mcp: MCPServer, limits: SessionLimits, **options: Any) -> Starlette:
    """``mcp``'s streamable-HTTP app at /mcp, its sessions and exchanges managed by
    :class:`FairSessionManager` (``options`` go to ``streamable_http_app``)."""

    def session_manager(*args: object, **kwargs: object) -> FairSessionManager:
        return FairSessionManager(*args, limits=limits, quick_tools=QUICK_TOOLS, **kwargs)

    # The SDK builds its session manager inside streamable_http_app() and offers no parameter
    # to pass another class; swap the name it looks up for the duration of the call.
    original = lowlevel_server.StreamableHTTPSessionManager
    lowlevel_server.StreamableHTTPSessionManager = session_manager  # type: ignore[misc,assignment]
    try:
        app: Starlette = mcp.streamable_http_app(streamable_http_path="/mcp", **options)
    finally:
        lowlevel_server.StreamableHTTPSessionManager = original  # type: ignore[misc]
    return app


def create_ops_app(service: TaskService, *, allowed_hosts: list[str],
                   metrics: Metrics | None = None) -> ASGIApp:
    """/healthz, /readyz and /metrics alone, for ``TASKBROKER_OPS_PORT``."""
    return HostCheckMiddleware(Starlette(routes=ops_routes(service, metrics)),
                               HostPolicy.of(allowed_hosts))
