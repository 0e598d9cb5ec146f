"""Celery tasks of a job's life, written once against the backend port (docs/jobs.md).

Thin on purpose: load the row (through a service), make one backend call, hand the answer to
a service. The broker only carries "look at job N"; a task delivered twice, or after a
worker died, finds the row's state and does the right next thing (never a second submit).
No task asks which backend it holds, only what shape it has:

- a ``RemoteBackend``: ``submit_job`` (the paid call, once) -> ``poll_job`` (``check``, backing
  off; a webhook short-cuts it) -> ``fetch`` and store; ``cancel_at_provider``;
- a ``WorkerBackend``: ``submit_job`` hands the job to ``run_job`` on the backend's queue,
  which claims it once and runs it with progress after every step.

Work per remote backend is bounded across every worker process by leased slots
(``JOB_SUBMIT_CONCURRENCY`` submits, ``JOB_POLL_CONCURRENCY`` polls in flight); a job whose
task finds none free stands in line, and the task that frees a slot hands it over and starts
the waiting job's task again (nothing is re-queued on a timer, nothing waits in a worker).
``sweep_jobs`` (beat) re-dispatches jobs whose row stopped moving, so no job waits for a
worker restart, and hands slots whose holder vanished to the line.

Outages (docs/deployment.md, "Faults"): a transient database or broker error retries the
task with backoff (``runtime.celery.RETRY_TRANSIENT``). The one answer that cannot be asked
for again, the paid submit's, is stored with patience (``_store_answer``): the worker keeps
trying for ``PAID_ANSWER_PATIENCE_S`` rather than drop it. A job's webhook URL names the job,
so a submit answer lost with its worker still reaches the job (``services.adopt_request``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from celery.signals import worker_ready
from django import db
from django.conf import settings

from model_control import backends
from model_control.backends import (
    GeneratedVideo,
    ProviderStatus,
    RemoteBackend,
    WorkerBackend,
    catalog,
)
from model_control.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from runtime import slots
from runtime.celery import RETRY_TRANSIENT, app
from runtime.locks import LockTimeout, named_lock
from videogen.gallery import store
from videogen.jobs import polling, services
from videogen.jobs.inputs import image_resolver, load_values
from videogen.models import FINISHED, Job

logger = logging.getLogger(__name__)

# A poller run (``poll_backend``) reads at most POLLER_BATCH due jobs at a time and lasts at
# most POLLER_RUN_S (then its task ends and the next run is sent at once, so the other tasks
# of a busy worker get their turn); its slot's lease (renewed every third of it while the run
# lasts) is how soon a dead worker's poller is replaced.
POLLER_RUN_S = 5.0
POLLER_BATCH = 200
POLLER_LEASE_S = 10.0
# How long a worker keeps trying to store a paid submit's answer while the database is away
# (seconds), and the longest pause between two tries.
PAID_ANSWER_PATIENCE_S = 600.0
PAID_ANSWER_RETRY_MAX_S = 5.0

T = TypeVar("T")


def _store_answer(store: Callable[..., T], *args, **kwargs) -> T:
    """``store(*args, **kwargs)``, tried again while the database is away: the provider's
    answer to a paid call exists only in this worker's memory, and a retried task would not
    get it again (the submit is never re-sent)."""
    deadline = time.monotonic() + PAID_ANSWER_PATIENCE_S
    pause = 0.25
    while True:
        try:
            return store(*args, **kwargs)
        except (db.OperationalError, db.InterfaceError) as exc:
            if time.monotonic() + pause > deadline:
                raise
            logger.warning("storing a provider's answer failed (%s); trying again in %.1f s", exc, pause)
            db.close_old_connections()  # give the broken connection back; the next try takes a fresh one
            time.sleep(pause)
            pause = min(pause * 2, PAID_ANSWER_RETRY_MAX_S)


@dataclass
class _Turn:
    """A provider slot handed to this task by the holder before it (``runtime.slots``): the
    slot's name and the holder name it is leased to; ``taken`` once the task went for it."""

    name: str
    holder: str
    taken: bool = False


def _submit_slot_name(backend: str) -> str:
    """The provider slots a job stands in line for: ``JOB_SUBMIT_CONCURRENCY`` per backend; a
    slot handed to a job in line wakes its submit task (``_wake``)."""
    return f"submit:{backend}"


def _wake(name: str) -> slots.HandOn:
    """How a job standing in line for slot ``name`` is woken once a slot is handed to it: its
    submit task again, told the holder name the slot is leased to."""

    def wake(job_id: str, holder: str) -> None:
        app.tasks["videogen.submit_job"].apply_async((job_id, [name, holder]))

    return wake


def _pass_unused_turn(run):
    """A task woken with a slot handed to it (``turn``) that ends without going for it (the
    job finished or was deleted meanwhile, a duplicate poll) passes the slot on to the next
    in line, rather than leaving it and the line behind it idle until its lease runs out."""

    @functools.wraps(run)
    def task(job_id: str, turn: list[str] | None = None) -> None:
        handed = _Turn(*turn) if turn else None
        try:
            run(job_id, handed)
        finally:
            if handed is not None and not handed.taken:
                slots.pass_on(handed.name, handed.holder, settings.JOB_SUBMIT_CONCURRENCY, settings.JOB_SLOT_LEASE_S,
                              _wake(handed.name))

    return task


@contextlib.contextmanager
def _submit_slot(backend: str, job_id: str, turn: _Turn | None) -> Iterator[bool]:
    """Hold one of the backend's submit slots while the block runs (a lease renewed while it
    runs, so a killed worker's slot frees itself within ``JOB_SLOT_LEASE_S``); yields False
    when none is free, the job then standing in line: the release that frees a slot hands it
    to the first job in line and starts its task again (``_wake``), so nothing polls for one."""
    name = _submit_slot_name(backend)
    holder = None
    if turn is not None and turn.name == name:
        holder, turn.taken = turn.holder, True
    with slots.held(name, settings.JOB_SUBMIT_CONCURRENCY, settings.JOB_SLOT_LEASE_S, holder=holder, wait_as=job_id,
                    hand_on=_wake(name)) as acquired:
        if not acquired:
            # Alive, only waiting: the sweep must not send a second task after this one.
            services.still_waiting(job_id, every_s=min(settings.STUDIO_JOB_LEASE_S,
                                                       settings.STUDIO_JOB_PENDING_LEASE_S) / 3)
        yield acquired


def _hand_free_slots() -> int:
    """Hand the provider slots that freed themselves (a holder's lease ran out: its worker
    died, or a woken task was lost) to the jobs still in line for them; how many were."""
    woken = 0
    for backend in backends.backends():
        if not isinstance(backend, RemoteBackend):
            continue
        name = _submit_slot_name(backend.name)
        wake = _wake(name)
        for job_id, holder in slots.hand_free(name, settings.JOB_SUBMIT_CONCURRENCY, settings.JOB_SLOT_LEASE_S):
            wake(job_id, holder)
            woken += 1
    return woken


def _quiet_if_gone(task):
    """A job deleted while its task ran: nothing left to do, nothing to report."""

    @functools.wraps(task)
    def run(job_id: str, *args) -> None:
        try:
            task(job_id, *args)
        except services.JobGone:
            logger.info("job %s was deleted while %s worked on it", job_id, task.__name__)

    return run


@app.task(name="videogen.submit_job", **RETRY_TRANSIENT)
@_pass_unused_turn
@_quiet_if_gone
def submit_job(job_id: str, turn: _Turn | None = None) -> None:
    """Send the job to its backend, once: a request id is committed with ``submitted``; a
    worker backend gets the job on its own queue. ``turn``: a submit slot handed to it."""
    found = Job.objects.filter(pk=job_id).values_list("backend", "status").first()
    if found is None or found[1] in FINISHED:
        return
    backend = backends.backend(found[0])
    if isinstance(backend, WorkerBackend):
        run_job.apply_async((job_id,), queue=backend.queue)
        return
    with _submit_slot(backend.name, job_id, turn) as acquired:
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
    if webhook_url:
        webhook_url = services.job_webhook_url(webhook_url, job_id)
    try:
        submitted = backend.submit(model, load_values(model, job.input), timeout=settings.VIDEO_GENERATION_TIMEOUT,
                                   resolve_image=image_resolver(backend), webhook_url=webhook_url)
    except ProviderError as exc:
        _store_answer(services.fail_job, job_id, exc)
        return
    if submitted.request_id is None:  # the provider answered with the video itself
        if _store_answer(services.mark_answered_inline, job_id) is not None:
            _store_answer(_store_and_complete, job_id, submitted.video)
        return
    _store_answer(services.mark_submitted, job_id, submitted.request_id, webhook=webhook_url is not None,
                  first_poll_in=_interval(0, webhook_url is not None))


@app.task(name="videogen.poll_backend", **RETRY_TRANSIENT)
def poll_backend(backend_name: str, token: int | None = None, insist: bool = False) -> None:
    """One run of the provider's poller: one at a time per backend across the studio (a slot
    of one, leased for ``POLLER_LEASE_S`` and renewed while it runs, so a killed worker's
    poller is replaced within that lease).

    A run reads the backend's jobs due now (or within half a poll interval, so that jobs due
    a moment apart share a run) in one query, asks the provider about them in up to
    ``JOB_POLL_CONCURRENCY`` threads (the status calls only), records the answers here and
    sends each finished job to ``fetch_job``; it reads again until nothing is due or
    ``POLLER_RUN_S`` has passed, then ends, having set its next run for the first job still
    due. It never sleeps, so a worker with one execution slot is not held between polls. No
    message, slot or task run per poll: one message per run. ``token``: the alarm that sent
    it (``polling.wake_poller``), cleared now that it went off. ``insist`` (the sweep): when
    another poller seems to run, look again once its lease would have run out (it may have
    died)."""
    try:
        backend = backends.backend(backend_name)
    except backends.UnknownBackend:
        return
    if not isinstance(backend, RemoteBackend):
        return
    if token:
        polling.poller_alarm_went_off(backend.name, token)
    with slots.held(polling.poller_slot(backend.name), 1, POLLER_LEASE_S) as running:
        if running:
            _poll_due(backend, deadline=time.monotonic() + POLLER_RUN_S)
    if running:
        polling.schedule_poller(backend.name)  # after letting go of the slot: no wake is lost
    elif insist:
        polling.wake_poller(backend.name, POLLER_LEASE_S, force=True)


def _poll_due(backend: RemoteBackend, *, deadline: float) -> None:
    ahead = polling.poller_slack_s()
    with ThreadPoolExecutor(settings.JOB_POLL_CONCURRENCY, thread_name_prefix=f"poll-{backend.name}") as asking:
        while time.monotonic() < deadline:
            due = polling.due_polls(backend.name, ahead_s=ahead, limit=POLLER_BATCH)
            if not due:
                return
            quiet: list[tuple[Job, float]] = []
            for job, answer in zip(due, asking.map(functools.partial(_ask, backend), due), strict=True):
                _record(job, answer, quiet)
            services.record_quiet_polls(quiet)


def _ask(backend: RemoteBackend, job: Job) -> ProviderStatus | ProviderError:
    """One status call, on one of the poller's threads (which give back any database
    connection a backend took: they end with the run)."""
    try:
        return backend.check(catalog().require(job.model_id), job.provider_request_id)
    except ProviderError as exc:
        return exc
    finally:
        db.connection.close()


def _record(job: Job, answer: ProviderStatus | ProviderError, quiet: list[tuple[Job, float]]) -> None:
    """A status call's answer, stored; a finished job goes to ``fetch_job``. An answer that
    changes nothing but the job's next poll joins ``quiet``, stored together
    (``services.record_quiet_polls``)."""
    job_id = str(job.pk)
    if isinstance(answer, ProviderUnavailable):  # a blip: poll again, the job is still on the provider
        logger.warning("polling job %s failed: %s", job_id, answer.message)
        quiet.append((job, _interval(job.polls + 1, job.webhook_expected)))
        return
    if not isinstance(answer, ProviderError) and services.changes_nothing(
            job, state=answer.state, queue_position=answer.queue_position, logs=answer.logs, progress=answer.progress):
        quiet.append((job, _interval(job.polls + 1, job.webhook_expected)))
        return
    try:
        if isinstance(answer, ProviderError):
            services.fail_job(job_id, answer)
        elif answer.state != "completed":
            services.record_progress(job_id, state=answer.state, queue_position=answer.queue_position,
                                     logs=answer.logs, progress=answer.progress,
                                     next_poll_in=_interval(job.polls + 1, job.webhook_expected))
        elif services.record_progress(job_id, state="completed", queue_position=None, logs=answer.logs,
                                      progress=None, next_poll_in=None) is not None:
            fetch_job.apply_async((job_id,))
    except services.JobGone:
        logger.info("job %s was deleted while it was polled", job_id)


@app.task(name="videogen.poll_job")
def poll_job(job_id: str, *args) -> None:
    """A message from before the per-provider poller: wake the job's poller instead."""
    backend = Job.objects.filter(pk=job_id).values_list("backend", flat=True).first()
    if backend is not None:
        polling.wake_poller(backend)


@app.task(name="videogen.fetch_job", **RETRY_TRANSIENT)
@_quiet_if_gone
def fetch_job(job_id: str) -> None:
    """The provider said it finished (a verified webhook): record it and fetch the result now."""
    fetch_video(job_id)


@_quiet_if_gone
def fetch_video(job_id: str) -> None:
    """Fetch the result of a job the provider finished and complete it (retried on a failure;
    ``manage.py download_videos`` calls it directly)."""
    job = Job.objects.filter(pk=job_id).only("status", "provider_request_id", "model_id", "backend", "input",
                                             "download_attempts").first()
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

    Without a webhook: every ``VIDEO_POLL_INTERVAL`` (0.1 s, as fal's own client polls) for the
    first ``JOB_DENSE_POLL_S`` seconds, where quick jobs and early failures land, then x1.5 a
    poll up to 5 s. With one, polling is the safety net for a lost callback: from
    ``JOB_WEBHOOK_POLL_INTERVAL``, x1.5 a poll, at most 60 s."""
    if webhook:
        return min(settings.JOB_WEBHOOK_POLL_INTERVAL * (1.5 ** polls), 60.0)
    if polls == 0:
        return 0.0
    base = settings.VIDEO_POLL_INTERVAL
    dense = max(int(settings.JOB_DENSE_POLL_S / base), 1)
    return min(base * (1.5 ** max(polls - dense, 0)), 5.0)


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


@app.task(name="videogen.gpu.run_job", **RETRY_TRANSIENT)
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
    """Re-dispatch the jobs whose row stopped moving, and hand provider slots that freed
    themselves to the jobs in line for them (beat, every ``STUDIO_JOB_SWEEP_S``); one sweep at
    a time across the studio (a second one now would only send every task twice)."""
    try:
        with named_lock("job-sweep", timeout=max(settings.STUDIO_JOB_SWEEP_S, 10.0), wait=0):
            counts = services.sweep_jobs(remote_lease_s=settings.STUDIO_JOB_LEASE_S,
                                         pending_lease_s=settings.STUDIO_JOB_PENDING_LEASE_S)
            counts["handed a slot"] = _hand_free_slots()
    except LockTimeout:
        return
    if any(counts.values()):
        logger.info("job sweep: re-dispatched %s", counts)
    if reconciled := services.reconcile_generations():
        logger.info("job sweep: %d generations no longer count against their owner's cap", reconciled)


@worker_ready.connect
def _recover_on_start(**kwargs) -> None:
    """A worker starts: every unfinished job gets its next task (the sweep would, later)."""
    counts = services.sweep_jobs(remote_lease_s=0, pending_lease_s=0, everything=True)
    if any(counts.values()):
        logger.info("recovered unfinished jobs: %s", counts)
