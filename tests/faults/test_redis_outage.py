"""Redis (the broker, the channel layer and the cache) stopped for 10 s while 10 jobs are
being submitted and polled: every job completes within a minute of its return, each sent to
fal exactly once, and no worker exits. A job created during the outage is accepted (202: the
rate cannot be counted then, the cap on unfinished generations is in the database) and is
sent by the sweep once Redis is back. Redis keeps its data across the restart, as compose's
does (append-only file), so messages a worker could not give back while Redis was away are
still there: they do not hold any job up (the sweep sends it again)."""

from __future__ import annotations

import time

import pytest

from tests.faults.studio import FaultStudio, GatedFal

pytestmark = pytest.mark.services

JOBS = 10
OUTAGE_S = 10


def test_a_redis_outage_loses_no_job_pays_for_none_twice_and_keeps_the_workers():
    with GatedFal() as fal, FaultStudio(fal, persistent_redis=True, env={"JOB_SUBMIT_CONCURRENCY": "2"}) as studio:
        fal.queue_time, fal.processing_time = 0.2, 4.0
        prompts = [f"redis outage {n}" for n in range(JOBS)]
        assert [r.status_code for r in studio.post_jobs(prompts)] == [202] * JOBS
        studio.wait_for_submissions(JOBS // 2)
        studio.redis.stop()
        during = studio.post_job("created while redis is down")
        time.sleep(OUTAGE_S)
        studio.redis.start()
        assert during.status_code == 202, during.text[:300] + studio.logs(80)
        recovered_in = studio.wait_completed(JOBS + 1, timeout=60)
        print(f"redis outage of {OUTAGE_S} s: {JOBS} jobs completed {recovered_in:.1f} s after it ended")
        exited = {name: p.returncode for name, p in studio.processes.items() if p.poll() is not None}
        assert not exited, f"{exited}\n{studio.logs()}"
    sent = [*prompts, "created while redis is down"]
    assert {p: n for p, n in fal.submissions().items() if p in sent} == dict.fromkeys(sent, 1)
