"""The HTTP face of the server: MCP over streamable HTTP at /mcp, plus health and metrics.

``/healthz`` answers while the process lives (liveness); ``/readyz`` checks the broker and the
ledger database (readiness); ``/metrics`` is Prometheus.  None of them needs a token.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from taskbroker.core.pipeline.service import TaskService

__all__ = ["create_http_app", "transport_security"]

LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]


def transport_security(allowed_hosts: list[str]) -> TransportSecuritySettings:
    """DNS-rebinding protection accepting loopback names plus ``allowed_hosts``."""
    hosts = LOOPBACK_HOSTS + [h for h in allowed_hosts if h]
    origins = [f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts]
    if "*" in allowed_hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                     allowed_hosts=hosts, allowed_origins=origins)


def create_http_app(
    mcp: MCPServer,
    service: TaskService,
    *,
    host: str,
    allowed_hosts: list[str],
    metrics: Callable[[], tuple[bytes, str]] | None = None,
) -> Starlette:
    """The Starlette app serving MCP at /mcp with /healthz, /readyz and /metrics."""

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

    mcp.custom_route("/healthz", methods=["GET"], include_in_schema=False)(healthz)
    mcp.custom_route("/readyz", methods=["GET"], include_in_schema=False)(readyz)
    mcp.custom_route("/metrics", methods=["GET"], include_in_schema=False)(metrics_endpoint)
    return mcp.streamable_http_app(
        streamable_http_path="/mcp",
        host=host,
        transport_security=transport_security(allowed_hosts),
    )
