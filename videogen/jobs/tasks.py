"""Celery tasks of a job's life, written once against the backend port (docs/jobs.md).

Thin on purpose: load the row (through a service), make one backend call, hand the answer to
a service. The broker only carries "look at job N"; a task delivered twice, or after a
worker died, finds the row's state and does the right next thing (never a second submit).
No task asks which backend it holds, only what shape it has:

- a ``RemoteBackend``: ``submit_job`` (the paid call, once) -> ``poll_job`` (``check``, backing
  off; a webhook short-cuts it) -> ``fetch`` and store; ``cancel_at_provider``;
- a ``WorkerBackend``: ``submit_job`` hands the job to ``run_job`` on the backend's queue,
  which claims it once and runs it with progress after every step.

Work per remote backend is bounded across every worker process by cache slots
(``JOB_SUBMIT_CONCURRENCY`` submits, ``JOB_POLL_CONCURRENCY`` polls in flight); a task that
finds none free comes back shortly instead of waiting in a worker. ``sweep_jobs`` (beat)
re-dispatches jobs whose row stopped moving, so no job waits for a worker restart.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
from collections.abc import Iterator

from celery.signals import worker_ready
from django.conf import settings

from model_control import backends
from model_control.backends import GeneratedVideo, RemoteBackend, WorkerBackend, catalog
from model_control.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from runtime import slots
from runtime.celery import app
from videogen.gallery import store
from videogen.jobs import services
from videogen.jobs.inputs import image_resolver, load_values
from videogen.models import Job

logger = logging.getLogger(__name__)

SLOT_WAIT_S = 0.5


@contextlib.contextmanager
def _provider_slot(kind: str, backend: str, task, job_id: str) -> Iterator[bool]:
    """Hold one of the backend's ``kind`` slots while the block runs (a lease renewed while it
    runs, so a killed worker's slot frees itself within ``JOB_SLOT_LEASE_S``); yields False
    (and re-queues the task a moment later) when none is free."""
    size = settings.JOB_SUBMIT_CONCURRENCY if kind == "submit" else settings.JOB_POLL_CONCURRENCY
    with slots.held(f"{kind}:{backend}", size, settings.JOB_SLOT_LEASE_S) as acquired:
        if not acquired:
            task.apply_async((job_id,), countdown=SLOT_WAIT_S * random.uniform(0.8, 1.2))
        yield acquired


def _quiet_if_gone(task):
    """A job deleted while its task ran: nothing left to do, nothing to report."""

    @functools.wraps(task)
    def run(job_id: str, *args) -> None:
        try:
            task(job_id, *args)
        except services.JobGone:
            logger.info("job %s was deleted while %s worked on it", job_id, task.__name__)

    return run


@app.task(name="videogen.submit_job")
@_quiet_if_gone
def submit_job(job_id: str) -> None:
    """Send the job to its backend, once: a request id is committed with ``submitted``; a
    worker backend gets the job on its own queue."""
    job = Job.objects.filter(pk=job_id).only("backend", "status").first()
    if job is None or job.finished:
        return
    backend = backends.backend(job.backend)
    if isinstance(backend, WorkerBackend):
        run_job.apply_async((job_id,), queue=backend.queue)
        return
    with _provider_slot("submit", backend.name, submit_job, job_id) as acquired:
        if acquired:
            _submit(job_id, backend)


def _submit(job_id: str, backend: RemoteBackend) -> None:
    """The paid call itself, inside a submit slot."""
    job = services.begin_submit(job_id)
    if job is None:
        return
    model = catalog().require(job.model_id)
    public = settings.STUDIO_PUBLIC_URL
    webhook_url = backend.webhook_url(public) if public else None
    try:
        submitted = backend.submit(model, load_values(model, job.input), timeout=settings.VIDEO_GENERATION_TIMEOUT,
                                   resolve_image=image_resolver(backend), webhook_url=webhook_url)
    except ProviderError as exc:
        services.fail_job(job_id, exc)
        return
    if submitted.request_id is None:  # the provider answered with the video itself
        if services.mark_answered_inline(job_id) is not None:
            _store_and_complete(job_id, submitted.video)
        return
    services.mark_submitted(job_id, submitted.request_id, webhook=webhook_url is not None,
                            first_poll_in=_interval(0, webhook_url is not None))


@app.task(name="videogen.poll_job")
@_quiet_if_gone
def poll_job(job_id: str) -> None:
    """Ask the provider once; finish the job when it is done, else come back later (backing off)."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.finished or not job.provider_request_id:
        return
    with _provider_slot("poll", job.backend, poll_job, job_id) as acquired:
        if acquired:
            _poll(job)


def _poll(job: Job) -> None:
    """One status call, inside a poll slot."""
    job_id = str(job.pk)
    model = catalog().require(job.model_id)
    backend = backends.backend(job.backend)
    try:
        status = backend.check(model, job.provider_request_id)
    except ProviderUnavailable as exc:  # a blip: poll again, the job is still on the provider
        logger.warning("polling job %s failed: %s", job_id, exc.message)
        services.record_progress(job_id, state="unknown", queue_position=job.queue_position, logs=(),
                                 progress=None, next_poll_in=_interval(job.polls + 1, job.webhook_expected))
        return
    except ProviderError as exc:
        services.fail_job(job_id, exc)
        return
    if status.state != "completed":
        services.record_progress(job_id, state=status.state, queue_position=status.queue_position,
                                 logs=status.logs, progress=status.progress,
                                 next_poll_in=_interval(job.polls + 1, job.webhook_expected))
        return
    services.record_progress(job_id, state="completed", queue_position=None, logs=status.logs,
                             progress=None, next_poll_in=None)
    fetch_video(job_id)


@app.task(name="videogen.fetch_job")
@_quiet_if_gone
def fetch_job(job_id: str) -> None:
    """The provider said it finished (a verified webhook): record it and fetch the result now."""
    job = Job.objects.filter(pk=job_id).only("status", "provider_request_id").first()
    if job is None or job.finished or not job.provider_request_id:
        return
    services.record_progress(job_id, state="completed", queue_position=None, logs=(), progress=None,
                             next_poll_in=None)
    fetch_video(job_id)


@_quiet_if_gone
def fetch_video(job_id: str) -> None:
    """Fetch the result of a job the provider finished and complete it (retried on a failure;
    ``manage.py download_videos`` calls it directly)."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.finished or not job.provider_request_id:
        return
    model = catalog().require(job.model_id)
    backend = backends.backend(job.backend)
    try:
        video = backend.fetch(model, job.provider_request_id, load_values(model, job.input),
                              timeout=settings.VIDEO_GENERATION_TIMEOUT)
    except (ProviderUnavailable, ProviderTimeout) as exc:  # the video is paid for: keep trying
        retry_in = min(settings.JOB_DOWNLOAD_RETRY_S * 2 ** job.download_attempts, 3600)
        services.download_failed(job_id, exc, retry_in=retry_in)
        return
    except ProviderError as exc:
        services.fail_job(job_id, exc)
        return
    _store_and_complete(job_id, video)


def _interval(polls: int, webhook: bool = False) -> float:
    """Seconds before poll number ``polls`` (0: the first, after the submit).

    Without a webhook: from ``VIDEO_POLL_INTERVAL``, x1.5 a poll, at most 5 s (fal's own
    client polls every 0.1 s). With one, polling is the safety net for a lost callback: from
    ``JOB_WEBHOOK_POLL_INTERVAL``, x1.5 a poll, at most 60 s."""
    if webhook:
        return min(settings.JOB_WEBHOOK_POLL_INTERVAL * (1.5 ** polls), 60.0)
    if polls == 0:
        return 0.0
    return min(settings.VIDEO_POLL_INTERVAL * (1.5 ** (polls - 1)), 5.0)


def _store_and_complete(job_id, video: GeneratedVideo) -> None:
    def save(job: Job) -> None:
        parameters = {"job": str(job.pk), "model": job.model_id, "backend": job.backend,
                      "request_id": job.provider_request_id or None, "request": job.input,
                      "provider_input": {k: v for k, v in video.fields.items()
                                         if isinstance(v, (str, int, float, bool))}}
        store.save_video(job.owner_id, f"{store.slug(job.model_id)}-{str(job.pk)[:8]}", video.content,
                         parameters, job=job)

    services.complete_job(job_id, save)


@app.task(name="videogen.cancel_at_provider")
def cancel_at_provider(job_id: str, model_id: str, request_id: str) -> None:
    """Tell the provider to stop a cancelled (or deleted) job's request: everything needed
    comes as arguments, so the row may be gone already."""
    model = catalog().get(model_id)
    if model is None:
        return
    backend = backends.backend_of(model)
    if not isinstance(backend, RemoteBackend):
        return
    try:
        answer = backend.cancel(model, request_id)
        logger.info("cancelled job %s at the provider: %s", job_id, answer)
    except ProviderError as exc:
        logger.warning("cancelling job %s at the provider failed: %s", job_id, exc.message)


@app.task(name="videogen.gpu.run_job")
@_quiet_if_gone
def run_job(job_id: str) -> None:
    """Run a worker backend's job here (the local pipeline on a GPU worker: queue ``gpu``).

    The backend prepares first (loads its model once per process, before the job is
    claimed); the job is claimed once (``services.begin_worker_run``), reports progress after
    every step, stops between steps when it is cancelled, fails with the backend's error,
    and its video is stored like every other job's.
    """
    job = Job.objects.filter(pk=job_id).only("backend", "status").first()
    if job is None or job.finished:
        return
    backend = backends.backend(job.backend)
    if not isinstance(backend, WorkerBackend):
        return
    try:
        backend.prepare()
    except ProviderError as exc:
        services.fail_job(job_id, exc)
        return
    job = services.begin_worker_run(job_id, lease_s=backend.lease_s, queue=backend.queue)
    if job is None:
        return
    model = catalog().require(job.model_id)

    def progress(done: int, total: int, log: str | None) -> bool:
        return services.record_worker_progress(job_id, progress=done / total, log=log) is not None

    try:
        video = backend.run(model, load_values(model, job.input), progress=progress)
    except services.JobGone:
        raise
    except ProviderError as exc:
        services.fail_job(job_id, exc)
        return
    if video is None:
        logger.info("job %s stopped before it finished (cancelled)", job_id)
        return
    _store_and_complete(job_id, video)


@app.task(name="videogen.sweep_jobs")
def sweep_jobs() -> None:
    """Re-dispatch the jobs whose row stopped moving (beat, every ``STUDIO_JOB_SWEEP_S``)."""
    counts = services.sweep_jobs(remote_lease_s=settings.STUDIO_JOB_LEASE_S,
                                 pending_lease_s=settings.STUDIO_JOB_PENDING_LEASE_S)
    if any(counts.values()):
        logger.info("job sweep: re-dispatched %s", counts)


@worker_ready.connect
def _recover_on_start(**kwargs) -> None:
    """A worker starts: every unfinished job gets its next task (the sweep would, later)."""
    counts = services.sweep_jobs(remote_lease_s=0, pending_lease_s=0, everything=True)
    if any(counts.values()):
        logger.info("recovered unfinished jobs: %s", counts)
