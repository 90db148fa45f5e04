"""The worker's own HTTP server: ``/metrics`` (every pool process's files summed, plus
``taskbroker_worker_up``) and ``/healthz``, in the worker's main process, for the Host
headers :class:`~taskbroker.core.hosts.HostPolicy` accepts (DNS-rebinding defence)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from taskbroker.core.hosts import HostPolicy
from taskbroker.observability import metrics

__all__ = ["WorkerMetricsServer"]

log = logging.getLogger("taskbroker.observability")


class _UpCollector(Collector):
    """``taskbroker_worker_up``: 1 while this worker consumes tasks."""

    def __init__(self, is_up: Callable[[], bool]) -> None:
        self._is_up = is_up

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("taskbroker_worker_up",
                                "1 while this worker is ready and consuming tasks.",
                                value=1 if self._is_up() else 0)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


class WorkerMetricsServer:
    """Serves a worker's metrics and health while ``is_ready()`` says whether it consumes."""

    def __init__(self, is_ready: Callable[[], bool],
                 hosts: HostPolicy | None = None) -> None:
        self.is_ready = is_ready
        self.hosts = hosts or HostPolicy.of([])
        self.server: WSGIServer | None = None

    def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` in a daemon thread (a busy port is logged, not fatal)."""
        if self.server is not None:
            return
        try:
            self.server = make_server(host, port, self.wsgi, server_class=_ThreadingWSGIServer,
                                      handler_class=_QuietHandler)
        except OSError as exc:
            log.warning("worker metrics: cannot listen on %s:%s (%s)", host, port, exc)
            return
        threading.Thread(target=self.server.serve_forever, name="taskbroker-metrics",
                         daemon=True).start()
        log.info("worker metrics on http://%s:%s/metrics", host, port)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def forget_after_fork(self) -> None:
        """In a forked child: close the inherited listening socket without serving."""
        if self.server is not None:
            self.server.socket.close()
            self.server = None

    def render(self) -> bytes:
        """This worker's metrics: every process's files summed, plus worker_up."""
        registry = CollectorRegistry()
        if metrics.multiprocess_dir() is not None:
            MultiProcessCollector(registry)
        else:
            registry = metrics.worker_metrics().registry
        registry.register(_UpCollector(self.is_ready))
        return generate_latest(registry)

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]
             ) -> Iterable[bytes]:
        """The WSGI app: ``/metrics`` and ``/healthz`` (for accepted Host headers only)."""
        if not self.hosts.accepts(environ.get("HTTP_HOST")):
            start_response("421 Misdirected Request", [("Content-Type", "text/plain")])
            return [b"this Host is not served here (set TASKBROKER_ALLOWED_HOSTS)\n"]
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            try:
                body = self.render()
            except Exception as exc:
                log.warning("worker metrics failed: %r", exc)
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
                return [b"metrics unavailable\n"]
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [body]
        if path == "/healthz":
            ready = self.is_ready()
            status = "200 OK" if ready else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [json.dumps({"status": "ok" if ready else "starting"}).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
