"""The Celery app shared by the web process and the workers.

In the services mode tasks go through Redis to ``celery worker`` processes (queues
``default`` and ``gpu``) and ``celery beat`` runs ``CELERY_BEAT_SCHEDULE``. In the embedded
mode the very same task code runs on background threads of the web process
(``runtime.embedded``): ``delay()`` returns at once, so a request never waits for a job, and
the beat schedule runs on timers there.

Outages: a task that meets a transient database or broker error (``TRANSIENT_ERRORS``) is
retried with exponential backoff (``RETRY_TRANSIENT``: the job tasks use it) instead of being
acknowledged and lost; what still slips through (a retry that cannot reach the broker, a
message stranded while Redis was down) is found again by the periodic sweep, since every
job's truth is its database row (docs/deployment.md, "Faults").
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kombu.exceptions
import redis.exceptions
from celery import Celery, Task
from celery.exceptions import Ignore
from celery.signals import task_prerun
from django import db

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")

logger = logging.getLogger(__name__)

# Errors that say "the database or Redis is away for now", not "this task is wrong":
# Django's wrappers of the driver's connection errors (a restart, "too many clients", a pool
# that had no connection within DATABASE_POOL_TIMEOUT, SQLite's "database is locked"), and
# Redis (slots, cache) or the broker being unreachable.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    db.OperationalError, db.InterfaceError,
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
)

# Task options for "retry a transient error with backoff": 1, 2, 4 ... s (full jitter), at
# most RETRY_BACKOFF_MAX_S apart, MAX_TRANSIENT_RETRIES times (about 4 minutes in all); a task
# that still fails is left to the sweep. The gaps stay far below the broker's visibility
# timeout, so a retry waiting in a worker is never delivered twice.
RETRY_BACKOFF_MAX_S = 30
MAX_TRANSIENT_RETRIES = 10
RETRY_TRANSIENT: dict[str, Any] = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 1,
    "retry_backoff_max": RETRY_BACKOFF_MAX_S,
    "retry_jitter": True,
    "max_retries": MAX_TRANSIENT_RETRIES,
}


class StudioTask(Task):
    """A task that runs in-process on the embedded executor when there is no broker."""

    def apply_async(self, args=None, kwargs=None, task_id=None, producer=None, link=None,
                    link_error=None, shadow=None, **options):
        from django.conf import settings

        if settings.STUDIO_EMBEDDED and not self.app.conf.task_always_eager:
            from runtime import embedded

            queue = options.get("queue") or self.app.amqp.router.route(
                {}, self.name, args, kwargs)["queue"].name
            return embedded.executor().submit(self, args or (), kwargs or {}, queue, task_id,
                                              countdown=options.get("countdown"))
        return super().apply_async(args, kwargs, task_id, producer, link, link_error, shadow,
                                   **options)

    def retry(self, args=None, kwargs=None, exc=None, throw=True, eta=None, countdown=None,
              max_retries=None, **options):
        """Celery's retry; in the embedded mode the next try waits its ``countdown`` on the
        executor (Celery's eager ``apply`` would run it again at once, without the backoff)."""
        from django.conf import settings

        request = self.request
        if not (settings.STUDIO_EMBEDDED and request.is_eager and not self.app.conf.task_always_eager):
            return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)
        from runtime import embedded

        limit = getattr(self, "override_max_retries", self.max_retries) if max_retries is None else max_retries
        if limit is not None and request.retries + 1 > limit:
            raise exc if exc is not None else self.MaxRetriesExceededError(f"{self.name}[{request.id}]")
        queue = request.delivery_info.get("routing_key") if request.delivery_info else None
        queue = queue or self.app.amqp.router.route({}, self.name, request.args, request.kwargs)["queue"].name
        embedded.executor().submit(self, tuple(request.args if args is None else args),
                                   dict(request.kwargs if kwargs is None else kwargs), queue, None,
                                   countdown=countdown if countdown is not None else self.default_retry_delay,
                                   retries=request.retries + 1)
        ignored = Ignore(f"retrying in the embedded executor after {exc!r}")
        if throw:
            raise ignored
        return ignored


app = Celery("studio", task_cls=StudioTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _fresh_database_connections(**kwargs: Any) -> None:
    """Before each task: give back the connections that broke (a database restart) or grew
    old, as a web request does; healthy ones are kept (``CELERY_DB_REUSE_MAX``)."""
    from django.db import close_old_connections

    close_old_connections()


def dispatch(task_name: str, *args: Any, countdown: float | None = None, queue: str | None = None) -> None:
    """Run the registered task ``task_name`` with ``args`` (after ``countdown`` seconds).

    Callers name tasks instead of importing them, so a module that changes state (services)
    and the tasks that call it do not import each other.
    """
    options: dict[str, Any] = {}
    if countdown:
        options["countdown"] = countdown
    if queue:
        options["queue"] = queue
    app.tasks[task_name].apply_async(args, **options)


def _survive_kombu_reconnect_crash() -> None:
    """Keep a worker alive through kombu's crash when Redis goes away (docs/deployment.md).

    When the broker connection drops, Celery (``on_connection_error_after_connected``) first
    ``collect()``s the connection, which detaches its transport, then ``close()``s it; closing
    the Redis channel again tries to give its unacknowledged messages back through that
    detached transport and raises ``AttributeError: 'NoneType' object has no attribute
    'hostname'`` (kombu's ``_connparams``), which the worker treats as unrecoverable and exits
    (the same path as celery/kombu#970; kombu 5.7.0 still has it), and so does acknowledging,
    through that channel, a task that finishes afterwards. Here that one error, on a channel
    whose transport is already detached, is logged (a close counts the channel closed):
    its unacknowledged messages stay in Redis and come back after the visibility timeout
    (``STUDIO_BROKER_VISIBILITY_TIMEOUT_S``), the worker reconnects, and the job sweep does
    not wait for them.
    """
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel.close
    if getattr(original, "studio_survives_detached_transport", False):
        return

    def close(self) -> None:
        try:
            original(self)
        except AttributeError:
            if getattr(self.connection, "client", None) is not None:
                raise  # not the detached-transport crash: someone else's bug, keep it loud
            logger.warning("the broker connection was lost: its unacknowledged messages stay in Redis "
                           "and are delivered again after the visibility timeout")
            self.closed = True

    close.studio_survives_detached_transport = True  # type: ignore[attr-defined]
    kombu_redis.Channel.close = close

    # The same detached transport meets a task that finishes after the outage: its message's
    # ack (or reject) goes through the old channel, whose pool is gone and cannot be made
    # again. The message stays unacknowledged in Redis and is delivered again after the
    # visibility timeout; the job tasks are idempotent, so that second delivery finds the
    # row's state and does nothing twice.
    for name in ("ack", "reject"):
        setattr(kombu_redis.QoS, name, _unless_detached(getattr(kombu_redis.QoS, name), name))


def _unless_detached(method, name: str):
    def settle(self, delivery_tag, *args, **kwargs):
        try:
            return method(self, delivery_tag, *args, **kwargs)
        except AttributeError:
            if getattr(self.channel.connection, "client", None) is not None:
                raise
            logger.warning("cannot %s message %s: its broker connection was lost; it is delivered "
                           "again after the visibility timeout", name, delivery_tag)

    return settle


_survive_kombu_reconnect_crash()

# Imported here so every worker process connects the census signals (``worker_ready``).
from runtime import workers  # noqa: E402,F401
