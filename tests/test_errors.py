"""What an error tells a client (``to_dict``, the body of every HTTP, SSE and WebSocket error)."""

from __future__ import annotations

from shipyard.errors import InvalidInput, StoreError, StoreRejected


def test_a_store_error_tells_a_client_the_operation_only() -> None:
    detailed = "state store (redis 10.0.0.5:6379/0) get failed: ConnectionError: Error 111"
    error = StoreError(detailed, details={"operation": "get"})
    assert error.message == detailed  # for the log
    assert error.to_dict() == {
        "code": "store_unavailable",
        "message": "a backing store is unavailable; try again later",
        "details": {"operation": "get"},
    }
    refused = StoreRejected("record store (postgresql) failed: UntranslatableCharacterError")
    assert refused.to_dict() == {"code": "store_rejected", "message": "a store refused the data"}


def test_other_errors_say_what_they_say() -> None:
    error = InvalidInput("bad field", details=[{"field": "x"}])
    assert error.to_dict() == {
        "code": "invalid_input",
        "message": "bad field",
        "details": [{"field": "x"}],
    }
