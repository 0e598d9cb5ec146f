"""A job created while the broker cannot take its task (the row commits, the dispatch after
the commit fails): the create still answers 202, and the job sweep sends the task once the
broker is back, so the job completes (services pass: a real Celery worker, the test's
Redis and PostgreSQL; the cache stays up, only the broker is unreachable)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import pytest

from runtime.celery import app
from tests.fakes.fal import FakeFal
from tests.support.jobs import wait_until
from tests.support.processes import celery_worker, free_port, worker_env
from videogen.jobs import tasks
from videogen.models import Job, JobStatus

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

T2V = "fal-ai/fast-animatediff/text-to-video"


@contextlib.contextmanager
def broker_unreachable() -> Iterator[None]:
    """Tasks this process sends go to a port nobody listens on, as when Redis is away."""
    def forget_producers() -> None:
        # The cached producer pools hold connections to one URL; Celery's app.close() skips
        # them when the pool is empty (every connection failed), so both are dropped here.
        app.close()
        app._pool = None
        app.amqp._producer_pool = None

    app.conf.broker_write_url = f"redis://127.0.0.1:{free_port()}/0"
    forget_producers()
    try:
        yield
    finally:
        app.conf.broker_write_url = None
        forget_producers()


def test_a_job_created_while_the_broker_is_down_answers_202_and_the_sweep_sends_it(api, settings, caplog,
                                                                                     tmp_path):
    with FakeFal() as fal:
        for name, value in fal.settings().items():
            setattr(settings, name, value)
        settings.MEDIA_ROOT = tmp_path / "media"
        env = {**worker_env(), **fal.settings(), "STUDIO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
               "VIDEO_POLL_INTERVAL": "0.1"}
        with celery_worker(env, queues="default"):  # up first: its start-up recovery finds nothing
            with broker_unreachable(), caplog.at_level(logging.WARNING, logger="videogen.jobs.services"):
                response = api.post("/api/jobs/", {"model": T2V, "prompt": "while the broker was away"},
                                    format="json")
            assert response.status_code == 202, response.content[:300]
            assert "could not dispatch videogen.submit_job" in caplog.text
            job_id = response.json()["id"]
            time.sleep(1)
            assert Job.objects.get(pk=job_id).status == JobStatus.PENDING and not fal.requests

            settings.STUDIO_JOB_PENDING_LEASE_S = 0.01  # the row has been still for its lease
            tasks.sweep_jobs()  # what beat sends every STUDIO_JOB_SWEEP_S
            job = wait_until(api, job_id, timeout=60)
    assert job["status"] == "completed", job
    assert [r["input"]["prompt"] for r in fal.requests.values()] == ["while the broker was away"]
