"""When a provider's poller runs: the scheduling half of ``tasks.poll_backend`` (docs/jobs.md).

One poller per provider polls every job of it that has a request id and no webhook to wait
for (or whose webhook's safety poll is due): one run at a time across the studio (a leased
slot of one), each run reading the jobs due and ending. Runs are woken through one alarm per
provider (``runtime.alarms``): a submit, a run that ends and the sweep ask for a run by some
time, and a message is sent only when no run is on its way as soon, and none runs now.
Nothing here changes a job (``services`` does); these are reads and wakes.
"""

from __future__ import annotations

import contextlib
import logging

from django.conf import settings
from django.db.models import Min
from django.utils import timezone

from runtime import alarms, slots
from runtime.celery import dispatch
from videogen.models import Job, JobStatus

logger = logging.getLogger(__name__)

def poller_slot(backend: str) -> str:
    """The slot (one, leased) a backend's poller holds while it runs (``tasks.poll_backend``)."""
    return f"poller:{backend}"


# The unfinished states in which a job with a request id is polled.
POLLED = (JobStatus.SUBMITTED, JobStatus.RUNNING)


# An alarm for a poller run that was due this long ago and has not gone off lapses (its
# message was lost); the next wake sets a new one.
POLLER_ALARM_GRACE_S = 10.0


def poller_slack_s() -> float:
    """How early a poller run polls a job, and how late a run on its way may be for a wake to
    count as covered: half a poll interval, so jobs due a moment apart share a run."""
    return settings.VIDEO_POLL_INTERVAL / 2


def poller_alarm(backend: str) -> str:
    """The alarm (``runtime.alarms``) of the backend's next poller run."""
    return f"poller:{backend}"


def wake_poller(backend: str, countdown: float | None = None, *, force: bool = False,
                insist: bool = False) -> bool:
    """Make sure the backend's poller runs within ``countdown`` seconds; False (logged) when
    the broker cannot take the message.

    Nothing is sent while the poller runs (each run reads every due job, and when it ends it
    schedules its next run, after letting go of its slot, so a wake skipped here is never
    lost) or when a run is already on its way as soon or sooner (its alarm). So a provider's
    poller gets one message per run, however many jobs wake it. ``force`` (the sweep, a
    running poller that may be a dead worker's): sent whatever the slot and the alarm say.
    ``insist``: the run sent looks again after a lease if another poller seems to run."""
    try:
        if not force and slots.holders(poller_slot(backend)):
            return True
        token = alarms.claim(poller_alarm(backend), countdown or 0.0, POLLER_ALARM_GRACE_S,
                             slack_s=poller_slack_s(), force=force)
    except Exception as exc:  # noqa: BLE001 - Redis away: send the wake, the poller sorts it out
        logger.debug("cannot tell whether the %s poller runs or is due: %s", backend, exc)
        token = 0
    if token is None:
        return True
    if _send((backend, token, insist), countdown):
        return True
    with contextlib.suppress(Exception):
        alarms.clear(poller_alarm(backend), token)  # the next wake sets it again
    return False


def poller_alarm_went_off(backend: str, token: int) -> None:
    """The poller run set for ``token`` started: the next wake may set another."""
    try:
        alarms.clear(poller_alarm(backend), token)
    except Exception as exc:  # noqa: BLE001 - the alarm lapses by itself
        logger.debug("cannot clear the %s poller's alarm: %s", backend, exc)


def due_polls(backend: str, *, ahead_s: float, limit: int) -> list[Job]:
    """The backend's jobs whose poll is due within ``ahead_s`` seconds, the longest due first."""
    due = timezone.now() + timezone.timedelta(seconds=ahead_s)
    return list(Job.objects.filter(backend=backend, status__in=POLLED, next_poll_at__lte=due)
                .exclude(provider_request_id="")
                .only("pk", "model_id", "backend", "status", "provider_request_id", "polls", "webhook_expected",
                      "queue_position", "progress", "logs_tail")
                .order_by("next_poll_at")[:limit])


def seconds_to_next_poll(backend: str) -> float | None:
    """Seconds until the backend's next job poll is due (0 when one is late); None: none is."""
    first = (Job.objects.filter(backend=backend, status__in=POLLED, next_poll_at__isnull=False)
             .exclude(provider_request_id="").aggregate(first=Min("next_poll_at"))["first"])
    return None if first is None else max((first - timezone.now()).total_seconds(), 0.0)


def schedule_poller(backend: str) -> None:
    """A poller run ended: its next run is set for the backend's first job poll still due (a
    wait longer than ``STUDIO_TASK_MAX_COUNTDOWN_S`` is the sweep's)."""
    wait = seconds_to_next_poll(backend)
    if wait is not None and wait <= settings.STUDIO_TASK_MAX_COUNTDOWN_S:
        wake_poller(backend, wait)


def _send(args: tuple, countdown: float | None) -> bool:
    """Send one poller run; False (logged) when the broker cannot take it (the sweep wakes
    the poller again)."""
    try:
        dispatch("videogen.poll_backend", *args, countdown=countdown or None)
    except Exception as exc:  # noqa: BLE001 - kombu, redis or socket errors alike
        logger.warning("could not wake the %s poller (%s: %s); the job sweep will", args[0], type(exc).__name__, exc)
        return False
    return True
