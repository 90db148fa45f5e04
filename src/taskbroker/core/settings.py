"""Configuration, read from ``TASKBROKER_*`` environment variables (pydantic-settings).

With nothing set, taskbroker runs embedded: Celery's filesystem transport and a SQLite ledger
under ``data_dir``.  ``TASKBROKER_REDIS_URL`` and ``TASKBROKER_DATABASE_URL`` switch to the
distributed mode (Redis broker and rate limits, PostgreSQL ledger).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Every setting taskbroker reads; the README's configuration table mirrors this class."""

    model_config = SettingsConfigDict(env_prefix="TASKBROKER_", extra="ignore")

    data_dir: Path = Field(
        default=Path(".taskbroker"),
        description="Embedded mode: where the broker queue, results and SQLite ledger live.",
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL; when set, Celery broker + results + rate limits."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the ledger and schedule data (PostgreSQL in production); "
        "default sqlite:///<data_dir>/taskbroker.db.",
    )
    auto_migrate: bool = Field(
        default=True,
        description="`serve` and `worker` bring the database schema up to date at start (under "
        "a lock); false when a deploy step runs `taskbroker db upgrade` (the Helm chart's Job).",
    )
    load_plugins: str | None = Field(
        default=None,
        description="Comma list of third-party plugin distributions (or entry-point names) to "
        "load; unset loads all installed, empty loads none.",
    )
    plugin_modules: str = Field(
        default="", description="Comma list of extra importable modules to register as plugins."
    )
    builtin_plugins: bool = Field(
        default=True, description="Load the built-in resilience and metrics plugins."
    )
    default_queue: str = Field(default="taskbroker", description="Queue of task types naming none.")
    worker_concurrency: int | None = Field(
        default=None, ge=1, description="Worker processes (default: number of CPUs)."
    )
    worker_pool: Literal["prefork", "solo", "threads"] = Field(
        default="prefork", description="Celery pool; prefork is needed to terminate a task."
    )
    result_expires: int = Field(
        default=3600, ge=60,
        description="Seconds Celery keeps results of its own tasks; taskbroker's task results "
        "live in the ledger.",
    )
    cancel_grace_seconds: float = Field(
        default=10.0,
        ge=0,
        description="After a cancel, how long a running handler may stop cooperatively before "
        "its process is terminated.",
    )
    shutdown_grace_seconds: float = Field(
        default=10.0, ge=0,
        description="Embedded mode: how long `serve` lets its worker finish running tasks on "
        "shutdown (or the worker waits after its server died) before killing it.",
    )
    heartbeat_interval: float = Field(
        default=5.0, gt=0, description="Seconds between a running task's ledger heartbeats."
    )
    stale_after: float = Field(
        default=60.0, gt=0,
        description="A started task whose heartbeat is older than this lost its worker.",
    )
    lost_message_after: float = Field(
        default=60.0, gt=0,
        description="A queued task this old whose message the broker no longer holds (checked "
        "twice) is published again by the reaper.",
    )
    reaper_interval: float = Field(
        default=10.0, gt=0, description="Seconds between reaper passes (stale tasks, retention)."
    )
    ledger_retention_days: float | None = Field(
        default=30.0, gt=0, description="Finished task records kept this long (None: forever)."
    )
    tombstone_days: float = Field(
        default=7.0, ge=0, description="After purge, an id reads 'expired' this long."
    )
    ledger_retry_seconds: float = Field(
        default=120.0, ge=0,
        description="How long a worker retries a ledger write while the database is away.",
    )
    visibility_timeout: int = Field(
        default=120, ge=5,
        description="Redis: seconds before an unacknowledged message (its worker died) is "
        "delivered again; duplicates are skipped by the ledger.",
    )
    broker_timeout: float = Field(
        default=2.0, gt=0, description="Seconds a publish may take before ConnectionError."
    )
    serve_on_loop: bool = Field(
        default=True,
        description="MCP server with PostgreSQL and Redis: run starts and status reads on the "
        "event loop, their insert, read and publish awaited there (the rest of the call runs "
        "as before; anything else that blocks goes to a worker thread), instead of handing "
        "each call to a worker thread: about a fifth less server CPU per start; up to 8 more "
        "database connections per server process. `false` restores the thread per call.",
    )
    tool_wait_seconds: float = Field(
        default=45.0, ge=0, le=300,
        description="How long a typed task tool call waits for its task before answering with "
        "the task id (keep it under MCP clients' tool-call timeouts, often 60 s).",
    )
    tasks_poll_seconds: float = Field(
        default=2.0, ge=0.1, le=60,
        description="The tasks extension's advised pollIntervalMs for a task type without "
        "measured runs, and its floor (longer types are advised half their median run, and a "
        "working task a quarter of its age, up to 10 s). A lone client's tasks/get costs "
        "~2.5 ms of server CPU: ~1.2 ms per second of waiting at 2 s, less as the advice "
        "backs off.",
    )
    tool_text: Literal["json", "summary"] = Field(
        default="json",
        description="What MCP tool answers carry as text beside their structured content: "
        "`json` repeats it as compact JSON (for clients that read only text), `summary` "
        "describes a task's result instead of repeating it (the result travels once).",
    )
    watch_interval: float = Field(
        default=0.5, gt=0, le=10,
        description="Embedded mode: seconds between the shared reads of the tasks that "
        "clients wait for (one query per interval for all waiters).",
    )
    max_waits_per_user: int = Field(
        default=100, ge=0,
        description="How many waits of one user may be open at once per server: MCP calls "
        "waiting for tasks (the wait tool, typed tools) and console live-update streams; past "
        "it the wait tool answers RateLimitError, a typed tool its task id at once and a "
        "console stream 429. 0: no limit.",
    )
    watch_fallback_seconds: float = Field(
        default=5.0, gt=0, le=300,
        description="Distributed mode: waiting clients are woken by Redis pub/sub "
        "notifications; every waited-for task is also read once per this many seconds, in "
        "case a notification was lost.",
    )
    max_params_bytes: int = Field(
        default=65536, ge=256, description="Largest accepted params payload (JSON bytes)."
    )
    # identity for stdio / CLI callers
    local_user: str = Field(default="local", description="User id of stdio and CLI callers.")
    local_roles: str = Field(
        default="admin", description="Comma list of roles of stdio and CLI callers."
    )
    # HTTP server
    host: str = Field(default="127.0.0.1", description="HTTP bind address of `serve`.")
    port: int = Field(default=8000, ge=0, le=65535, description="HTTP port of `serve`.")
    allowed_hosts: str = Field(
        default="",
        description="Comma list of extra Host names every HTTP endpoint answers (name, "
        "name:port, name:*; '*' turns the check off); loopback names and IP addresses are "
        "always accepted (DNS rebinding protection).",
    )
    public_url: str | None = Field(
        default=None,
        description="External URL of the MCP endpoint (OAuth protected-resource metadata); "
        "default http://<host>:<port>/mcp.",
    )
    http_auth: Literal["required", "none"] = Field(
        default="required",
        description="Bearer tokens on HTTP; 'none' is refused unless `serve` binds a loopback "
        "address (or the opt-in below is set).",
    )
    insecure_unauthenticated_network: bool = Field(
        default=False,
        description="Allow TASKBROKER_HTTP_AUTH=none on a non-loopback bind (every caller is "
        "then the local principal): only behind a proxy that authenticates.",
    )
    ops_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="Serve /healthz, /readyz and /metrics on this port instead of the MCP port "
        "(Prometheus' convention); unset: on the MCP port.",
    )
    ops_host: str = Field(
        default="127.0.0.1", description="Bind address of the ops port."
    )
    sessions_per_user: int = Field(
        default=32, ge=1,
        description="Open MCP sessions one user may hold; opening one more closes that user's "
        "least recently used session.",
    )
    max_sessions: int = Field(
        default=2000, ge=1,
        description="Open MCP sessions in all; at the cap a new session closes the least "
        "recently used session of the user holding the most.",
    )
    session_rate: str = Field(
        default="60/minute",
        description="New MCP sessions one user may open (limits-library syntax); beyond it 429.",
    )
    session_idle_seconds: float = Field(
        default=600.0, gt=0,
        description="An MCP session with no request for this long is closed (the client opens "
        "a new one).",
    )
    http_shutdown_seconds: float = Field(
        default=5.0, ge=0,
        description="On SIGTERM, how long `serve` lets HTTP requests in flight (and open MCP "
        "sessions) finish before closing them.",
    )
    console: bool = Field(
        default=True, description="Serve the operator console at /ui (HTTP transport).")
    console_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs console sessions (default: a random key made once and kept "
        "in the ledger database, shared by every server on it).",
    )
    trace_url_template: str | None = Field(
        default=None,
        description="Link for a task's trace id in the console, e.g. "
        "'https://grafana.example/explore?traceId={trace_id}'.",
    )
    log_payloads: bool = Field(
        default=False,
        description="Log task params and results (debugging only: they may hold personal "
        "data); by default logs carry sizes, keys and ids only.",
    )
    token_file: Path | None = Field(
        default=None,
        description="JSON file of hashed static tokens (user, roles); embedded default "
        "<data_dir>/tokens.json with a generated admin token.",
    )
    jwt_secret: SecretStr | None = Field(default=None, description="HS256 secret for JWTs.")
    jwt_jwks_file: Path | None = Field(default=None, description="JWKS file for RS256 JWTs.")
    jwt_issuer: str | None = Field(default=None, description="Required JWT issuer (iss).")
    jwt_audience: str | None = Field(default=None, description="Required JWT audience (aud).")
    jwt_roles_claim: str = Field(default="roles", description="JWT claim holding the roles.")
    rate_limits: str = Field(
        default="start: 30/minute; status: 600/minute; cancel: 60/minute; list: 120/minute; "
        "list_types: 120/minute; search: 120/minute; inspect: 600/minute; workers: 60/minute",
        description="Per-user limits by operation ('op: N/period; ...', limits-library syntax; "
        "'op: none' disables one).",
    )
    max_active_per_user: int = Field(
        default=50, ge=0, description="Queued+running tasks one user may have (0: no cap)."
    )
    rate_limit_strategy: Literal["moving-window", "sliding-window-counter", "fixed-window"] = (
        Field(default="moving-window", description="Algorithm of the `limits` library.")
    )
    rate_limit_lease_seconds: float = Field(
        default=1.0, ge=0, le=10,
        description="Distributed mode: a server takes a busy user's tokens of a limit of 100 or "
        "more per window from Redis several at a time (as many as they spent in the last "
        "lease, at most 1/50 of the limit) and spends them for up to this long; unspent ones "
        "expire counted, so limits only get stricter. 0: one Redis round trip per call.",
    )
    worker_metrics_port: int = Field(
        default=9808, ge=0, le=65535,
        description="Worker /metrics and /healthz port (0 disables).",
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1",
        description="Bind address of the worker's metrics server (the Helm chart sets "
        "0.0.0.0 so probes and Prometheus reach the pod IP).",
    )
    trace_user: Literal["id", "hash", "none"] = Field(
        default="hash", description="How spans carry the user: id, a salted hash, or not at all."
    )
    schedules: str = Field(
        default="",
        description='Beat overrides as JSON: {"<entry name>": "off" | "<crontab>" | seconds}.',
    )
    beat_user: str = Field(default="beat", description="User id beat starts tasks as.")
    log_level: str = Field(default="INFO", description="Log level of taskbroker's loggers.")
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="json, console, or auto (console on a TTY)."
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Embedded mode: fixed admin bearer token (else generated)."
    )

    @field_validator("redis_url", "database_url", "trace_url_template", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("trace_url_template")
    @classmethod
    def _trace_link(cls, v: str | None) -> str | None:
        if v is not None and not (v.startswith(("https://", "http://")) and "{trace_id}" in v):
            raise ValueError("expected an http(s) URL containing {trace_id}")
        return v

    @property
    def embedded(self) -> bool:
        """True when no Redis URL is configured (filesystem broker, supervised worker)."""
        return self.redis_url is None

    @property
    def ledger_url(self) -> str:
        """The SQLAlchemy URL the ledger and schedule store use."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'taskbroker.db').resolve()}"

    @property
    def roles(self) -> frozenset[str]:
        """Roles of the local (stdio/CLI) principal."""
        return frozenset(r.strip() for r in self.local_roles.split(",") if r.strip())


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
