"""Running the MCP server: authentication from settings, stdio or streamable HTTP."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import anyio
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings

from taskbroker.app import App, local_principal
from taskbroker.console.app import Console, ConsoleOptions, create_console_app
from taskbroker.core.loop_bridge import close_loop_locals
from taskbroker.core.settings import Settings
from taskbroker.core.waiting import TaskWatcher, WaitSlots
from taskbroker.mcp.server import ServerOptions, create_server
from taskbroker.mcp.stdio import serve_stdio
from taskbroker.mcp.tokens import JWTVerifier, StaticTokenVerifier, add_token, new_token

__all__ = ["AnyOfVerifier", "build_verifier", "check_auth_off", "ensure_local_admin_token",
           "serve_mcp"]

log = logging.getLogger("taskbroker.mcp")


class AnyOfVerifier:
    """Accepts a token when any of its verifiers does (static file and JWT side by side)."""

    def __init__(self, verifiers: list[TokenVerifier]) -> None:
        self.verifiers = verifiers

    async def verify_token(self, token: str) -> AccessToken | None:
        """The first verifier's principal for ``token``, or None."""
        for verifier in self.verifiers:
            found = await verifier.verify_token(token)
            if found is not None:
                return found
        return None


def ensure_local_admin_token(settings: Settings) -> tuple[Path, str]:
    """Embedded mode: the token file under the data dir holding a local admin token.

    The plain token is kept (mode 0600) in ``<data_dir>/admin.token`` so ``make run`` can
    show it at every start; only its hash is in the token file.
    """
    token_file = settings.data_dir / "tokens.json"
    plain_file = settings.data_dir / "admin.token"
    wanted = settings.admin_token.get_secret_value() if settings.admin_token else None
    if plain_file.exists() and token_file.exists() and wanted in (None, plain_file.read_text()):
        return token_file, plain_file.read_text().strip()
    token = wanted or new_token()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    add_token(token_file, settings.local_user, sorted(settings.roles | {"admin"}), token)
    plain_file.write_text(token)
    plain_file.chmod(0o600)
    return token_file, token


def _is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_auth_off(settings: Settings, host: str) -> None:
    """With ``TASKBROKER_HTTP_AUTH=none``: refuse a non-loopback bind (unless the loud opt-in
    is set) and warn at every start."""
    if settings.http_auth != "none":
        return
    if not _is_loopback(host) and not settings.insecure_unauthenticated_network:
        raise SystemExit(
            f"taskbroker: refusing to serve without authentication on {host!r}: "
            "TASKBROKER_HTTP_AUTH=none makes every caller the local principal "
            f"({settings.local_user!r}, roles {','.join(sorted(settings.roles)) or 'none'}). "
            "Bind a loopback address (TASKBROKER_HOST=127.0.0.1), configure tokens "
            "(TASKBROKER_TOKEN_FILE or TASKBROKER_JWT_*), or, behind a proxy that "
            "authenticates, set TASKBROKER_INSECURE_UNAUTHENTICATED_NETWORK=true")
    log.warning("HTTP authentication is OFF (TASKBROKER_HTTP_AUTH=none): every caller on %s "
                "is %r with roles %s", host, settings.local_user,
                ",".join(sorted(settings.roles)) or "none")


def build_verifier(settings: Settings) -> TokenVerifier | None:
    """The token verifier the settings ask for (None when HTTP auth is off)."""
    if settings.http_auth == "none":
        return None
    verifiers: list[TokenVerifier] = []
    token_file = settings.token_file
    if token_file is None and settings.embedded and not (
        settings.jwt_secret or settings.jwt_jwks_file
    ):
        token_file, token = ensure_local_admin_token(settings)
        print(f"taskbroker: local admin token: {token}\n"
              f"  (use it as 'Authorization: Bearer <token>'; stored hashed in {token_file})",
              file=sys.stderr, flush=True)
    if token_file is not None:
        verifiers.append(StaticTokenVerifier(token_file))
    if settings.jwt_secret or settings.jwt_jwks_file:
        verifiers.append(JWTVerifier(
            secret=settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
            jwks_file=settings.jwt_jwks_file, issuer=settings.jwt_issuer,
            audience=settings.jwt_audience, roles_claim=settings.jwt_roles_claim,
        ))
    if not verifiers:
        raise SystemExit(
            "taskbroker: HTTP needs bearer-token authentication: set TASKBROKER_TOKEN_FILE or "
            "TASKBROKER_JWT_SECRET / TASKBROKER_JWT_JWKS_FILE (or TASKBROKER_HTTP_AUTH=none "
            "on a loopback address)"
        )
    return verifiers[0] if len(verifiers) == 1 else AnyOfVerifier(verifiers)


def task_watcher(app: App) -> TaskWatcher:
    """The process's watcher of waited-for tasks: woken by Redis pub/sub in distributed mode,
    reading every ``TASKBROKER_WATCH_INTERVAL`` in embedded mode."""
    settings = app.settings
    changes = None
    if settings.redis_url:
        from taskbroker.adapters.redis.changes import ChangeFeed

        changes = ChangeFeed(settings.redis_url)
    watcher = TaskWatcher(app.service.ledger, interval=settings.watch_interval,
                          changes=changes, fallback_interval=settings.watch_fallback_seconds)
    from taskbroker.observability.metrics import register_waiting

    register_waiting(lambda: watcher.watching, lambda: watcher.reads)
    return watcher


def build_console(app: App, verifier: TokenVerifier | None, watcher: TaskWatcher,
                  slots: WaitSlots | None = None) -> tuple[Any, Console]:
    """The operator console over ``app``'s service (mounted at /ui by :func:`serve_mcp`)."""
    from taskbroker.beat import beat_entries

    settings = app.settings
    secret = (settings.console_secret.get_secret_value().encode() if settings.console_secret
              else app.ledger.shared_secret("console-sessions"))
    return create_console_app(app.service, verifier=verifier, watcher=watcher,
                              options=ConsoleOptions(
                                  secret=secret, trace_url=settings.trace_url_template,
                                  heartbeat_seconds=settings.heartbeat_interval,
                                  beat=lambda: beat_entries(app.plugins, settings),
                                  beat_user=settings.beat_user,
                                  local_principal=local_principal(settings),
                                  secure_cookies=(settings.public_url or "").startswith(
                                      "https://"),
                                  slots=slots or WaitSlots(settings.max_waits_per_user)))


class _Server:
    """uvicorn's server with our signal handling (see :func:`serve_mcp`) and a quiet loop."""

    #: seconds between the server's housekeeping ticks (uvicorn ticks every 0.1 s: ten
    #: event-loop wake-ups a second, ~2 ms/s of CPU on an idle server; its Date header only
    #: changes once a second anyway, and a stop request wakes the loop at once)
    TICK_SECONDS = 1.0

    @staticmethod
    def make(config: Any) -> Any:
        import asyncio

        import uvicorn

        class Server(uvicorn.Server):
            _wake: asyncio.Event | None = None
            _loop: asyncio.AbstractEventLoop | None = None

            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                # serve_mcp owns SIGTERM/SIGINT; uvicorn's own capture would re-raise the
                # signal after shutting down, killing the process before its cleanup runs
                yield

            async def main_loop(self) -> None:
                self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
                counter = 0
                while not await self.on_tick(counter):
                    counter = (counter + 10) % 864_000  # each tick refreshes the Date header
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), _Server.TICK_SECONDS)
                    self._wake.clear()

            def request_exit(self, *, force: bool = False) -> None:
                """Stop accepting (``force``: also cut requests in flight), at once; safe
                from a signal handler or another thread."""
                self.force_exit = self.force_exit or force
                self.should_exit = True
                if self._loop is not None and self._wake is not None:
                    with contextlib.suppress(RuntimeError):  # the loop has closed already
                        self._loop.call_soon_threadsafe(self._wake.set)

        return Server(config)


def _on_stop_signals(handler: Callable[[int], None]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: handler(signum))


def server_options(settings: Settings) -> ServerOptions:
    """The MCP layer's waiting and advertising choices from ``settings``."""
    retention = settings.ledger_retention_days
    return ServerOptions(wait_seconds=settings.tool_wait_seconds,
                         task_ttl_ms=None if retention is None else int(retention * 86_400_000),
                         poll_interval_ms=int(settings.tasks_poll_seconds * 1000),
                         watch_interval=settings.watch_interval,
                         text=settings.tool_text,
                         max_waits_per_user=settings.max_waits_per_user,
                         serve_on_loop=settings.serve_on_loop)


def serve_mcp(app: App, transport: Literal["stdio", "http"], *, host: str, port: int,
              cleanup: Callable[[], None] = lambda: None) -> None:
    """Serve the MCP tools over ``transport`` until SIGTERM/SIGINT (or, over stdio, until the
    client closes the stream); ``cleanup`` runs before this returns or the process exits.

    HTTP: the first signal stops accepting and lets requests in flight finish; a second one
    cuts them; then ``cleanup`` runs and this returns.  stdio (served from the event loop
    when stdin and stdout are pipes, :mod:`taskbroker.mcp.stdio`; else the SDK's reader
    thread, blocked on stdin, cannot be interrupted): a signal runs ``cleanup`` and exits the
    process with status 0 at once.
    """
    settings = app.settings
    principal = local_principal(settings)
    if transport == "stdio":
        def stop_stdio(signum: int) -> None:
            log.info("signal %s: stopping", signum)
            try:
                cleanup()
            finally:
                logging.shutdown()
                os._exit(0)

        _on_stop_signals(stop_stdio)
        mcp = create_server(app.service, local_principal=principal,
                            options=server_options(settings), watcher=task_watcher(app))
        async def serve() -> None:
            try:
                await serve_stdio(mcp._lowlevel_server)
            finally:
                await close_loop_locals()

        try:
            anyio.run(serve)
        finally:
            cleanup()
        return
    import uvicorn

    from taskbroker.mcp.http import create_http_app, create_ops_app
    from taskbroker.mcp.sessions import SessionLimits

    check_auth_off(settings, host)
    verifier = build_verifier(settings)
    auth = None
    if verifier is not None:
        public = settings.public_url or f"http://{host}:{port}/mcp"
        # the metadata's authorization server must be an http(s) URL; a JWT issuer often is,
        # but "iss" may be any string (then point at ourselves rather than crash at startup)
        issuer = settings.jwt_issuer
        if not (issuer and issuer.startswith(("http://", "https://"))):
            issuer = public
        auth = AuthSettings(issuer_url=issuer, resource_server_url=public,
                            required_scopes=None, validate_token_resource=False)
    options = server_options(settings)
    watcher = task_watcher(app)
    # one cap of open waits per user for MCP calls and console streams alike
    slots = WaitSlots(options.max_waits_per_user)
    mcp = create_server(app.service, local_principal=principal, token_verifier=verifier,
                        auth=auth, options=options, watcher=watcher, slots=slots)
    mounts: dict[str, Any] = {}
    if settings.console:
        console_app, console = build_console(app, verifier, watcher, slots)
        mounts["/ui"] = console_app
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        if settings.embedded and verifier is not None:
            code = console.codes.issue(principal)
            print(f"taskbroker: console: http://{shown}:{port}/ui/login/once?code={code}\n"
                  "  (this link signs you in once, within 15 minutes; later, sign in at "
                  f"http://{shown}:{port}/ui with the token)", file=sys.stderr, flush=True)
        else:
            log.info("serving the console on http://%s:%s/ui", shown, port)
    allowed = [h.strip() for h in settings.allowed_hosts.split(",") if h.strip()]
    sessions = SessionLimits(per_user=settings.sessions_per_user, total=settings.max_sessions,
                             rate=settings.session_rate,
                             idle_seconds=settings.session_idle_seconds)
    ops_port = settings.ops_port
    http_app = create_http_app(mcp, app.service, host=host, allowed_hosts=allowed,
                               metrics=app.metrics, sessions=sessions,
                               ops_here=ops_port is None, mounts=mounts)
    grace = max(1, round(settings.http_shutdown_seconds))
    servers = [_Server.make(uvicorn.Config(http_app, host=host, port=port, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=grace))]
    if ops_port is not None:
        ops_app = create_ops_app(app.service, allowed_hosts=allowed, metrics=app.metrics)
        servers.append(_Server.make(uvicorn.Config(
            ops_app, host=settings.ops_host, port=ops_port, log_level="warning",
            access_log=False, lifespan="off", timeout_graceful_shutdown=1)))

    def stop_http(signum: int) -> None:
        for server in servers:
            server.request_exit(force=server.should_exit)
        log.info("signal %s: stopping the HTTP server", signum)

    async def serve_all() -> None:
        try:
            async with anyio.create_task_group() as group:
                for server in servers:
                    group.start_soon(server.serve)
        finally:
            await close_loop_locals()

    _on_stop_signals(stop_http)
    log.info("serving MCP on http://%s:%s/mcp", host, port)
    if ops_port is not None:
        log.info("serving /healthz, /readyz and /metrics on http://%s:%s", settings.ops_host,
                 ops_port)
    try:
        anyio.run(serve_all)
    finally:
        cleanup()
