"""Provider slots (runtime/slots.py): at most N holders at once across processes; a caller
may wait a little for one, and is woken by the release rather than by a timer (in the services
pass through Redis, in the embedded pass in this process)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from runtime import slots

pytestmark = pytest.mark.modes


def test_a_waiter_takes_a_freed_slot_as_soon_as_it_is_released():
    name = f"test-{uuid.uuid4().hex}"
    acquired_at: list[float] = []

    def waiter() -> None:
        with slots.held(name, 1, 30, wait_s=5) as acquired:
            if acquired:
                acquired_at.append(time.monotonic())

    with slots.held(name, 1, 30) as first:
        assert first
        with slots.held(name, 1, 30) as second:
            assert second is False  # none free and no waiting: at once
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.1)
        assert not acquired_at
        released_at = time.monotonic()
    thread.join(6)
    # Woken by the release: a timer (the wait's 0.5 s steps) would have been 0.4 s later.
    assert acquired_at and acquired_at[0] - released_at < 0.3, acquired_at
    assert slots.holders(name) == 0


def test_a_waiter_gives_up_after_its_wait_when_nothing_is_freed():
    name = f"test-{uuid.uuid4().hex}"
    with slots.held(name, 1, 30):
        started = time.monotonic()
        with slots.held(name, 1, 30, wait_s=0.3) as acquired:
            assert acquired is False
        assert 0.3 <= time.monotonic() - started < 2
    assert slots.holders(name) == 0
