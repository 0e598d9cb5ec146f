"""One pending alarm per name (runtime/alarms.py): the earliest request wins, a stale
message does not clear a newer alarm, and a lost one lapses (in the services pass through
Redis, in the embedded pass in this process)."""

from __future__ import annotations

import time
import uuid

import pytest

from runtime import alarms

pytestmark = pytest.mark.modes


def name() -> str:
    return f"test-{uuid.uuid4().hex}"


def test_only_a_sooner_request_sets_a_new_alarm():
    alarm = name()
    first = alarms.claim(alarm, 5, 10)
    assert first is not None
    assert alarms.claim(alarm, 6, 10) is None  # due later than the pending one: covered
    sooner = alarms.claim(alarm, 1, 10)
    assert sooner is not None and sooner < first
    assert alarms.claim(alarm, 2, 10) is None
    assert alarms.claim(alarm, 0.8, 10, slack_s=0.5) is None  # within the slack: covered
    assert alarms.claim(alarm, 0.2, 10, slack_s=0.5) is not None


def test_the_alarm_that_went_off_clears_itself_and_a_stale_one_does_not():
    alarm = name()
    late = alarms.claim(alarm, 5, 10)
    soon = alarms.claim(alarm, 0.5, 10)
    assert late is not None and soon is not None
    alarms.clear(alarm, late)  # the overtaken message ran: the pending alarm stays
    assert alarms.claim(alarm, 1, 10) is None
    alarms.clear(alarm, soon)
    assert alarms.claim(alarm, 1, 10) is not None  # nothing pending: the next request sets one


def test_force_sets_the_alarm_whatever_is_pending():
    alarm = name()
    soon = alarms.claim(alarm, 0.5, 10)
    forced = alarms.claim(alarm, 8, 10, force=True)
    assert soon is not None and forced is not None and forced > soon
    assert alarms.claim(alarm, 9, 10) is None and alarms.claim(alarm, 7, 10) is not None


def test_an_alarm_whose_message_was_lost_lapses_after_its_grace():
    alarm = name()
    assert alarms.claim(alarm, 0, 0.2) is not None
    assert alarms.claim(alarm, 0, 0.2) is None  # due now and pending: covered
    time.sleep(0.35)
    assert alarms.claim(alarm, 0, 0.2) is not None
