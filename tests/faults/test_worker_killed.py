"""A worker SIGKILLed while it waits inside fal's submit call (fal has the paid requests, the
worker has not stored their ids): every job completes within a minute of a new worker
starting, each sent to fal exactly once, and the dead worker's provider slots are free again
within a slot lease (~30 s), not after the longest call it might have made."""

from __future__ import annotations

import time

import pytest
import redis

from tests.faults.studio import PREFIX, FaultStudio, GatedFal
from tests.support.processes import wait_for

pytestmark = pytest.mark.services

JOBS = 10
ANSWERED = 5  # fal answers these submits; the next ones wait inside the call until the kill
SLOT_LEASE_S = 30.0  # JOB_SLOT_LEASE_S, the default


def live_holders(client: redis.Redis, key: str) -> set[bytes]:
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    return set(client.zrangebyscore(key, now_ms, "+inf"))


def test_a_worker_killed_inside_the_paid_call_loses_no_job_and_frees_its_slots():
    with GatedFal() as fal, FaultStudio(fal) as studio:
        fal.queue_time, fal.processing_time = 0.2, 3.0
        fal.hold_after(ANSWERED)
        prompts = [f"killed worker {n}" for n in range(JOBS)]
        assert [r.status_code for r in studio.post_jobs(prompts)] == [202] * JOBS
        # Four threads: four submits recorded by fal and waiting for its answer.
        studio.wait_for_submissions(ANSWERED + 4)
        slots = redis.Redis.from_url(studio.redis.url())
        key = f"{PREFIX}:slot:submit:fal"
        held = live_holders(slots, key)
        assert len(held) == 4
        studio.kill("worker0")
        killed_at = time.monotonic()
        fal.release()  # its answers go to a dead socket: fal bills them, nobody stores their ids
        unrecorded = studio.postgres.sql("SELECT count(*) FROM videogen_job WHERE submit_started_at IS NOT NULL "
                                         "AND provider_request_id = ''", "studio")[0][0]
        assert unrecorded == 4

        studio.start_worker("worker1")
        recovered_in = studio.wait_completed(JOBS, timeout=60)
        wait_for(lambda: not (held & live_holders(slots, key)), SLOT_LEASE_S + 5, "the dead worker's slots to free")
        freed_after = time.monotonic() - killed_at
        print(f"worker killed inside 4 paid calls: {JOBS} jobs completed {recovered_in:.1f} s after a new "
              f"worker started; its submit slots were free {freed_after:.1f} s after the kill")
        assert freed_after <= SLOT_LEASE_S + 2
        adopted = studio.postgres.sql("SELECT count(*) FROM videogen_job WHERE logs_tail::text LIKE "
                                      "'%its submit answer was lost%'", "studio")[0][0]
    assert adopted == 4
    assert fal.submissions() == dict.fromkeys(prompts, 1)
