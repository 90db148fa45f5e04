"""configure_logging: JSON lines with trace ids, stdlib routed through, secrets redacted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

from taskbroker.core.settings import Settings
from taskbroker.observability.logging import add_secret_keys, configure_logging


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Logging configured into a buffer; the root logger and structlog restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(Settings(log_format="json", log_level="INFO"), stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict]:
    """The JSON lines written so far."""
    return [json.loads(x) for x in stream.getvalue().splitlines() if x.strip()]


def test_lines_carry_the_current_span(captured: io.StringIO) -> None:
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("outer") as span:
        logging.getLogger("some.library").info("from stdlib")
        structlog.get_logger("ours").info("from structlog", user="u-1")
    logging.getLogger("some.library").info("outside")
    first, second, third = lines(captured)
    ctx = span.get_span_context()
    for line in (first, second):
        assert line["trace_id"] == format(ctx.trace_id, "032x")
        assert line["span_id"] == format(ctx.span_id, "016x")
    assert first["logger"] == "some.library" and second["user"] == "u-1"
    assert "trace_id" not in third


def test_secrets_never_reach_the_output(captured: io.StringIO) -> None:
    add_secret_keys({"launch_code"})
    structlog.get_logger("ours").info(
        "call", launch_code="0000-1111", api_key="k-123", nested={"db_password": "pw-9"},
        headers={"Authorization": "Bearer abc.def"}, items=["Bearer xyz"], ok="visible")
    logging.getLogger("lib").warning("url redis://:hunter2@h:6379/0 secret=s3cr3t")
    try:
        raise RuntimeError("token=tok-zzz failed")
    except RuntimeError:
        logging.getLogger("lib").exception("boom")
    out = captured.getvalue()
    for secret in ("0000-1111", "k-123", "pw-9", "abc.def", "xyz", "hunter2", "s3cr3t",
                   "tok-zzz"):
        assert secret not in out
    first = lines(captured)[0]
    assert first["launch_code"] == "***" and first["ok"] == "visible"
    assert first["headers"] == {"Authorization": "***"}


_SECRETISH = st.sampled_from(["Bearer ", "basic ", "token=", "SECRET: ", "password=",
                              "api_key=", "Api-Key: ", "redis://u:p@h", "@", "://x:y@", "key",
                              "apikey=", "API", "\u017fecret=", "api_\u212aey=", "pa\u017f",
                              "Basic dXNlcjpwdw==", "bearer t0k", "x@y"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=12), _SECRETISH), max_size=6).map("".join))
def test_quick_check_never_skips_a_redaction(text: str) -> None:
    """The one-search shortcut of _redact_text leaves a text unchanged only when the three
    substitutions would have left it unchanged too."""
    from taskbroker.observability import logging as obs_logging

    full = obs_logging._KEY_VALUE.sub(
        lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}***",
        obs_logging._URL_CREDENTIALS.sub(
            lambda m: f"{m.group(1)}***@",
            obs_logging._BEARER.sub(lambda m: f"{m.group(1)} ***", text)))
    assert obs_logging._redact_text(text) == full


_LINE_KEYS = st.sampled_from(["event", "task_id", "user", "outcome", "note", "api_key",
                              "launch_code", "db_password", "count"])
_LINE_VALUES = st.one_of(
    st.lists(st.one_of(st.text(max_size=8), _SECRETISH), max_size=4).map("".join),
    st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(),
    st.dictionaries(st.sampled_from(["token", "x"]), st.text(max_size=8), max_size=2),
    st.lists(_SECRETISH, max_size=2))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_LINE_KEYS, _LINE_VALUES, max_size=6))
def test_the_flat_line_shortcut_redacts_as_the_full_walk(line: dict) -> None:
    """redact's shortcut (one test over a flat line's texts joined) returns what walking
    every value returns."""
    from taskbroker.observability import logging as obs_logging

    add_secret_keys({"launch_code"})
    full = {k: obs_logging._redact_value(k if k != "event" else None, v)
            for k, v in line.items()}
    assert obs_logging.redact(None, "info", dict(line)) == full


def test_a_key_made_secret_after_lines_with_it_were_written_is_redacted_from_then_on(
        captured: io.StringIO) -> None:
    """A task type's secret params become secret keys when the type is first used; lines
    already written with that key list must not keep the key list's earlier verdict."""
    log = structlog.get_logger("ours")
    log.info("before", pin_code_19="1234", ok="visible")
    add_secret_keys({"pin_code_19"})
    log.info("before", pin_code_19="5678", ok="visible")
    first, second = lines(captured)
    assert first["pin_code_19"] == "1234"
    assert second["pin_code_19"] == "***" and "5678" not in captured.getvalue()


def test_our_lines_take_the_direct_route_and_match_a_stdlib_record(
        captured: io.StringIO) -> None:
    """taskbroker's structlog events skip the stdlib LogRecord route (about half a line's
    cost) yet render with the same fields, levels and redaction as a stdlib record's."""
    from taskbroker.observability import logging as ours

    log = structlog.get_logger("taskbroker.operations")
    log.info("operation", operation="start", task_id="t-1", api_key="k-1")
    logging.getLogger("taskbroker.operations").info("from stdlib")
    log.debug("operation", operation="status")  # below INFO: dropped
    try:
        raise ValueError("password=pw-77 wrong")
    except ValueError:
        log.exception("failed", token="tok-1")
    direct, stdlib_line, failed = lines(captured)
    assert isinstance(log.bind()._logger, ours._LineLogger)  # the direct route
    assert set(stdlib_line) - {"event"} <= set(direct)
    assert (direct["logger"], direct["level"], direct["api_key"]) == (
        "taskbroker.operations", "info", "***")
    assert failed["level"] == "error" and failed["token"] == "***"
    assert "ValueError" in failed["exception"] and "pw-77" not in failed["exception"]


def test_levels_are_read_at_each_event_and_a_new_configuration_is_followed(
        captured: io.StringIO) -> None:
    log = structlog.get_logger("taskbroker.audit")
    log.info("one")  # the logger is cached on first use
    logging.getLogger("taskbroker.audit").setLevel(logging.WARNING)
    try:
        log.info("two")  # dropped by the stdlib level set after caching
        log.warning("three")
    finally:
        logging.getLogger("taskbroker.audit").setLevel(logging.NOTSET)
    assert [x["event"] for x in lines(captured)] == ["one", "three"]
    other = io.StringIO()
    configure_logging(Settings(log_format="console", log_level="INFO"), stream=other)
    log.info("four")  # the cached logger writes and renders as configured now
    assert "four" in other.getvalue() and not other.getvalue().startswith("{")
    assert "four" not in captured.getvalue()
    logging.getLogger().handlers[:] = []  # logging torn down: nothing written, no error
    log.info("five")
    assert "five" not in other.getvalue()
