"""Background execution of Celery tasks inside the web process (the embedded mode).

One thread pool per Celery queue: ``default`` with ``STUDIO_EMBEDDED_WORKERS`` threads,
``gpu`` with one thread, as a GPU worker runs one session at a time. Tasks run through
``Task.apply`` so they see the same request context, retries and signals as in a worker.
"""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from celery import Task
from django.conf import settings
from django.db import close_old_connections, connections

logger = logging.getLogger(__name__)


class EmbeddedResult:
    """What ``delay()`` returns in the embedded mode: the task id and a future."""

    def __init__(self, task_id: str, future: Future):
        self.id = self.task_id = task_id
        self.future = future

    def ready(self) -> bool:
        return self.future.done()

    def get(self, timeout: float | None = None) -> Any:
        return self.future.result(timeout)


class EmbeddedExecutor:
    """Thread pools, one per Celery queue, that run tasks in this process."""

    def __init__(self, default_threads: int):
        self._pools = {
            "default": ThreadPoolExecutor(default_threads, thread_name_prefix="studio-default"),
            "gpu": ThreadPoolExecutor(1, thread_name_prefix="studio-gpu"),
        }

    @property
    def threads(self) -> dict[str, int]:
        return {queue: pool._max_workers for queue, pool in self._pools.items()}

    def submit(self, task: Task, args: tuple, kwargs: dict, queue: str, task_id: str | None,
               countdown: float | None = None, retries: int = 0) -> EmbeddedResult:
        """Run ``task`` on ``queue``'s threads, after ``countdown`` seconds when given
        (``retries``: how many tries came before, as ``Task.retry`` counts them)."""
        if queue not in self._pools:
            raise ValueError(f"unknown queue {queue!r}; known: {', '.join(self._pools)}")
        task_id = task_id or str(uuid.uuid4())
        if countdown and countdown > 0:
            future: Future = Future()

            def later() -> None:
                try:
                    inner = self._pools[queue].submit(self._run, task, args, kwargs, task_id, retries)
                except RuntimeError as exc:  # shut down meanwhile
                    future.set_exception(exc)
                    return
                inner.add_done_callback(lambda done: _copy_outcome(done, future))

            timer = threading.Timer(countdown, later)
            timer.daemon = True
            timer.start()
            return EmbeddedResult(task_id, future)
        future = self._pools[queue].submit(self._run, task, args, kwargs, task_id, retries)
        return EmbeddedResult(task_id, future)

    @staticmethod
    def _run(task: Task, args: tuple, kwargs: dict, task_id: str, retries: int = 0) -> Any:
        close_old_connections()
        try:
            result = task.apply(args, kwargs, task_id=task_id, retries=retries, throw=False)
            if result.failed():
                logger.error("embedded task %s[%s] failed: %r", task.name, task_id, result.result)
                raise result.result
            return result.result
        finally:
            connections.close_all()

    def shutdown(self, wait: bool = True) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=wait, cancel_futures=not wait)


def _copy_outcome(source: Future, target: Future) -> None:
    if source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())


_executor: EmbeddedExecutor | None = None
_lock = threading.Lock()


def executor() -> EmbeddedExecutor:
    """The process-wide executor, created on first use."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = EmbeddedExecutor(settings.STUDIO_EMBEDDED_WORKERS)
        return _executor


class EmbeddedBeat:
    """Celery beat for the embedded mode: each entry of ``CELERY_BEAT_SCHEDULE`` runs on the
    executor every ``schedule`` seconds, the first time one period after ``start``.

    One declaration (the setting) serves both modes: ``celery beat`` reads it when there is a
    broker, this reads it when there is none.
    """

    def __init__(self, app, first_delay_s: float = 1.0) -> None:
        self.app = app
        self.first_delay_s = first_delay_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for name, entry in (self.app.conf.beat_schedule or {}).items():
            interval = _seconds(entry["schedule"])
            thread = threading.Thread(target=self._loop, args=(name, entry["task"], interval),
                                      name=f"studio-beat-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self, name: str, task_name: str, interval: float) -> None:
        delay = interval
        while not self._stop.wait(delay):
            try:
                self.app.tasks[task_name].apply_async()
            except Exception:  # a beat that dies silently is worse than a logged failure
                logger.exception("embedded beat entry %s (%s) failed to start", name, task_name)
            delay = interval

    def stop(self) -> None:
        self._stop.set()


def _seconds(schedule: Any) -> float:
    if isinstance(schedule, (int, float)):
        return float(schedule)
    run_every = getattr(schedule, "run_every", None)  # celery.schedules.schedule
    if run_every is not None:
        return run_every.total_seconds()
    return schedule.total_seconds()  # a timedelta


_beat: EmbeddedBeat | None = None


def start_worker(app, ready_after_s: float = 1.0) -> EmbeddedBeat:
    """Make this process the embedded mode's worker and beat (once): the beat schedule runs on
    timers, and ``ready_after_s`` later Celery's ``worker_ready`` signal is sent, as a worker
    sends it when it starts, so what apps do then (recover unfinished jobs) happens here too."""
    global _beat
    with _lock:
        if _beat is not None:
            return _beat
        _beat = EmbeddedBeat(app, ready_after_s)
        _beat.start()

    def ready() -> None:
        from celery.signals import worker_ready

        try:
            worker_ready.send(sender=None)
        finally:
            connections.close_all()

    timer = threading.Timer(ready_after_s, ready)
    timer.daemon = True
    timer.start()
    return _beat
