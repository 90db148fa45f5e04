"""Each security middleware on its own, one :class:`Call` at a time: identity, authorization,
validation and rate limits (in-memory storage, an in-memory ledger for the active-task cap).

The slash test at the end pins the invariant the rate limiter's key quoting exists for: a user
id is exactly one segment of every counter key, so no user id can name another user's (or
another operation's) counter.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import unquote

import pytest
from limits import RateLimitItemPerHour, parse_many
from limits.storage import MemoryStorage

from taskbroker.adapters.memory import MemoryLedger
from taskbroker.core.contract.plugins import load_plugins
from taskbroker.core.contract.registry import Registry
from taskbroker.core.contract.tasktype import TaskType
from taskbroker.core.pipeline.chain import Call
from taskbroker.core.pipeline.errors import (
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
)
from taskbroker.core.pipeline.middleware.authorization import AuthorizationMiddleware
from taskbroker.core.pipeline.middleware.identity import IdentityMiddleware
from taskbroker.core.pipeline.middleware.ratelimit import (
    ACTIVE_CAP_RETRY_AFTER,
    RateLimitMiddleware,
)
from taskbroker.core.pipeline.middleware.validation import ValidationMiddleware
from taskbroker.core.pipeline.principal import Principal
from tests.pipeline.pipeline_plugin import ApprovalParams

ALICE = Principal("alice", frozenset())
ADMIN = Principal("root", frozenset({"admin"}))
TASK_ID = "3f2b8c1e-9d4a-4e57-b0c6-2a1d9e8f7b60"


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The test task types."""
    return load_plugins(modules=["tests.support.sample_plugin", "tests.pipeline.pipeline_plugin"],
                        entry_points=False).registry


def call(operation: str, principal: Principal | None = ALICE, **args: Any) -> Call:
    """A call as the adapter hands it to the chain."""
    return Call(operation, principal, args)


# --- identity --------------------------------------------------------------------------------


@pytest.mark.parametrize("principal", [None, Principal("", frozenset({"admin"}))],
                         ids=["no-principal", "empty-user"])
def test_identity_refuses_a_call_without_an_identity(principal: Principal | None) -> None:
    c = call("status", principal, task_id=TASK_ID)
    with pytest.raises(Unauthenticated) as raised:
        IdentityMiddleware().before(c)
    assert str(raised.value) == "authentication required: no identity for this call"
    assert isinstance(raised.value, PermissionDenied) and raised.value.outcome == "denied"
    assert c.scope_owner == "\x00nobody"  # nothing is visible to it


@pytest.mark.parametrize("principal", [ALICE, ADMIN])
def test_identity_scopes_the_call_to_the_caller(principal: Principal) -> None:
    c = call("list", principal)
    IdentityMiddleware().before(c)
    assert c.scope_owner == principal.user_id  # admins too, until authorization widens it


# --- authorization ---------------------------------------------------------------------------


def test_authorization_refuses_a_call_without_a_principal() -> None:
    with pytest.raises(PermissionDenied, match=r"^permission denied: no identity$"):
        AuthorizationMiddleware().before(call("status", None))


@pytest.mark.parametrize("operation", ["status", "cancel", "list"])
def test_only_admins_see_every_owner(operation: str) -> None:
    mine, everyone = call(operation, ALICE), call(operation, ADMIN)
    AuthorizationMiddleware().before(mine)
    AuthorizationMiddleware().before(everyone)
    assert (mine.scope_owner, everyone.scope_owner) == ("alice", None)


def test_a_start_needs_a_resolved_task_type() -> None:
    with pytest.raises(PermissionDenied, match="task type not resolved"):
        AuthorizationMiddleware().before(call("start"))


def test_a_start_needs_the_required_role() -> None:
    deploy = TaskType(name="deploy", description="d", run=lambda p, c: {},
                      required_role="deployer")
    refused = call("start", ALICE)
    refused.task_type = deploy
    with pytest.raises(PermissionDenied) as raised:
        AuthorizationMiddleware().before(refused)
    assert str(raised.value) == ("permission denied: task type 'deploy' requires the "
                                 "'deployer' role")
    for who in (Principal("dana", frozenset({"deployer"})), ADMIN):  # admins hold every role
        allowed = call("start", who)
        allowed.task_type = deploy
        AuthorizationMiddleware().before(allowed)


@pytest.mark.parametrize("given", [None, "", "alice"])
def test_the_caller_param_is_filled_with_the_caller(registry: Registry,
                                                    given: str | None) -> None:
    c = call("start")
    c.task_type = registry.get("pipe_approval")
    c.params = ApprovalParams(change="deploy", approved_by=given)
    AuthorizationMiddleware().before(c)
    assert c.params == ApprovalParams(change="deploy", approved_by="alice")


@pytest.mark.parametrize("who", [ALICE, ADMIN])
def test_the_caller_param_cannot_name_somebody_else(registry: Registry,
                                                    who: Principal) -> None:
    c = call("start", who)
    c.task_type = registry.get("pipe_approval")
    c.params = ApprovalParams(change="deploy", approved_by="mallory")
    with pytest.raises(PermissionDenied) as raised:
        AuthorizationMiddleware().before(c)
    assert str(raised.value) == (f"permission denied: params.approved_by must be the "
                                 f"authenticated caller ({who.user_id!r}) or omitted")


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", [TASK_ID, "a", "A" * 64, "job_1.2:3-x"])
def test_a_well_formed_task_id_is_accepted(registry: Registry, task_id: str) -> None:
    for operation in ("status", "cancel"):
        c = call(operation, task_id=task_id)
        ValidationMiddleware(registry).before(c)
        assert c.task_id == task_id


@pytest.mark.parametrize(("task_id", "shown"), [
    ("", "''"), ("A" * 65, repr("A" * 65)), ("-starts-with-dash", "'-starts-with-dash'"),
    ("../../etc/passwd", "'../../etc/passwd'"), ("has space", "'has space'"),
    ("tab\tchar", repr("tab\tchar")), (12345, "'int'"), (None, "'NoneType'"),
])
def test_a_malformed_task_id_is_refused(registry: Registry, task_id: Any, shown: str) -> None:
    c = call("status", task_id=task_id)
    with pytest.raises(InvalidRequest) as raised:
        ValidationMiddleware(registry).before(c)
    assert str(raised.value) == (
        "task_id: expected a task id as returned by start_background_task_tool (letters, "
        f"digits, '-', up to 64 characters), got {shown}")
    assert c.task_id is None


@pytest.mark.parametrize("limit", [1, 100, 1000])
def test_a_list_limit_in_bounds_is_accepted(registry: Registry, limit: int) -> None:
    ValidationMiddleware(registry).before(call("list", limit=limit))


@pytest.mark.parametrize("limit", [0, -1, 1001, True, False, "10", 10.0, None])
def test_a_list_limit_out_of_bounds_is_refused(registry: Registry, limit: Any) -> None:
    with pytest.raises(InvalidRequest) as raised:
        ValidationMiddleware(registry).before(call("list", limit=limit))
    assert str(raised.value) == f"limit: expected an integer 1..1000, got {limit!r}"


def test_a_list_filter_resolves_its_task_type(registry: Registry) -> None:
    c = call("list", task_type="test_count")
    ValidationMiddleware(registry).before(c)
    assert c.task_type is registry.get("test_count")
    with pytest.raises(InvalidRequest, match="unknown task type 'nope'"):
        ValidationMiddleware(registry).before(call("list", task_type="nope"))


def start(**args: Any) -> Call:
    """A start of test_sleep unless ``args`` say otherwise."""
    return call("start", **{"task_type": "test_sleep", "params": {}, **args})


@pytest.mark.parametrize("priority", [None, 0, 9])
def test_a_priority_in_bounds_is_accepted(registry: Registry, priority: int | None) -> None:
    ValidationMiddleware(registry).before(start(priority=priority))


@pytest.mark.parametrize("priority", [-1, 10, True, False, "5", 5.0])
def test_a_priority_out_of_bounds_is_refused(registry: Registry, priority: Any) -> None:
    with pytest.raises(InvalidRequest) as raised:
        ValidationMiddleware(registry).before(start(priority=priority))
    assert str(raised.value) == f"priority: expected an integer 0..9, got {priority!r}"


def test_params_up_to_the_size_limit_are_accepted_and_beyond_refused(
        registry: Registry) -> None:
    # json.dumps({"seconds": 1, "marker": ""}) is 28 characters; each marker letter adds one
    assert len(json.dumps({"seconds": 1, "marker": ""})) == 28
    validation = ValidationMiddleware(registry, max_params_bytes=100)
    at_limit = start(params={"seconds": 1, "marker": "x" * 72})
    validation.before(at_limit)
    assert at_limit.params is not None and at_limit.params.model_dump()["marker"] == "x" * 72
    with pytest.raises(InvalidRequest) as raised:
        validation.before(start(params={"seconds": 1, "marker": "x" * 73}))
    assert str(raised.value) == "params: 101 bytes is over the limit of 100 bytes"


@pytest.mark.parametrize(("params", "kind"), [([1, 2], "list"), ("n=3", "str"), (7, "int")])
def test_params_must_be_a_dict(registry: Registry, params: Any, kind: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        ValidationMiddleware(registry).before(start(params=params))
    assert str(raised.value) == f"params: must be an object (a JSON dict), got {kind}"


def test_params_that_are_not_json_are_refused(registry: Registry) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(InvalidRequest, match=r"^params: not JSON-serialisable \("):
        ValidationMiddleware(registry).before(start(params=loop))


def test_invalid_params_name_the_field_and_what_is_accepted(registry: Registry) -> None:
    with pytest.raises(InvalidRequest) as raised:
        ValidationMiddleware(registry).before(start(task_type="test_count",
                                                    params={"n": 0, "colour": "red"}))
    assert str(raised.value) == (
        "invalid params for test_count: params.n: Input should be greater than or equal to 1; "
        "params.colour: unknown parameter. Accepted: n (integer >=1 <=1000, default 5), "
        "step_ms (integer >=0 <=10000, default 20)")


@pytest.mark.parametrize(("task_type", "problem"), [
    ("nope", "unknown task type 'nope'"), (None, "required"), ("", "required"),
    (3, "expected a string, got int"),
])
def test_an_unknown_task_type_lists_the_valid_ones(registry: Registry, task_type: Any,
                                                   problem: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        ValidationMiddleware(registry).before(start(task_type=task_type))
    assert str(raised.value) == (f"task_type: {problem}; valid task types: "
                                 + ", ".join(registry.names()))
    assert "test_count, test_echo, test_fail" in str(raised.value)


@pytest.mark.parametrize("key", ["k", "k" * 200])
def test_an_idempotency_key_of_1_to_200_characters_is_accepted(registry: Registry,
                                                               key: str) -> None:
    ValidationMiddleware(registry).before(start(idempotency_key=key))


@pytest.mark.parametrize("key", ["", "k" * 201, 42, ["k"]])
def test_other_idempotency_keys_are_refused(registry: Registry, key: Any) -> None:
    with pytest.raises(InvalidRequest) as raised:
        ValidationMiddleware(registry).before(start(idempotency_key=key))
    assert str(raised.value) == "idempotency_key: expected a string of 1..200 characters"


# --- rate limits -----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window-counter", "fixed-window"])
def test_exactly_n_calls_are_admitted_then_rate_limited(strategy: str) -> None:
    limiter = RateLimitMiddleware({"start": (RateLimitItemPerHour(3),)},
                                  storage=MemoryStorage(), strategy=strategy)
    for _ in range(3):
        limiter.before(call("start"))
    for _ in range(2):  # refused calls do not reset anything
        with pytest.raises(RateLimited) as raised:
            limiter.before(call("start"))
        assert str(raised.value) == "rate limit exceeded for start: 3 per 1 hour"
        assert raised.value.limit == "3 per 1 hour"
        assert 0 < raised.value.retry_after <= 3600
        assert raised.value.outcome == "rate_limited"
    limiter.before(call("status"))  # no limit configured for status
    limiter.before(call("start", Principal("bob", frozenset())))  # bob's own budget


def test_the_active_task_cap_counts_the_ledger() -> None:
    ledger = MemoryLedger()
    ids = []
    for _ in range(2):
        ids.append(str(uuid.uuid4()))
        ledger.create(task_id=ids[-1], task_type="t", task_name="tb.t", owner="alice",
                      params={})
    limiter = RateLimitMiddleware({}, ledger=ledger, max_active=2)
    with pytest.raises(RateLimited) as raised:
        limiter.before(call("start"))
    assert (raised.value.limit, raised.value.retry_after) == ("max_active_per_user=2",
                                                             ACTIVE_CAP_RETRY_AFTER)
    assert str(raised.value).startswith("rate limit exceeded for start: max_active_per_user=2 "
                                        "(you have 2 queued or running tasks;")
    limiter.before(call("status"))  # only starts are capped
    bobs = call("start", Principal("bob", frozenset()))
    limiter.before(bobs)
    limiter.after(bobs)
    ledger.cancel(ids[0])  # a terminal task frees a slot
    admitted = call("start")
    limiter.before(admitted)
    limiter.after(admitted)  # releases alice's start lock


class KeyRecorder(MemoryStorage):
    """In-memory rate-limit storage that remembers every counter key it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        self.keys.append(key)
        return super().acquire_entry(key, limit, expiry, amount)


def test_a_slash_in_a_user_id_cannot_reach_another_users_key() -> None:
    users = ["a", "a/start", "a/status/1/1/hour", "a%2Fstart"]
    operations = ("start", "status")
    storage = KeyRecorder()
    limiter = RateLimitMiddleware({op: tuple(parse_many("1/hour")) for op in operations},
                                  storage=storage)
    for user in users:
        for op in operations:
            limiter.before(call(op, Principal(user, frozenset())))  # each its own first call
    # every key is LIMITER/<operation>/<user>/1/1/hour with the user in exactly one segment,
    # so it names one (operation, user) and nobody else's counter
    named = set()
    for key in storage.keys:
        parts = key.split("/")
        assert len(parts) == 6, f"the user id spans several segments of {key!r}"
        assert (parts[0], parts[3:]) == ("LIMITER", ["1", "1", "hour"])
        named.add((parts[1], unquote(parts[2])))
    assert named == {(op, user) for user in users for op in operations}
    assert len(storage.keys) == len(users) * len(operations)
    for user in users:  # and each budget was spent by its own user alone
        for op in operations:
            with pytest.raises(RateLimited):
                limiter.before(call(op, Principal(user, frozenset())))
