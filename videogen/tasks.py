"""Celery tasks of a job's life (queue ``default``): submit, poll, finish, cancel.

Thin on purpose: load the row (through a service), make one provider call, hand the answer
to a service. The broker only carries "look at job N"; a task delivered twice, or after a
worker died, finds the row's state and does the right next thing (never a second submit).

Work per provider is bounded across every worker process by cache slots
(``JOB_SUBMIT_CONCURRENCY`` submits, ``JOB_POLL_CONCURRENCY`` polls in flight); a task that
finds none free comes back shortly instead of waiting in a worker.
"""

from __future__ import annotations

import contextlib
import logging
import random
import uuid
from collections.abc import Iterator

from celery.signals import worker_ready
from django.conf import settings

from model_control import generation, limits
from model_control.catalog import LOCAL, catalog
from model_control.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from studio.celery import app
from videogen import gpu_worker, services, storage  # noqa: F401 - gpu_worker: the GPU worker's signals
from videogen.inputs import cdn_url, load_values
from videogen.models import Job

logger = logging.getLogger(__name__)

SLOT_WAIT_S = 0.5


def _slot(kind: str, backend: str) -> tuple[str, int]:
    size = settings.JOB_SUBMIT_CONCURRENCY if kind == "submit" else settings.JOB_POLL_CONCURRENCY
    return f"{kind}:{backend}", size


@contextlib.contextmanager
def _provider_slot(kind: str, backend: str, task, job_id: str) -> Iterator[bool]:
    """Hold one of the provider's ``kind`` slots while the block runs; yields False (and
    re-queues the task a moment later) when none is free."""
    name, size = _slot(kind, backend)
    holder = uuid.uuid4().hex
    if not limits.try_acquire(name, size, holder, lifetime=settings.VIDEO_GENERATION_TIMEOUT):
        task.apply_async((job_id,), countdown=SLOT_WAIT_S * random.uniform(0.8, 1.2))
        yield False
        return
    try:
        yield True
    finally:
        limits.release(name, size, holder)


def _quiet_if_gone(task):
    """A job deleted while its task ran: nothing left to do, nothing to report."""
    import functools

    @functools.wraps(task)
    def run(job_id: str) -> None:
        try:
            task(job_id)
        except services.JobGone:
            logger.info("job %s was deleted while %s worked on it", job_id, task.__name__)

    return run


@app.task(name="videogen.submit_job")
@_quiet_if_gone
def submit_job(job_id: str) -> None:
    """Send the job to its provider, once; its request id is committed with ``submitted``."""
    job = Job.objects.filter(pk=job_id).only("backend", "status").first()
    if job is None or job.finished:
        return
    if job.backend == LOCAL:  # no provider: the job runs on a GPU worker's pipeline
        generate_offline.apply_async((job_id,))
        return
    with _provider_slot("submit", job.backend, submit_job, job_id) as acquired:
        if acquired:
            _submit(job_id)


def _submit(job_id: str) -> None:
    """The paid call itself, inside a submit slot."""
    job = services.begin_submit(job_id)
    if job is None:
        return
    model = catalog().require(job.model_id)
    values = load_values(model, job.input)
    if job.backend == "tenstorrent" and not _media_server():
        _run_legacy(job, model, values)
        return
    try:
        submitted = generation.submit(model, values, timeout=settings.VIDEO_GENERATION_TIMEOUT,
                                      resolve_image=cdn_url,
                                      webhook_url=f"{settings.STUDIO_PUBLIC_URL}/api/webhooks/fal/"
                                      if settings.STUDIO_PUBLIC_URL else None)
    except ProviderError as exc:
        services.fail_job(job_id, exc)
        return
    if submitted.request_id is None:  # a synchronous answer after all
        services.mark_running_sync(job_id)
        _store_and_complete(job_id, submitted.video)
        return
    services.mark_submitted(job_id, submitted.request_id)


def _media_server() -> bool:
    """Whether Tenstorrent is tt-media-server (jobs to poll) rather than the legacy endpoint."""
    url = settings.CLOUD_VIDEO_GENERATION_URL or ""
    return "/v1/videos/generations" in url


def _run_legacy(job: Job, model, values) -> None:
    """Tenstorrent's legacy endpoint answers the POST with the video: run it inside this task."""
    if services.mark_running_sync(job.pk) is None:
        return
    try:
        submitted = generation.submit(model, values, timeout=settings.VIDEO_GENERATION_TIMEOUT)
    except ProviderError as exc:
        services.fail_job(job.pk, exc)
        return
    _store_and_complete(job.pk, submitted.video)


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
    try:
        status = generation.check(model, job.provider_request_id)
    except ProviderUnavailable as exc:  # a blip: poll again, the job is still on the provider
        logger.warning("polling job %s failed: %s", job_id, exc.message)
        services.record_progress(job_id, state="unknown", queue_position=job.queue_position, logs=(),
                                 progress=None, next_poll_in=_interval(job.polls))
        return
    except ProviderError as exc:
        services.fail_job(job_id, exc)
        return
    if status.state != "completed":
        services.record_progress(job_id, state=status.state, queue_position=status.queue_position,
                                 logs=status.logs, progress=status.progress,
                                 next_poll_in=_interval(job.polls))
        return
    services.record_progress(job_id, state="completed", queue_position=None, logs=status.logs,
                             progress=None, next_poll_in=None)
    fetch_video(job_id)


@_quiet_if_gone
def fetch_video(job_id: str) -> None:
    """Fetch the result of a job the provider finished and complete it (retried on a failure)."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.finished or not job.provider_request_id:
        return
    model = catalog().require(job.model_id)
    try:
        video = generation.finish(model, job.provider_request_id, load_values(model, job.input),
                                  timeout=settings.VIDEO_GENERATION_TIMEOUT)
    except (ProviderUnavailable, ProviderTimeout) as exc:  # the video is paid for: keep trying
        retry_in = min(settings.JOB_DOWNLOAD_RETRY_S * 2 ** job.download_attempts, 3600)
        services.download_failed(job_id, exc, retry_in=retry_in)
        return
    except ProviderError as exc:
        services.fail_job(job_id, exc)
        return
    _store_and_complete(job_id, video)


def _interval(polls: int) -> float:
    """Seconds to the next poll: from VIDEO_POLL_INTERVAL, x1.5 a poll, at most 5 s."""
    return min(settings.VIDEO_POLL_INTERVAL * (1.5 ** polls), 5.0)


def _store_and_complete(job_id, video: generation.GeneratedVideo) -> None:
    def store(job: Job) -> None:
        parameters = {"job": str(job.pk), "model": job.model_id, "backend": job.backend,
                      "request_id": job.provider_request_id or None, "request": job.input,
                      "provider_input": {k: v for k, v in video.fields.items()
                                         if isinstance(v, (str, int, float, bool))}}
        storage.save_video(job.owner_id, f"{storage.slug(job.model_id)}-{str(job.pk)[:8]}", video.content,
                           parameters, job=job)

    services.complete_job(job_id, store)


@app.task(name="videogen.gpu.run_realtime_session")
def run_realtime_session(session_id: str) -> None:
    """Stream one realtime session on this process's warm pipeline (queue ``gpu``).

    Acknowledged at the end like every task (so a busy GPU worker reserves no second
    session that another GPU could take); a delivery after a worker died finds the session
    no longer ``queued`` and does nothing: a live session is over, not started again."""
    from videogen.realtime.producer import run_session

    run_session(session_id)


@app.task(name="videogen.cancel_at_provider")
def cancel_at_provider(job_id: str) -> None:
    """Tell the provider to stop a cancelled job (the job is cancelled here already)."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or not job.provider_request_id:
        return
    try:
        answer = generation.cancel(catalog().require(job.model_id), job.provider_request_id)
        logger.info("cancelled job %s at the provider: %s", job_id, answer)
    except ProviderError as exc:
        logger.warning("cancelling job %s at the provider failed: %s", job_id, exc.message)


# --- offline jobs on the local Krea pipeline (queue gpu) -------------------------------------------

# A running offline job whose row has not changed for this long (every block changes it) lost
# its worker and is run again.
LOCAL_RUN_LEASE_S = 120.0


@app.task(name="videogen.gpu.generate_offline")
@_quiet_if_gone
def generate_offline(job_id: str) -> None:
    """Run an offline job (backend ``local``) on this process's warm pipeline (queue ``gpu``).

    The pipeline comes from ``videogen.pipeline_host`` (loaded once per process, before the
    job is claimed); the job is claimed once (``services.begin_local_run``), reports progress
    after every block, stops between blocks when it is cancelled, fails with the pipeline's
    error, and its MP4 is stored like every other job's video.
    """
    from videogen import offline
    from videogen.pipeline_host import host, is_out_of_memory

    job = Job.objects.filter(pk=job_id).only("backend", "status").first()
    if job is None or job.finished or job.backend != LOCAL:
        return
    try:
        loaded = host.get()
    except Exception as exc:  # noqa: BLE001 - missing weights, no CUDA, out of memory: the job says which
        logger.exception("the local pipeline cannot load for job %s", job_id)
        services.fail_job(job_id, error_type="unavailable",
                          message=f"The local pipeline cannot run on this worker: {exc}")
        return
    job = services.begin_local_run(job_id, lease_s=LOCAL_RUN_LEASE_S)
    if job is None:
        return
    model = catalog().require(job.model_id)
    values = {param.name: param.default for param in model.params if param.default is not None}
    values.update(load_values(model, job.input))
    try:
        width, height = (int(side) for side in str(values["resolution"]).split("x"))
        plan = offline.plan(offline.OfflineRequest(prompt=values.get("prompt"), width=width, height=height,
                                                   num_frames=values["num_frames"], seed=values["seed"],
                                                   steps=values["steps"]), loaded.session.config)
    except (offline.OfflineError, KeyError, ValueError) as exc:
        services.fail_job(job_id, error_type="rejected", message=f"The local pipeline cannot make this video: {exc}")
        return

    def on_block(done: int, total: int, block) -> bool:
        log = f"block {done}/{total}: {len(block.frames)} frames in {block.timings.get('total', 0.0):.0f} ms"
        return services.record_local_progress(job_id, progress=done / total, log=log) is not None

    failure = None
    try:
        with host.running(f"job {job_id}"):
            result = offline.generate(loaded.session, plan, on_block=on_block)
    except services.JobGone:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. CUDA out of memory: the job fails saying so
        if is_out_of_memory(exc):
            failure = ("out_of_memory", f"The GPU ran out of memory making a {width}x{height} video; "
                                        "a smaller size needs less.")
        else:
            logger.exception("offline job %s failed in the pipeline", job_id)
            failure = ("failed", f"The local pipeline failed: {type(exc).__name__}: {exc}")
    if failure is not None:  # outside the except block: its traceback no longer holds the tensors
        if failure[0] == "out_of_memory":
            host.recover_from_out_of_memory()
        services.fail_job(job_id, error_type=failure[0], message=failure[1])
        return
    if result.stopped:
        logger.info("offline job %s stopped after block %d of %d", job_id, result.blocks, plan.blocks)
        return
    stats = result.stats()
    fields = {**{k: v for k, v in plan.parameters().items() if not isinstance(v, list)},
              "denoising_steps": ",".join(str(s) for s in plan.denoising_steps), "pipeline": loaded.name,
              "random_weights": loaded.random_weights, "device": loaded.device, "attention": loaded.attention,
              "generation_fps": stats["fps"], "ttff_s": stats["ttff_s"], "block_ms_p50": stats["block_ms_p50"],
              "block_ms_p90": stats["block_ms_p90"]}
    _store_and_complete(job_id, generation.GeneratedVideo(result.content, "video/mp4", job.model_id, LOCAL,
                                                          None, fields))


@worker_ready.connect
def _recover_on_start(**kwargs) -> None:
    """A worker starts: put unfinished jobs back on the queue (jobs survive crashed workers)."""
    counts = services.recover_jobs()
    if any(counts.values()):
        logger.info("recovered unfinished jobs: %s", counts)
