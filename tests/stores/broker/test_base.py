"""The broker's pure pieces: message validation, names, backoff, topic matching."""

from __future__ import annotations

import pytest

from shipyard.stores.broker.base import (
    TaskMessage,
    backoff_s,
    check_delay,
    check_prefetch,
    check_queue,
    topic_matches,
)

FIELDS: dict[str, object] = {"task_id": "t", "tenant_id": "acme", "agent": "a", "body": b"{}"}


def test_a_message_has_defaults_and_copies_its_headers() -> None:
    headers = {"traceparent": "00-ab-cd-01"}
    message = TaskMessage(**FIELDS, headers=headers)  # type: ignore[arg-type]
    headers["tracestate"] = "later"
    assert (message.priority, message.attempt) == (0, 1)
    assert message.headers == {"traceparent": "00-ab-cd-01"}


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"priority": 10}, ValueError),
        ({"priority": -1}, ValueError),
        ({"attempt": 0}, ValueError),
        ({"tenant_id": ""}, ValueError),
        ({"headers": {"x-shipyard-tenant": "other"}}, ValueError),
        ({"headers": {"traceparent": 1}}, TypeError),
        ({"body": "text"}, TypeError),
    ],
)
def test_invalid_messages_are_refused(bad: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        TaskMessage(**(FIELDS | bad))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a/b", "a b", "x" * 201, "é"])
def test_invalid_queue_names(name: str) -> None:
    with pytest.raises(ValueError, match="queue"):
        check_queue(name)


def test_valid_queue_names() -> None:
    assert check_queue("tasks") == "tasks"
    assert check_queue("tenant-1.agent_x:high") == "tenant-1.agent_x:high"


@pytest.mark.parametrize("bad", [-1, float("inf"), float("nan")])
def test_invalid_delays(bad: float) -> None:
    with pytest.raises(ValueError):
        check_delay(bad)


@pytest.mark.parametrize("bad", [0, 65_536, 1.5])
def test_invalid_prefetch(bad: int) -> None:
    with pytest.raises(ValueError):
        check_prefetch(bad)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_s(a) for a in range(1, 6)] == [1, 2, 4, 8, 16]
    assert backoff_s(30, base_s=0.5, cap_s=60) == 60
    assert backoff_s(10_000) == 300
    with pytest.raises(ValueError):
        backoff_s(0)


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("acme.echo", "acme.echo", True),
        ("acme.*", "acme.echo", True),
        ("acme.*", "acme", False),
        ("acme.*", "acme.echo.x", False),
        ("*.echo", "globex.echo", True),
        ("#", "anything.at.all", True),
        ("#", "", True),
        ("acme.#", "acme", True),
        ("acme.#", "acme.a.b", True),
        ("#.echo", "acme.echo", True),
        ("#.echo", "acme.other", False),
        ("acme.echo", "acme.other", False),
    ],
)
def test_topic_matching(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches
