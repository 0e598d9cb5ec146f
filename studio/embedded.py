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
               countdown: float | None = None) -> EmbeddedResult:
        """Run ``task`` on ``queue``'s threads, after ``countdown`` seconds when given."""
        if queue not in self._pools:
            raise ValueError(f"unknown queue {queue!r}; known: {', '.join(self._pools)}")
        task_id = task_id or str(uuid.uuid4())
        if countdown and countdown > 0:
            future: Future = Future()

            def later() -> None:
                try:
                    inner = self._pools[queue].submit(self._run, task, args, kwargs, task_id)
                except RuntimeError as exc:  # shut down meanwhile
                    future.set_exception(exc)
                    return
                inner.add_done_callback(lambda done: _copy_outcome(done, future))

            timer = threading.Timer(countdown, later)
            timer.daemon = True
            timer.start()
            return EmbeddedResult(task_id, future)
        future = self._pools[queue].submit(self._run, task, args, kwargs, task_id)
        return EmbeddedResult(task_id, future)

    @staticmethod
    def _run(task: Task, args: tuple, kwargs: dict, task_id: str) -> Any:
        close_old_connections()
        try:
            result = task.apply(args, kwargs, task_id=task_id, throw=False)
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


def recover_jobs_soon(delay_s: float = 1.0) -> None:
    """Put unfinished jobs back on this process's threads once it is serving."""

    def recover() -> None:
        from videogen.services import recover_jobs

        try:
            counts = recover_jobs()
        except Exception:  # a studio that cannot reach its database says so in /health
            logger.exception("could not recover unfinished jobs")
            return
        finally:
            connections.close_all()
        if any(counts.values()):
            logger.info("recovered unfinished jobs: %s", counts)

    timer = threading.Timer(delay_s, recover)
    timer.daemon = True
    timer.start()
