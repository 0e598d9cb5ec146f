"""PostgreSQL stopped for 10 s while 10 jobs are being submitted and polled: every job
completes within a minute of its return, each sent to fal exactly once.

The studio's pool waits only 2 s for a connection here (DATABASE_POOL_TIMEOUT; 30 s by
default would ride out this outage by waiting), so tasks do fail on the database: they are
retried with backoff, the paid submit's answer is kept until it can be stored, and the sweep
sends whatever was lost."""

from __future__ import annotations

import time

import pytest

from tests.faults.studio import FaultStudio, GatedFal

pytestmark = pytest.mark.services

JOBS = 10
OUTAGE_S = 10


def test_a_database_outage_loses_no_job_and_pays_for_none_twice():
    with GatedFal() as fal, FaultStudio(fal, env={"JOB_SUBMIT_CONCURRENCY": "2",
                                                      "DATABASE_POOL_TIMEOUT": "2"}) as studio:
        fal.queue_time, fal.processing_time = 0.2, 4.0
        prompts = [f"database outage {n}" for n in range(JOBS)]
        assert [r.status_code for r in studio.post_jobs(prompts)] == [202] * JOBS
        # Half sent and being polled, the rest still waiting for a submit slot: then the database goes.
        studio.wait_for_submissions(JOBS // 2)
        studio.postgres.stop()
        time.sleep(OUTAGE_S)
        studio.postgres.start()
        recovered_in = studio.wait_completed(JOBS, timeout=60)
        print(f"database outage of {OUTAGE_S} s: {JOBS} jobs completed {recovered_in:.1f} s after it ended")
    assert fal.submissions() == dict.fromkeys(prompts, 1)
