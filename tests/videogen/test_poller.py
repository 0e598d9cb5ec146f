"""The per-provider poller (videogen.poll_backend): without webhooks every job of a provider
is polled by one poller at a time, which reads the due jobs each round and asks fal in
threads; no Celery message or task run per poll."""

from __future__ import annotations

import threading
import time

import pytest
from django.utils import timezone

from runtime import slots
from tests.conftest import EMBEDDED
from tests.fakes.fal import FakeFal
from tests.support.jobs import wait_until
from videogen.jobs import services, tasks
from videogen.models import Job, JobStatus

pytestmark = [pytest.mark.modes, pytest.mark.django_db(transaction=True)]

T2V = "fal-ai/fast-animatediff/text-to-video"


@pytest.fixture
def fal(settings):
    with FakeFal() as fake:
        for name, value in fake.settings().items():
            setattr(settings, name, value)
        settings.VIDEO_POLL_INTERVAL = 0.05
        yield fake


class Sent(list):
    """Every job task this process sends, as (task, args, countdown); only recorded unless
    ``forward`` (a test that looks at what would be sent leaves no task behind it)."""

    forward = False


@pytest.fixture
def sent(monkeypatch) -> Sent:
    calls = Sent()
    original = services._dispatch_now

    def record(task_name, args, countdown, queue):
        calls.append((task_name, args, countdown))
        return original(task_name, args, countdown, queue) if calls.forward else True

    monkeypatch.setattr(services, "_dispatch_now", record)
    return calls


@pytest.mark.skipif(not EMBEDDED, reason="counts the tasks this process runs")
def test_one_poller_polls_every_job_with_a_handful_of_messages_and_never_two_at_once(api, fal, sent,
                                                                                     monkeypatch, settings):
    settings.STUDIO_MAX_UNFINISHED_GENERATIONS = 20
    sent.forward = True
    fal.processing_time = 1.0
    running, most = [0], [0]
    guard = threading.Lock()
    original = tasks._poll_rounds

    def counted(backend, *, deadline):
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return original(backend, deadline=deadline)
        finally:
            with guard:
                running[0] -= 1

    monkeypatch.setattr(tasks, "_poll_rounds", counted)
    ids = [api.post("/api/jobs/", {"model": T2V, "prompt": f"polled {n}"}, format="json").json()["id"]
           for n in range(6)]
    assert all(wait_until(api, job_id, timeout=30)["status"] == "completed" for job_id in ids)
    polls = sum(Job.objects.filter(pk__in=ids).values_list("polls", flat=True))
    wakes = sum(1 for task, *_ in sent if task == "videogen.poll_backend")
    assert polls >= 6 * 10  # dense polling: every 0.05 s for a 1 s run
    assert wakes <= 6 + 2, (wakes, polls)  # at most a wake per submit, not one per poll
    assert most[0] == 1  # one poller for fal at a time


def test_a_poller_with_nothing_due_soon_stops_and_schedules_its_next_run(user, fal, sent):
    job = Job.objects.create(owner=user, backend="fal", model_id=T2V, kind="text-to-video",
                             input={"prompt": "later"}, status=JobStatus.SUBMITTED, provider_request_id="req-later",
                             next_poll_at=timezone.now() + timezone.timedelta(seconds=8))
    started = time.monotonic()
    tasks.poll_backend("fal")
    assert time.monotonic() - started < 2  # did not sleep 8 s holding a worker thread
    [(task, args, countdown)] = [call for call in sent if call[0] == "videogen.poll_backend"]
    assert args == ("fal",) and 6 < countdown <= 8
    assert Job.objects.get(pk=job.pk).polls == 0


def test_a_wake_is_skipped_while_the_poller_runs_and_sent_when_it_does_not(user, fal, sent):
    slot = services.poller_slot("fal")
    with slots.held(slot, 1, 10) as running:
        assert running
        services._wake_poller_now("fal", None)
        assert not sent  # the running poller reads every due job itself
        tasks.poll_backend("fal")  # a second poller does not start
        assert sent == []
        tasks.poll_backend("fal", True)  # ... and one that insists looks again after the lease
        assert sent == [("videogen.poll_backend", ("fal",), tasks.POLLER_LEASE_S)] and slots.holders(slot) == 1
        sent.clear()
    assert slots.holders(slot) == 0
    services._wake_poller_now("fal", 0.5)
    assert sent == [("videogen.poll_backend", ("fal",), 0.5)]


def test_the_sweep_wakes_each_providers_poller_once_for_its_stalled_jobs(user, fal, sent):
    old = timezone.now() - timezone.timedelta(minutes=5)
    for n in range(3):
        Job.objects.create(owner=user, backend="fal", model_id=T2V, kind="text-to-video", input={"prompt": f"s{n}"},
                           status=JobStatus.RUNNING, provider_request_id=f"req-{n}", next_poll_at=old)
    Job.objects.update(updated_at=old)
    counts = services.sweep_jobs(remote_lease_s=60, pending_lease_s=120)
    assert counts["polled"] == 3
    assert [call for call in sent if call[0] == "videogen.poll_backend"] == [
        ("videogen.poll_backend", ("fal", True), None)]
