"""Provider slots (runtime/slots.py): at most N holders at once across processes, and a line
of waiters that a release hands its slot to, in order (in the services pass through Redis, in
the embedded pass in this process)."""

from __future__ import annotations

import time
import uuid

import pytest

from runtime import slots

pytestmark = pytest.mark.modes


def name() -> str:
    return f"test-{uuid.uuid4().hex}"


def test_at_most_size_holders_and_a_release_frees_one():
    slot = name()
    assert slots.acquire(slot, 2, "a", 30) and slots.acquire(slot, 2, "b", 30)
    assert not slots.acquire(slot, 2, "c", 30)
    assert slots.holders(slot) == 2 and slots.waiting(slot) == 0  # no wait_as: not in line
    assert slots.release(slot, "a", 2, 30) == []
    assert slots.acquire(slot, 2, "c", 30) and slots.holders(slot) == 2


def test_a_release_hands_its_slot_to_the_first_in_line_and_nobody_jumps_the_line():
    slot = name()
    woken: list[tuple[str, str]] = []
    with slots.held(slot, 1, 30, hand_on=lambda *handed: woken.append(handed)) as first:
        assert first
        for job in ("job-1", "job-2"):
            with slots.held(slot, 1, 30, wait_as=job) as acquired:
                assert acquired is False
        assert slots.waiting(slot) == 2 and not woken
    # The release handed the slot to job-1 (still counted, now leased to job-1's holder name).
    assert [job for job, _ in woken] == ["job-1"]
    assert slots.holders(slot) == 1 and slots.waiting(slot) == 1
    assert not slots.acquire(slot, 1, "newcomer", 30)  # the slot is job-1's, not free
    job_1 = woken[0][1]
    with slots.held(slot, 1, 30, holder=job_1, hand_on=lambda *handed: woken.append(handed)) as acquired:
        assert acquired  # already its own
    assert [job for job, _ in woken] == ["job-1", "job-2"]
    slots.release(slot, woken[1][1], 1, 30)
    assert slots.holders(slot) == 0 and slots.waiting(slot) == 0


def test_slots_whose_lease_ran_out_are_handed_to_the_line_by_hand_free():
    slot = name()
    assert slots.acquire(slot, 2, "lost-1", 0.2) and slots.acquire(slot, 2, "lost-2", 0.2)
    assert not slots.acquire(slot, 2, "w1", 30, wait_as="job-1")
    assert not slots.acquire(slot, 2, "w2", 30, wait_as="job-2")
    assert slots.hand_free(slot, 2, 30) == []  # the leases still run
    time.sleep(0.3)
    assert slots.hand_free(slot, 2, 30) == [("job-1", "w1"), ("job-2", "w2")]
    assert slots.holders(slot) == 2 and slots.waiting(slot) == 0
    assert slots.acquire(slot, 2, "w1", 30)  # a handed slot is taken by its holder name


def test_a_failing_wake_is_logged_and_the_slot_stays_leased_to_the_waiter(caplog):
    slot = name()

    def broken(job: str, holder: str) -> None:
        raise ConnectionError("the broker is away")

    assert slots.acquire(slot, 1, "a", 30)
    assert not slots.acquire(slot, 1, "w", 30, wait_as="job-1")
    slots.pass_on(slot, "a", 1, 30, broken)
    assert "cannot wake job-1" in caplog.text
    # Leased to the waiter: its lease runs out, then the sweep's hand_free tries again.
    assert slots.holders(slot) == 1 and not slots.acquire(slot, 1, "newcomer", 30)


def test_a_holder_name_with_a_colon_is_refused():
    with pytest.raises(ValueError, match="no ':'"):
        slots.acquire(name(), 1, "a:b", 30)
