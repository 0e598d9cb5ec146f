"""A worker SIGKILLed while it submits and polls: after a restart every job completes, and the
fake fal saw exactly one paid submission per job (services pass: Redis, PostgreSQL, real
Celery worker processes)."""

from __future__ import annotations

import signal

import pytest
from django.conf import settings as django_settings

from tests.fakes.fal import FakeFal
from tests.support.processes import celery_worker, wait_for, worker_env
from videogen.models import Job, JobStatus

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

T2V = "fal-ai/fast-animatediff/text-to-video"
JOBS = 8


def statuses() -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in Job.objects.values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


def test_jobs_survive_a_killed_worker_and_are_paid_for_once(api, settings, tmp_path):
    with FakeFal() as fal:
        for name, value in fal.settings().items():
            setattr(settings, name, value)
        settings.MEDIA_ROOT = tmp_path / "media"
        settings.STUDIO_MAX_UNFINISHED_GENERATIONS = 50
        fal.queue_time, fal.processing_time = 0.1, 4.0
        env = {**worker_env(), **fal.settings(), "STUDIO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
               "VIDEO_POLL_INTERVAL": "0.2", "JOB_SUBMIT_CONCURRENCY": "2"}
        ids = [api.post("/api/jobs/", {"model": T2V, "prompt": f"crash test {n}"}, format="json").json()["id"]
               for n in range(JOBS)]
        assert statuses() == {"pending": JOBS}  # no worker yet: queued in Redis only

        with celery_worker(env, queues="default", name="doomed") as worker:
            # Every job submitted and being polled (fal runs each for 4 s): then the worker dies.
            wait_for(lambda: Job.objects.filter(status__in=[JobStatus.SUBMITTED, JobStatus.RUNNING],
                                                polls__gte=1).count() == JOBS, 60, "all jobs polled")
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        assert not Job.objects.filter(status=JobStatus.COMPLETED).exists()
        late = api.post("/api/jobs/", {"model": T2V, "prompt": "made while no worker ran"}, format="json")
        ids.append(late.json()["id"])

        fal.processing_time = 0.5
        with celery_worker(env, queues="default", name="revived"):
            wait_for(lambda: statuses().get("completed") == len(ids), 90, "every job to complete",
                     interval=0.5)
        submitted = [r["input"]["prompt"] for r in fal.requests.values()]
    assert sorted(submitted) == sorted([f"crash test {n}" for n in range(JOBS)] + ["made while no worker ran"])
    for job in Job.objects.all():
        assert job.video.file.storage.exists(job.video.file.name) and job.attempts == 1
    assert django_settings.STUDIO_EMBEDDED is False
