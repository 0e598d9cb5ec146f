"""200 ``POST /api/jobs/`` at once against a PostgreSQL with its default max_connections=100:
no error, every job completes. Each process holds at most its pool (DATABASE_POOL_SIZE) and
its task threads: requests and tasks wait for a connection instead of opening more."""

from __future__ import annotations

import threading
import time

import pytest

from tests.faults.studio import FaultStudio, GatedFal

pytestmark = pytest.mark.services

CREATES = 200
USERS = 20
MAX_CONNECTIONS = 100


def test_two_hundred_concurrent_creates_fit_in_a_hundred_connections():
    with GatedFal() as fal, FaultStudio(fal, max_connections=MAX_CONNECTIONS, users=USERS) as studio:
        fal.queue_time, fal.processing_time = 0.05, 0.2
        peak = [0]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], studio.connections())
                done.wait(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            prompts = [f"crowd {n}" for n in range(CREATES)]
            started = time.monotonic()
            answers = studio.post_jobs(prompts, concurrency=CREATES, users=USERS)
            answered_in = time.monotonic() - started
            codes = sorted({r.status_code for r in answers})
            assert codes == [202], [(r.status_code, r.text[:200]) for r in answers if r.status_code != 202][:5]
            took = studio.wait_completed(CREATES, timeout=90)
        finally:
            done.set()
            watcher.join(5)
        print(f"{CREATES} concurrent creates: 0 errors, answered in {answered_in:.1f} s, all completed "
              f"{took:.1f} s after the last answer; "
              f"at most {peak[0]} PostgreSQL connections (max_connections={MAX_CONNECTIONS})")
        assert peak[0] < MAX_CONNECTIONS
    assert fal.submissions() == dict.fromkeys(prompts, 1)
