"""Every change to a job, in one place: atomic, with its event and its next task on commit.

Views, tasks and commands call these; none of them sets a job's fields itself. Each change
locks the row, checks the move against ``Job``'s state machine (a duplicate or late message
is dropped, not applied twice), increments ``status_sequence`` and, once the transaction
commits, tells the owner's sockets (``job.status``) and dispatches the next task.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from model_control import generations
from model_control.catalog import VideoModel
from model_control.errors import ProviderError
from runtime.celery import dispatch
from runtime.events import notify_group, notify_user
from videogen.jobs import polling
from videogen.models import FINISHED, UNFINISHED, Job, JobStatus, Video

logger = logging.getLogger(__name__)

LOGS_KEPT = 20


def _dispatch(task_name: str, *args: str, countdown: float | None = None, queue: str | None = None) -> None:
    """Run the job task ``videogen.<task_name>`` once the transaction commits (by name: the
    tasks call these services, so this module does not import them).

    Never raises: the change is committed and the row says what comes next, so a broker that
    cannot take the message now (Redis down) costs a log line, and the sweep dispatches the
    job once its row has been still for its lease. A wait longer than
    ``STUDIO_TASK_MAX_COUNTDOWN_S`` is not handed to the broker at all (Redis redelivers a
    message held that long past its visibility timeout: a second task): the row keeps when
    the job is due (``next_poll_at``, a lease) and the sweep dispatches it then.
    """
    if countdown and countdown > settings.STUDIO_TASK_MAX_COUNTDOWN_S:
        logger.debug("job task %s%s is due in %.0f s: left to the sweep", task_name, args, countdown)
        return
    transaction.on_commit(lambda: _dispatch_now(f"videogen.{task_name}", args, countdown, queue))


def _dispatch_now(task_name: str, args: tuple[str, ...], countdown: float | None, queue: str | None) -> bool:
    """Send one job task now; False (logged) when the broker cannot take it."""
    try:
        dispatch(task_name, *args, countdown=countdown, queue=queue)
    except Exception as exc:  # noqa: BLE001 - kombu, redis or socket errors alike: the sweep resends
        logger.warning("could not dispatch %s%s (%s: %s); the job sweep will", task_name, args,
                       type(exc).__name__, exc)
        return False
    return True


def _wake_poller(backend: str, countdown: float | None = None) -> None:
    """The job's next poll is due in ``countdown`` seconds: once the transaction commits, make
    sure its provider's poller runs by then."""
    if countdown and countdown > settings.STUDIO_TASK_MAX_COUNTDOWN_S:
        return  # the row says when; the sweep wakes the poller then
    transaction.on_commit(lambda: polling.wake_poller(backend, countdown))


def job_group(job_id: Any) -> str:
    """The channel-layer group that hears when this job finishes (the synchronous door waits on it)."""
    return f"job.{job_id}"


def _move(job: Job, status: str) -> None:
    """Change the job's status along ``Job``'s state machine; anything else is a bug."""
    if not job.can_move_to(status):
        raise AssertionError(f"job {job.pk} cannot move from {job.status} to {status}")
    job.status = status


def _changed(job: Job, fields: list[str], *, event: str = "job.status") -> None:
    job.status_sequence += 1
    job.save(update_fields=[*fields, "status_sequence", "updated_at"])
    notify_user(job.owner_id, event, job.event())
    if job.status in FINISHED and "status" in fields:
        generations.give_back(generations.JOB, str(job.pk))
        notify_group(job_group(job.pk), "job.finished", {"job": str(job.pk), "status": job.status})


def _locked(job_id: Any) -> Job:
    """The job's row, locked for this transaction. A job deleted meanwhile ends the caller's
    work quietly (``JobGone``): there is nothing left to change."""
    found = list(Job.objects.select_for_update().filter(pk=job_id).order_by()[:1])  # no ORDER BY: one row
    if not found:
        raise JobGone(job_id)
    return found[0]


class JobGone(Exception):
    """The job was deleted while a task was working on it."""


def enqueue_job(owner: AbstractBaseUser, model: VideoModel, values: dict[str, Any], stored_input: dict[str, Any],
                *, retry_of: Job | None = None, preview: Job | None = None) -> Job:
    """A new ``pending`` job for ``model`` with cleaned ``values``; its submit task runs on commit."""
    estimate = model.price_of(values).get("estimated_cost")
    job_id = uuid.uuid4()
    # Called inside ``create``'s transaction (a job and its preview), which an error here
    # rolls back whole: no savepoints of its own.
    with transaction.atomic(savepoint=False):
        # Counted with every other door's paid generations; the cap is checked in this transaction.
        generations.take(owner.pk, generations.JOB, str(job_id), savepoint=False)
        job = Job.objects.create(id=job_id, owner=owner, backend=model.backend, model_id=model.id, kind=model.kind,
                                 input=stored_input, retry_of=retry_of, preview=preview,
                                 estimated_cost=Decimal(estimate) if estimate is not None else None)
        notify_user(owner.pk, "job.status", job.event())
        _dispatch("submit_job", str(job.pk))
    return job


def begin_submit(job_id: Any) -> Job | None:
    """Claim the paid submit: returns the job to submit, or None when there is nothing to send.

    A job that already has a request id is polled instead; one whose earlier submit started
    but never recorded an answer (the worker died mid-call) is failed as ``interrupted``
    rather than sent again, since the provider may have it and would bill twice.
    """
    with transaction.atomic():
        job = _locked(job_id)
        if job.status in (JobStatus.SUBMITTED, JobStatus.RUNNING):
            if job.provider_request_id:
                _wake_poller(job.backend)
            elif not _still_leased(job, job.started_at):
                # A provider that answers inside the submit call left nothing to resume.
                _fail(job, "interrupted", "The studio stopped while the provider was making this video inside "
                                          "its submit call, which cannot be resumed. Retry the job.")
            return None
        if job.status != JobStatus.PENDING:
            return None
        if job.submit_started_at is not None:
            if _still_leased(job, job.submit_started_at):
                return None
            _fail(job, "interrupted", "The studio stopped while sending this job to the provider, so it may or "
                                      "may not have reached it. It is not sent again by itself: retry it if no "
                                      "video appears.")
            return None
        job.submit_started_at = timezone.now()
        job.attempts += 1
        job.save(update_fields=["submit_started_at", "attempts", "updated_at"])
        return job


def _still_leased(job: Job, since) -> bool:
    """Whether another task may still be inside the provider call begun at ``since``.

    If so, this (duplicate) delivery steps back and looks again once the call must have
    ended, so a crashed worker's job is settled without ever being sent twice.
    """
    remaining = settings.VIDEO_GENERATION_TIMEOUT + 30 - (timezone.now() - since).total_seconds() \
        if since else 0
    if remaining > 0:
        _dispatch("submit_job", str(job.pk), countdown=remaining + 1)
        return True
    return False


def mark_submitted(job_id: Any, request_id: str, *, first_poll_in: float | None = None,
                   webhook: bool = False) -> None:
    """The provider accepted the job: its request id is stored in this same transaction; the
    first poll comes ``first_poll_in`` seconds later (``webhook``: the provider will call back,
    so polling is only the safety net)."""
    with transaction.atomic():
        job = _locked(job_id)
        if job.status != JobStatus.PENDING:
            # Cancelled while the submit was in flight: keep the id so the cancel can reach it.
            job.provider_request_id = request_id
            job.save(update_fields=["provider_request_id", "updated_at"])
            if job.status == JobStatus.CANCELLED:
                _dispatch_cancel(job)
            return
        _move(job, JobStatus.SUBMITTED)
        job.provider_request_id = request_id
        job.submitted_at = timezone.now()
        job.webhook_expected = webhook
        job.next_poll_at = timezone.now() + timezone.timedelta(seconds=first_poll_in or 0)
        _changed(job, ["status", "provider_request_id", "submitted_at", "webhook_expected", "next_poll_at"])
        if not webhook:  # a job whose provider calls back is polled by the sweep, once due
            _wake_poller(job.backend, first_poll_in)


def mark_answered_inline(job_id: Any) -> Job | None:
    """The provider answered the submit with the video itself (no request id to poll): the
    job moves to ``running`` on its way to being stored. None when it was cancelled meanwhile."""
    with transaction.atomic():
        job = _locked(job_id)
        if job.status != JobStatus.PENDING:
            return None
        _move(job, JobStatus.RUNNING)
        job.started_at = timezone.now()
        _changed(job, ["status", "started_at"])
        return job


def changes_nothing(job: Job, *, state: str, queue_position: int | None, logs: tuple[str, ...],
                    progress: float | None) -> bool:
    """Whether a poll's answer says only what the row (as the poller read it) already says: the
    provider still queues or runs the job, at the same place, with no new progress or log line."""
    return (state in ("queued", "unknown") or (state == "running" and job.status == JobStatus.RUNNING)) \
        and queue_position == job.queue_position and (progress is None or progress == job.progress) \
        and all(line in job.logs_tail for line in logs)


def record_quiet_polls(polled: list[tuple[Job, float]]) -> None:
    """Poll answers that change nothing but when each job is next polled (``changes_nothing``),
    with the seconds to each one's next poll: one UPDATE per distinct interval (a poll
    schedule has few), which skips a job that finished meanwhile. No event: nothing a client
    shows has changed."""
    now = timezone.now()
    by_interval: dict[float, list[Any]] = {}
    for job, next_poll_in in polled:
        by_interval.setdefault(next_poll_in, []).append(job.pk)
    for next_poll_in, ids in by_interval.items():
        Job.objects.filter(pk__in=ids, status__in=polling.POLLED).update(
            polls=F("polls") + 1, next_poll_at=now + timezone.timedelta(seconds=next_poll_in), updated_at=now)


def record_progress(job_id: Any, *, state: str, queue_position: int | None, logs: tuple[str, ...],
                    progress: float | None, next_poll_in: float | None) -> Job | None:
    """A poll's answer (from the provider's poller, which reads when the next poll is due
    from the row: ``next_poll_in``); returns the job unless it has finished meanwhile (a
    cancel won)."""
    with transaction.atomic():
        job = _locked(job_id)
        if job.finished:
            return None
        job.polls += 1
        fields = ["polls", "next_poll_at"]
        job.next_poll_at = timezone.now() + timezone.timedelta(seconds=next_poll_in) if next_poll_in else None
        moved = state in ("running", "completed") and job.status == JobStatus.SUBMITTED
        if moved:
            _move(job, JobStatus.RUNNING)
            job.started_at = timezone.now()
            fields += ["status", "started_at"]
        if state == "completed" and job.provider_completed_at is None:
            job.provider_completed_at = timezone.now()
            fields.append("provider_completed_at")
        if queue_position != job.queue_position:
            job.queue_position = queue_position
            fields.append("queue_position")
        if progress is not None and progress != job.progress:
            job.progress = progress
            fields.append("progress")
        if logs:
            tail = [*job.logs_tail, *[line for line in logs if line not in job.logs_tail]][-LOGS_KEPT:]
            if tail != job.logs_tail:
                job.logs_tail = tail
                fields.append("logs_tail")
        if len(fields) > 2:
            # One event per poll at most, and polls are VIDEO_POLL_INTERVAL (backing off) apart.
            _changed(job, fields, event="job.status" if moved else "job.progress")
        else:
            job.save(update_fields=[*fields, "updated_at"])
        return job


# --- jobs that run inside a worker (a WorkerBackend: the local pipeline on a GPU worker) ---------

def begin_worker_run(job_id: Any, *, lease_s: float, queue: str) -> Job | None:
    """Claim a job for this worker: ``pending -> running``, once; returns the job to run, or
    None when there is nothing to run here.

    Every step of a run updates the row (``record_worker_progress``), so a ``running`` job
    whose row has not changed for ``lease_s`` lost its worker: it is claimed again and run
    from the start (a worker backend costs nothing and the seed gives the same video). A
    delivery that finds the job running and alive steps back and looks again once the lease
    would have run out; a job is never run twice at once.
    """
    with transaction.atomic():
        job = _locked(job_id)
        if job.status == JobStatus.RUNNING:
            idle = (timezone.now() - job.updated_at).total_seconds()
            if idle < lease_s:
                _dispatch("gpu.run_job", str(job.pk), countdown=lease_s - idle + 1, queue=queue)
                return None
            job.attempts += 1
            job.progress, job.started_at = 0.0, timezone.now()
            job.logs_tail = [*job.logs_tail, f"started again: its worker gave no sign of life for "
                                             f"{idle:.0f} s"][-LOGS_KEPT:]
            _changed(job, ["attempts", "progress", "started_at", "logs_tail"], event="job.progress")
            return job
        if job.status != JobStatus.PENDING:
            return None
        _move(job, JobStatus.RUNNING)
        job.started_at = job.submit_started_at = timezone.now()
        job.attempts += 1
        _changed(job, ["status", "started_at", "submit_started_at", "attempts"])
        return job


def record_worker_progress(job_id: Any, *, progress: float, log: str | None = None) -> Job | None:
    """A step of a worker's job is done: its progress (0..1) and a log line, as a
    ``job.progress`` event. Returns None when the job has finished meanwhile (a cancel): the
    run stops there, between blocks."""
    with transaction.atomic():
        job = _locked(job_id)
        if job.finished:
            return None
        job.progress = min(max(progress, 0.0), 1.0)
        fields = ["progress"]
        if log:
            job.logs_tail = [*job.logs_tail, log][-LOGS_KEPT:]
            fields.append("logs_tail")
        _changed(job, fields, event="job.progress")
        return job


def complete_job(job_id: Any, store: Callable[[Job], Any], *, actual_cost: Decimal | None = None) -> Job | None:
    """Store the output (``store(job)`` writes the files and the ``Video``) and finish the job."""
    with transaction.atomic():
        job = _locked(job_id)
        if job.finished:
            return None
        store(job)
        if job.preview_id:  # the final replaces its preview: the preview's video goes
            Job.objects.select_for_update().filter(pk=job.preview_id).first()  # a preview finishing now waits
            preview_video = Video.objects.filter(job_id=job.preview_id).first()
            if preview_video is not None:
                _delete_video(preview_video)
        elif Job.objects.filter(preview_id=job.pk, status=JobStatus.COMPLETED).exists():
            # A preview that lands after its final is replaced already.
            stored = Video.objects.filter(job_id=job.pk).first()
            if stored is not None:
                _delete_video(stored)
        _move(job, JobStatus.COMPLETED)
        job.progress, job.queue_position = 1.0, None
        job.finished_at = timezone.now()
        job.provider_completed_at = job.provider_completed_at or job.finished_at
        job.actual_cost = actual_cost if actual_cost is not None else job.estimated_cost
        _changed(job, ["status", "progress", "queue_position", "finished_at", "provider_completed_at", "actual_cost"])
    logger.info("job %s completed (%s)", job.pk, job.model_id)
    return job


MAX_DOWNLOAD_ATTEMPTS = 8


def download_failed(job_id: Any, error: ProviderError, retry_in: float) -> None:
    """The provider has the video but fetching it failed: try again later, nothing is lost.

    The job stays ``running`` (``manage.py download_videos`` fetches such videos at once);
    after ``MAX_DOWNLOAD_ATTEMPTS`` (about two hours of backing off) it fails as
    ``download_failed``, naming the provider's request id.
    """
    with transaction.atomic():
        job = _locked(job_id)
        if job.finished:
            return
        job.download_attempts += 1
        if job.provider_completed_at is None:  # a webhook said done: no poll recorded it
            job.provider_completed_at = timezone.now()
        if job.status == JobStatus.SUBMITTED:
            _move(job, JobStatus.RUNNING)
            job.started_at = job.started_at or timezone.now()
        if job.download_attempts >= MAX_DOWNLOAD_ATTEMPTS:
            _fail(job, "download_failed", f"The provider finished but its video could not be downloaded "
                                          f"after {job.download_attempts} tries ({error.message}). The result "
                                          f"stays with the provider as request {job.provider_request_id}.")
            return
        job.logs_tail = [*job.logs_tail, f"downloading the video failed ({error.message}); trying again"][-LOGS_KEPT:]
        # The next try is due then: a long wait is the sweep's to dispatch (see _dispatch).
        job.next_poll_at = timezone.now() + timezone.timedelta(seconds=retry_in)
        _changed(job, ["download_attempts", "logs_tail", "provider_completed_at", "status", "started_at",
                       "next_poll_at"], event="job.progress")
        _wake_poller(job.backend, retry_in)


def fail_job(job_id: Any, error: ProviderError | None = None, *, error_type: str = "", message: str = "") -> None:
    """Finish the job as failed, keeping the error's type and message."""
    with transaction.atomic():
        job = _locked(job_id)
        if job.finished:
            return
        if error is not None:
            error_type, message = error.kind, error.message
            job.error_details = error.details
            if error.request_id and not job.provider_request_id:
                job.provider_request_id = error.request_id
        _fail(job, error_type or "error", message or "The job failed.")


def _fail(job: Job, error_type: str, message: str) -> None:
    _move(job, JobStatus.FAILED)
    job.error_type, job.error_message = error_type, message
    job.finished_at = timezone.now()
    _changed(job, ["status", "error_type", "error_message", "error_details", "finished_at", "provider_request_id"])
    logger.warning("job %s failed: %s: %s", job.pk, error_type, message)


def cancel_job(job: Job) -> Job:
    """Cancel an unfinished job (a no-op on a finished one); the provider is told on commit."""
    with transaction.atomic():
        job = _locked(job.pk)
        if job.finished:
            return job
        _move(job, JobStatus.CANCELLED)
        job.finished_at, job.queue_position = timezone.now(), None
        _changed(job, ["status", "finished_at", "queue_position"])
        if job.provider_request_id:
            _dispatch_cancel(job)
    return job


def _dispatch_cancel(job: Job) -> None:
    """Tell the provider to stop ``job``'s request; the task gets everything it needs as
    arguments, so it still reaches the provider when the row is deleted before it runs."""
    _dispatch("cancel_at_provider", str(job.pk), job.model_id, job.provider_request_id)


def delete_job(job: Job) -> None:
    """Cancel it if it runs, then remove the job and its files."""
    if job.status in UNFINISHED:
        cancel_job(job)
    video = getattr(job, "video", None)
    with transaction.atomic():
        if video is not None:
            _delete_video(video)
        Job.objects.filter(pk=job.pk).delete()
        generations.give_back(generations.JOB, str(job.pk))
    notify_user(job.owner_id, "job.deleted", {"job": str(job.pk)})


def delete_video(video: Video) -> None:
    """Remove one of the gallery's videos and its files. A job's video goes with its job (a
    finished job without its video would be a hole in the gallery); a realtime recording or
    an imported video goes alone."""
    if video.job_id is not None:
        job = Job.objects.filter(pk=video.job_id).select_related("video").first()
        if job is not None:
            delete_job(job)
            return
    video_id, owner_id = str(video.pk), video.owner_id
    with transaction.atomic():
        _delete_video(video)
    notify_user(owner_id, "video.deleted", {"video": video_id})


def _delete_video(video: Video) -> None:
    """Remove the ``Video`` row now and its files once the transaction commits."""
    files = [f for f in (video.file, video.thumbnail) if f]
    sidecar = video.file.name.rsplit(".", 1)[0] + ".json" if video.file else None
    video.delete()
    transaction.on_commit(lambda: _remove_files(files, sidecar))


def _remove_files(files: list, sidecar: str | None) -> None:
    from django.core.files.storage import default_storage

    for field in files:
        field.storage.delete(field.name)
    if sidecar and default_storage.exists(sidecar):
        default_storage.delete(sidecar)


def still_waiting(job_id: Any, *, every_s: float) -> None:
    """A task of the job is alive but waiting (for a provider slot): the row is touched, at
    most once per ``every_s`` seconds, so the sweep does not take the job for lost and send a
    second task after it (a backlog of waiting jobs would otherwise grow a message per job per
    sweep). No event: nothing a user sees has changed."""
    now = timezone.now()
    Job.objects.filter(pk=job_id, updated_at__lt=now - timezone.timedelta(seconds=every_s)).update(updated_at=now)


def sweep_jobs(*, remote_lease_s: float, pending_lease_s: float, everything: bool = False) -> dict[str, int]:
    """Put stalled unfinished jobs back on the queue; returns how many of each kind.

    A healthy job's row moves all the time (every poll, every block). One that has not moved
    for its lease lost its message (a worker killed, a broker outage, a task that died on a
    database error, a row created while the broker was down): its next task is dispatched
    again. The tasks are idempotent (a paid submit is never sent twice: ``begin_submit``),
    so a job that was only slow loses nothing. A job with a request id is polled by its
    provider's poller, woken here (once per provider) when such a job is due and stalled, or
    when its provider will call back and its safety poll is due. ``everything``: every
    unfinished job, however fresh (a worker has just started).
    """
    now = timezone.now()
    counts = {"polled": 0, "submitted": 0}
    if everything:  # due now: the poller polls the jobs that are due
        Job.objects.filter(status__in=UNFINISHED).exclude(provider_request_id="").update(next_poll_at=now)
    rows = Job.objects.filter(status__in=UNFINISHED).only("pk", "backend", "status", "provider_request_id",
                                                          "updated_at", "next_poll_at", "webhook_expected")
    pollers: set[str] = set()
    unscheduled: list[Any] = []
    for job in rows.iterator():
        idle = (now - job.updated_at).total_seconds()
        if job.provider_request_id:
            due = job.next_poll_at is None or job.next_poll_at <= now
            if not (everything or (due and (job.webhook_expected or idle > remote_lease_s))):
                continue
            if job.next_poll_at is None:
                unscheduled.append(job.pk)
            pollers.add(job.backend)
            counts["polled"] += 1
            continue
        if not (everything or idle > (pending_lease_s if job.status == JobStatus.PENDING else remote_lease_s)):
            continue
        if not _dispatch_now("videogen.submit_job", (str(job.pk),), None, None):
            break  # the broker is away: the next sweep tries again
        counts["submitted"] += 1
    # The poller polls what is due: a job with no next poll is due now.
    Job.objects.filter(pk__in=unscheduled, next_poll_at__isnull=True).update(next_poll_at=now)
    for backend in sorted(pollers):  # one wake per provider: its poller reads every due job
        polling.wake_poller(backend, force=True, insist=True)
    return counts


# --- provider webhooks ----------------------------------------------------------------------

WEBHOOK_POLL_DEDUPE_S = 60


WEBHOOK_JOB_SALT = "videogen.jobs.webhook-job"


def job_webhook_url(url: str, job_id: Any) -> str:
    """The backend's webhook ``url`` naming the job it is for (``?job=<signed id>``), so a
    webhook still finds its job when the worker died before it stored the request id."""
    token = signing.Signer(salt=WEBHOOK_JOB_SALT).sign(str(job_id))
    return f"{url}{'&' if '?' in url else '?'}{urlencode({'job': token})}"


def provider_finished(backend: str, request_ids: tuple[str, ...], error: ProviderError | None = None,
                      *, job_token: str | None = None) -> Job | None:
    """The provider says a request finished (a verified webhook): short-cut the polling.

    Success fetches the result now (from the provider, as a poll would: the webhook's payload
    is not trusted as the video); ``error`` fails the job with it. Returns the job, or None
    when no job has any of ``request_ids``. A finished job is left alone, and a repeated
    success (providers retry) dispatches no second fetch for ``WEBHOOK_POLL_DEDUPE_S``.
    ``job_token``: the signed job id its URL carried (``job_webhook_url``): a job whose submit
    reached the provider but whose worker died before storing the answer takes the request
    here (``adopt_request``) instead of ending ``interrupted``.
    """
    from django.core.cache import cache

    ids = [rid for rid in request_ids if rid]
    job = Job.objects.filter(backend=backend, provider_request_id__in=ids).only("pk", "status").order_by(
        "created_at").first() if ids else None
    if job is None and ids and job_token:
        try:
            job_id = signing.Signer(salt=WEBHOOK_JOB_SALT).unsign(job_token)
        except signing.BadSignature:
            logger.warning("a %s webhook named a job with a bad signature: ignored", backend)
            return None
        job = adopt_request(job_id, backend, ids[0])
    if job is None:
        return None
    if job.finished:
        return job
    if error is not None:
        fail_job(job.pk, error)
        return job
    if cache.add(f"webhook-poll:{job.pk}", 1, timeout=WEBHOOK_POLL_DEDUPE_S):
        with transaction.atomic():
            _dispatch("fetch_job", str(job.pk))
    return job


def adopt_request(job_id: Any, backend: str, request_id: str) -> Job | None:
    """A verified webhook says ``request_id`` is job ``job_id``'s, and the job's submit began
    but recorded no answer (its worker died inside the provider call, or the database was
    away when the answer came): the job takes the request as if the submit had answered.
    None when the job is not waiting for such an answer (finished, failed as ``interrupted``
    already, or holding a request id)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, backend=backend).first()
        if (job is None or job.status != JobStatus.PENDING or job.provider_request_id
                or job.submit_started_at is None):
            return None
        _move(job, JobStatus.SUBMITTED)
        job.provider_request_id = request_id
        job.submitted_at = job.next_poll_at = timezone.now()
        job.webhook_expected = True
        job.logs_tail = [*job.logs_tail, "the provider's webhook named this job's request: its submit "
                                         "answer was lost (the worker stopped inside the call)"][-LOGS_KEPT:]
        _changed(job, ["status", "provider_request_id", "submitted_at", "next_poll_at", "webhook_expected",
                       "logs_tail"])
    logger.warning("job %s took request %s from the provider's webhook (its submit answer was lost)",
                   job_id, request_id)
    return job


def reconcile_generations() -> int:
    """Give back the ledger rows of jobs that ended or are gone without giving theirs back (a
    row left by a crash between two transactions); returns how many. The sweep runs it."""
    from model_control.models import UnfinishedGeneration

    rows = UnfinishedGeneration.objects.filter(door=generations.JOB)
    refs = list(rows.values_list("ref", flat=True)[:10000])
    alive = {str(pk) for pk in Job.objects.filter(pk__in=refs, status__in=UNFINISHED).values_list("pk", flat=True)}
    stale = [ref for ref in refs if ref not in alive]
    removed = rows.filter(ref__in=stale).delete()[0] if stale else 0
    return removed + generations.forget_expired()
