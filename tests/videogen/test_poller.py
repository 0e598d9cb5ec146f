"""The per-provider poller (videogen.poll_backend): without webhooks every job of a provider
is polled by one poller at a time; a run reads the due jobs, asks fal in threads and ends,
having set its next run; one message per run, not per poll, and never two runs on their way."""

from __future__ import annotations

import threading
import time

import pytest
from django.utils import timezone

from runtime import slots
from tests.conftest import EMBEDDED
from tests.fakes.fal import FakeFal
from tests.support.jobs import wait_until
from videogen.jobs import polling, services, tasks
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
    """Every job task and poller run this process sends, as (task, args, countdown); only
    recorded unless ``forward`` (a test that looks at what would be sent leaves no task
    behind it)."""

    forward = False


@pytest.fixture
def sent(monkeypatch) -> Sent:
    calls = Sent()
    send_task, send_run = services._dispatch_now, polling._send

    def task(task_name, args, countdown, queue):
        calls.append((task_name, args, countdown))
        return send_task(task_name, args, countdown, queue) if calls.forward else True

    def run(args, countdown):
        calls.append(("videogen.poll_backend", args, countdown or None))
        return send_run(args, countdown) if calls.forward else True

    monkeypatch.setattr(services, "_dispatch_now", task)
    monkeypatch.setattr(polling, "_send", run)
    return calls


@pytest.mark.skipif(not EMBEDDED, reason="counts the tasks this process runs")
def test_one_poller_polls_every_job_with_a_message_per_run_and_never_two_at_once(api, fal, sent,
                                                                                 monkeypatch, settings):
    settings.STUDIO_MAX_UNFINISHED_GENERATIONS = 20
    sent.forward = True
    fal.processing_time = 1.0
    running, most = [0], [0]
    guard = threading.Lock()
    original = tasks._poll_due

    def counted(backend, *, deadline):
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return original(backend, deadline=deadline)
        finally:
            with guard:
                running[0] -= 1

    monkeypatch.setattr(tasks, "_poll_due", counted)
    ids = [api.post("/api/jobs/", {"model": T2V, "prompt": f"polled {n}"}, format="json").json()["id"]
           for n in range(6)]
    assert all(wait_until(api, job_id, timeout=30)["status"] == "completed" for job_id in ids)
    polls = sum(Job.objects.filter(pk__in=ids).values_list("polls", flat=True))
    runs = sum(1 for task, *_ in sent if task == "videogen.poll_backend")
    assert polls >= 6 * 10  # dense polling: every 0.05 s for a 1 s run
    assert runs * 3 <= polls, (runs, polls)  # the six jobs share runs: not a message per poll
    assert most[0] == 1  # one poller for fal at a time


def test_a_poller_with_nothing_due_soon_stops_and_schedules_its_next_run(user, fal, sent):
    job = Job.objects.create(owner=user, backend="fal", model_id=T2V, kind="text-to-video",
                             input={"prompt": "later"}, status=JobStatus.SUBMITTED, provider_request_id="req-later",
                             next_poll_at=timezone.now() + timezone.timedelta(seconds=8))
    started = time.monotonic()
    tasks.poll_backend("fal")
    assert time.monotonic() - started < 2  # did not sleep 8 s holding a worker thread
    [(task, (backend, token, insist), countdown)] = [call for call in sent if call[0] == "videogen.poll_backend"]
    assert (backend, insist) == ("fal", False) and token and 6 < countdown <= 8
    assert Job.objects.get(pk=job.pk).polls == 0
    # Every later wake (another run that ends, a submit due later) is covered by that run.
    tasks.poll_backend("fal")
    polling.wake_poller("fal", 9)
    assert len([call for call in sent if call[0] == "videogen.poll_backend"]) == 1


def test_a_wake_is_skipped_while_the_poller_runs_or_while_a_sooner_run_is_on_its_way(user, fal, sent):
    slot = polling.poller_slot("fal")
    with slots.held(slot, 1, 10) as running:
        assert running
        polling.wake_poller("fal")
        assert not sent  # the running poller reads every due job, and sets its next run
        tasks.poll_backend("fal")  # a second poller does not start
        assert sent == []
        tasks.poll_backend("fal", None, True)  # ... and one that insists looks again after the lease
        [(task, (backend, token, insist), countdown)] = sent
        assert (task, backend, insist, countdown) == ("videogen.poll_backend", "fal", False, tasks.POLLER_LEASE_S)
        assert slots.holders(slot) == 1
        sent.clear()
    assert slots.holders(slot) == 0
    assert polling.wake_poller("fal", 0.5) and polling.wake_poller("fal", 0.7)
    [(_, (_, soon, _), countdown)] = sent
    assert countdown == 0.5  # the later wake is covered by the run on its way
    tasks.poll_backend("fal", token)  # the overtaken run (due after the lease) ran: nothing changes
    polling.wake_poller("fal", 0.7)
    assert len(sent) == 1
    polling.poller_alarm_went_off("fal", soon)  # the run went off: the next wake sends one
    polling.wake_poller("fal", 0.7)
    assert [call[2] for call in sent] == [0.5, 0.7]


def test_the_sweep_wakes_each_providers_poller_once_for_its_stalled_jobs(user, fal, sent):
    old = timezone.now() - timezone.timedelta(minutes=5)
    for n in range(3):
        Job.objects.create(owner=user, backend="fal", model_id=T2V, kind="text-to-video", input={"prompt": f"s{n}"},
                           status=JobStatus.RUNNING, provider_request_id=f"req-{n}", next_poll_at=old)
    Job.objects.update(updated_at=old)
    counts = services.sweep_jobs(remote_lease_s=60, pending_lease_s=120)
    assert counts["polled"] == 3
    [(task, (backend, token, insist), countdown)] = [call for call in sent if call[0] == "videogen.poll_backend"]
    assert (backend, insist, countdown) == ("fal", True, None) and token


def test_answers_that_change_nothing_are_stored_in_an_update_per_interval_that_skips_a_finished_job(user, fal):
    due = timezone.now() - timezone.timedelta(seconds=1)
    jobs = [Job.objects.create(owner=user, backend="fal", model_id=T2V, kind="text-to-video", input={"prompt": f"q{n}"},
                               status=JobStatus.SUBMITTED, provider_request_id=f"req-q{n}", next_poll_at=due,
                               queue_position=3) for n in range(3)]
    read = polling.due_polls("fal", ahead_s=0, limit=10)
    assert sorted(job.pk for job in read) == sorted(job.pk for job in jobs)
    assert all(services.changes_nothing(job, state="queued", queue_position=3, logs=(), progress=None) for job in read)
    assert not services.changes_nothing(read[0], state="queued", queue_position=2, logs=(), progress=None)
    assert not services.changes_nothing(read[0], state="running", queue_position=3, logs=(), progress=None)
    assert not services.changes_nothing(read[0], state="queued", queue_position=3, logs=("new line",), progress=None)
    Job.objects.filter(pk=jobs[0].pk).update(status=JobStatus.CANCELLED)  # finished while it was polled
    later = {jobs[2].pk: 4.0}  # each job keeps its own next poll
    services.record_quiet_polls([(job, later.get(job.pk, 2.0)) for job in read])
    cancelled = Job.objects.get(pk=jobs[0].pk)
    assert cancelled.status == JobStatus.CANCELLED and cancelled.polls == 0 and cancelled.next_poll_at == due
    for job in Job.objects.filter(pk__in=[jobs[1].pk, jobs[2].pk]):
        assert job.polls == 1 and job.status == JobStatus.SUBMITTED
        wait = later.get(job.pk, 2.0)
        assert wait - 0.5 < (job.next_poll_at - timezone.now()).total_seconds() <= wait


def test_a_wake_the_broker_refuses_is_logged_and_the_next_wake_sends_again(user, fal, monkeypatch, caplog):
    calls = []

    def away(task_name, *args, countdown=None, queue=None):
        calls.append(args)
        raise ConnectionError("the broker is away")

    monkeypatch.setattr(polling, "dispatch", away)
    assert polling.wake_poller("fal", 0.5) is False
    assert "could not wake the fal poller" in caplog.text
    assert polling.wake_poller("fal", 0.5) is False  # not covered by an alarm whose message never left
    assert len(calls) == 2
