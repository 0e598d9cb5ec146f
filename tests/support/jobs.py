"""Helpers for tests that follow jobs through the API."""

from __future__ import annotations

import time

FINAL = ("completed", "failed", "cancelled")


def wait_until(api, job_id: str, statuses=FINAL, timeout: float = 30) -> dict:
    """The job as ``GET /api/jobs/<id>/`` shows it, once its status is one of ``statuses``
    (or after ``timeout`` seconds, whatever it is then)."""
    deadline = time.monotonic() + timeout
    while True:
        job = api.get(f"/api/jobs/{job_id}/").json()
        if job["status"] in statuses or time.monotonic() > deadline:
            return job
        time.sleep(0.05)
