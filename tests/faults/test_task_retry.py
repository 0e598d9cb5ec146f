"""A job task that meets a transient database or broker error is tried again with backoff,
not acknowledged and lost; any other error is not (embedded pass: the executor's threads keep
the backoff that Celery's eager mode would skip; the services pass sees the same in the fault
tests' worker logs)."""

from __future__ import annotations

import threading
import time

import pytest
from django import db

from runtime.celery import RETRY_TRANSIENT, app
from tests.conftest import EMBEDDED

pytestmark = pytest.mark.skipif(not EMBEDDED, reason="runs on the embedded executor")

calls: dict[str, list[float]] = {}
finished = threading.Event()


@app.task(name="tests.faults.flaky", **{**RETRY_TRANSIENT, "max_retries": 2})
def flaky(key: str, failures: int, error: str = "database") -> str:
    """Fails ``failures`` times with a transient error (or a ValueError), then succeeds."""
    calls.setdefault(key, []).append(time.monotonic())
    if len(calls[key]) <= failures:
        if error == "database":
            raise db.OperationalError("the database system is shutting down")
        raise ValueError("a bug, not an outage")
    finished.set()
    return "done"


def wait_calls(key: str, count: int, timeout: float = 10) -> list[float]:
    deadline = time.monotonic() + timeout
    while len(calls.get(key, [])) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(1.2)  # and no further call comes (a first retry waits 0-1 s)
    return calls.get(key, [])


def test_a_transient_error_is_retried_until_the_task_succeeds():
    flaky.delay("recovers", 2)
    assert len(wait_calls("recovers", 3)) == 3
    assert finished.wait(1)


def test_retries_stop_after_max_retries_and_other_errors_are_not_retried():
    flaky.delay("outage", 10)
    assert len(wait_calls("outage", 3)) == 3  # the first try and max_retries=2 more
    flaky.delay("bug", 1, "value")
    assert len(wait_calls("bug", 1)) == 1
