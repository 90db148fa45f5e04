"""structlog configuration: JSON lines (console on a TTY), stdlib and Celery routed through it.

Every line carries, when known: ``trace_id``/``span_id`` (the current OpenTelemetry span),
``task_id``/``task_type`` (the Celery task running in this process, or bound by the
observability middleware) and ``user``.  A redaction processor runs last, after exception
formatting, so tokens, secrets, passwords, Authorization headers, credentials in URLs and
parameters a task type marks secret never reach the output.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import IO, Any

import structlog
from opentelemetry import trace

from taskbroker.core.settings import Settings

__all__ = ["add_otel_ids", "add_secret_keys", "add_task_context", "configure_logging",
           "redact"]

_configured = False

REDACTED = "***"
#: key names (any case, any position in the key) whose values are never logged
_SECRET_KEY = re.compile(r"token|secret|passw|authorization|api[_-]?key|cookie|credential",
                         re.I)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", re.I)
_KEY_VALUE = re.compile(r"(?i)\b([\w-]*(?:token|secret|password|api[_-]?key)[\w-]*)"
                        r"(\s*[=:]\s*)(['\"]?)[^\s'\",;&]+")
#: a text none of the three patterns above can match holds none of these words and no API
#: key name (one test instead of three substitutions for the common, clean line)
_SECRET_WORDS = ("@", "token", "secret", "password", "bearer", "basic")
_API_KEY = re.compile(r"api[_-]?key")
#: the same test as one case-insensitive search, for text that is not ASCII (Unicode case
#: folding: the patterns' own rules); ASCII text is lowered and tested word by word instead,
#: a tenth of the search's cost
_MAYBE_SECRET = re.compile("(?i)" + "|".join(map(re.escape, _SECRET_WORDS))
                           + "|" + _API_KEY.pattern)

_secret_keys: set[str] = set()
_secret_lock = threading.Lock()
#: whether a line's keys (in order) hold a secret one, for the key lists seen (bounded: lines
#: come from a few call sites); emptied when a key becomes secret, and a verdict reached
#: meanwhile (``_secret_generation`` moved) is not kept
_secret_key_lists: dict[tuple[str, ...], bool] = {}
_secret_generation = 0


def add_secret_keys(names: Iterable[str]) -> None:
    """Also redact values under these keys (``TaskType.secret_params``)."""
    global _secret_generation
    names = set(names)
    if names - _secret_keys:
        with _secret_lock:
            _secret_keys.update(names)
            # key lists judged before may hold one of these now
            _secret_generation += 1
            _secret_key_lists.clear()


def _maybe_secret(text: str) -> bool:
    """Whether ``text`` may hold something a pattern redacts (:data:`_MAYBE_SECRET`)."""
    if not text.isascii():  # Unicode case folding: the regular expression's own rules
        return _MAYBE_SECRET.search(text) is not None
    lowered = text.lower()
    for word in _SECRET_WORDS:
        if word in lowered:
            return True
    return "api" in lowered and _API_KEY.search(lowered) is not None


def _redact_text(text: str) -> str:
    if not _maybe_secret(text):
        return text
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    return _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}{REDACTED}", text)


#: whether a key name matches _SECRET_KEY, for the key names seen (bounded: keys are mostly
#: the code's own field names)
_secret_key_names: dict[str, bool] = {}


def _is_secret_key(key: str) -> bool:
    known = _secret_key_names.get(key)
    if known is None:
        known = bool(_SECRET_KEY.search(key))
        if len(_secret_key_names) < 4096:
            _secret_key_names[key] = known
    return known or key in _secret_keys


def _has_secret_key(keys: tuple[str, ...]) -> bool:
    known = _secret_key_lists.get(keys)
    if known is None:
        generation = _secret_generation
        known = any(_is_secret_key(k) for k in keys if k != "event")
        with _secret_lock:
            if generation == _secret_generation and len(_secret_key_lists) < 4096:
                _secret_key_lists[keys] = known
    return known


def _redact_value(key: str | None, value: Any, depth: int = 0) -> Any:
    if key is not None and _is_secret_key(key):
        return REDACTED
    if depth > 6:
        return value
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(None, v, depth + 1) for v in value]
    return value


def redact(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: replace secret values (by key name and by pattern) with ***."""
    # the common line: flat, no secret key, and its texts together hold no candidate (no
    # pattern spans the newline that joins them): nothing to replace, one test for all
    if not _has_secret_key(tuple(event_dict)):
        texts = []
        for value in event_dict.values():
            if type(value) is str:
                texts.append(value)
            elif value is not None and not isinstance(value, int | float):
                break
        else:
            if not _maybe_secret("\n".join(texts)):
                return event_dict
    return {k: _redact_value(k if k != "event" else None, v) for k, v in event_dict.items()}


def add_otel_ids(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: trace_id and span_id of the current span, when there is one."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


def add_task_context(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: task_id and task_type of the Celery task running in this thread."""
    if "task_id" in event_dict and "task_type" in event_dict:
        return event_dict
    from celery import current_task

    task = current_task
    if task is None or not getattr(task, "request", None) or not task.request.id:
        return event_dict
    event_dict.setdefault("task_id", task.request.id)
    name = getattr(task, "name", "") or ""
    event_dict.setdefault("task_type", name.rsplit(".", 1)[-1])
    return event_dict


#: the handler configure_logging installed: stdlib records reach it through the root logger,
#: taskbroker's own structlog events through :class:`_LineLogger`
_handler: logging.StreamHandler[Any] | None = None
#: the last steps of a line (exception text, redaction, rendering), as configured last: read at
#: each event, so a logger cached under an earlier configuration renders as the current one
_tail: list[Any] = []


def _render(logger: Any, method: str, event_dict: Any) -> Any:
    for step in _tail:
        event_dict = step(logger, method, event_dict)
    return event_dict


class _LineLogger:
    """The end of structlog's pipeline for taskbroker's own events (operations, audit, task
    lines): the rendered line goes straight to the stream of the handler configure_logging
    installed, under that handler's lock, so it never interleaves with a stdlib record's
    line.  The stdlib route made two LogRecords per line and looked up the caller's frame:
    about half of a line's cost, and a start writes two lines.  Levels are still the stdlib
    logger's of the same name (``filter_by_level`` asks this object)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._std = logging.getLogger(name)

    @property
    def disabled(self) -> bool:
        """Whether the stdlib logger of this name is disabled."""
        return self._std.disabled

    def getEffectiveLevel(self) -> int:
        """The stdlib logger's effective level."""
        return self._std.getEffectiveLevel()

    def isEnabledFor(self, level: int) -> bool:
        """Whether the stdlib logger would log ``level``."""
        return self._std.isEnabledFor(level)

    def write(self, line: str) -> None:
        """Write one rendered line (never raises, as the logging module does not)."""
        handler = _handler
        if handler is None or handler not in logging.root.handlers:  # logging was reset
            return
        handler.acquire()
        try:
            handler.stream.write(line + handler.terminator)
            handler.flush()
        except Exception:  # a closed or broken stream
            pass
        finally:
            handler.release()

    debug = info = warning = warn = error = exception = critical = fatal = msg = write


def _line_logger(*args: Any) -> _LineLogger:
    return _LineLogger(str(args[0]) if args else "taskbroker")


def configure_logging(settings: Settings, *, stream: IO[str] | None = None) -> None:
    """Send every log record (ours, stdlib, Celery) through one structlog pipeline."""
    global _configured, _handler, _tail
    stream = stream or sys.stderr
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_otel_ids,
        add_task_context,
    ]
    renderer: Any = (structlog.dev.ConsoleRenderer() if fmt == "console"
                     else structlog.processors.JSONRenderer())
    handler = logging.StreamHandler(stream)
    structlog.configure(
        # filter_by_level first: a disabled level costs no processing (status polls log at
        # debug, and can be many); then the same steps as a stdlib record's, written by
        # _LineLogger to the handler's stream
        processors=[structlog.stdlib.filter_by_level, *shared, _render],
        logger_factory=_line_logger,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, redact, renderer],
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_taskbroker", False):
            root.removeHandler(old)
    handler._taskbroker = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    _handler, _tail = handler, [structlog.processors.format_exc_info, redact, renderer]
    root.setLevel(settings.log_level.upper())
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _configured = True


def route_structlog_to_stdlib() -> None:
    """When the host application has not configured structlog, send our events to stdlib.

    structlog's own default prints every event (debug included) to stdout; a library must
    not do that.  This routes them to the ``logging`` module instead, where the
    application's handlers and levels decide (and a disabled level costs nothing).
    ``configure_logging`` replaces this with the full pipeline.
    """
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, structlog.contextvars.merge_contextvars,
                    structlog.stdlib.render_to_log_kwargs],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

