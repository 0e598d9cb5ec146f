"""Every change to a realtime session, in one place (the sockets and the GPU side call these).

A session row is the truth about a stream: who owns it, where it waits, whether a GPU took
it, how it ended and where its recording is. Sessions whose owner vanished without a word
(a web process killed mid-stream) stop counting against limits once their heartbeat is
``STALE_AFTER_S`` old, and are closed as failed the next time anyone opens a session.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from runtime.events import notify_user
from videogen.models import OPEN_SESSION, RealtimeSession, SessionStatus, Video

logger = logging.getLogger(__name__)

STALE_AFTER_S = 60


class SessionRefused(Exception):
    """A session the studio will not open now (a limit); the text says which and why."""


def _fresh() -> Q:
    since = timezone.now() - timedelta(seconds=STALE_AFTER_S)
    return Q(heartbeat_at__gte=since) | Q(heartbeat_at__isnull=True, created_at__gte=since)


def close_stale() -> int:
    """Fail open sessions nobody has heard of for ``STALE_AFTER_S``; returns how many."""
    stale = RealtimeSession.objects.filter(status__in=OPEN_SESSION).exclude(_fresh())
    return stale.update(status=SessionStatus.FAILED, finished_at=timezone.now(),
                        error_message="the session's socket or GPU worker stopped answering")


def open_session(owner, backend: str, model_id: str, params: dict[str, Any], *,
                 capacity: int | None = None) -> RealtimeSession:
    """A new ``queued`` session, or ``SessionRefused`` when the owner has
    ``STUDIO_REALTIME_SESSIONS_PER_USER`` open, or (a backend with a ``capacity``: workers
    that stream one session each) ``STUDIO_REALTIME_MAX_QUEUED`` wait already for them (a
    session bound for an idle worker waits only a moment: not counted)."""
    close_stale()
    with transaction.atomic():
        # The owner's row is the lock: two sockets at once cannot both pass the cap.
        get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
        mine = RealtimeSession.objects.filter(owner=owner, status__in=OPEN_SESSION).count()
        cap = settings.STUDIO_REALTIME_SESSIONS_PER_USER
        if mine >= cap:
            raise SessionRefused(f"you have {mine} realtime sessions open, the most one user may have at once "
                                 f"(STUDIO_REALTIME_SESSIONS_PER_USER={cap}): close one first")
        if capacity is not None:
            same = RealtimeSession.objects.filter(backend=backend).filter(_fresh())
            waiting = same.filter(status=SessionStatus.QUEUED).count()
            idle = max(0, capacity - same.filter(status=SessionStatus.STREAMING).count())
            if waiting >= settings.STUDIO_REALTIME_MAX_QUEUED + idle:
                raise SessionRefused(f"every GPU is busy and {waiting} sessions are waiting already "
                                     f"(STUDIO_REALTIME_MAX_QUEUED): try again in a minute")
        session = RealtimeSession.objects.create(owner=owner, backend=backend, model_id=model_id, params=params,
                                                 heartbeat_at=timezone.now())
        notify_user(owner.pk, "realtime.status", event(session))
        return session


def queue_position(session_id: Any) -> int | None:
    """1 for the next local session a GPU takes, 2 after it...; None once it is not waiting."""
    session = RealtimeSession.objects.filter(pk=session_id).only("status", "created_at", "backend").first()
    if session is None or session.status != SessionStatus.QUEUED:
        return None
    ahead = RealtimeSession.objects.filter(backend=session.backend, status=SessionStatus.QUEUED,
                                           created_at__lt=session.created_at).filter(_fresh()).count()
    return ahead + 1


def claim(session_id: Any, worker: str) -> RealtimeSession | None:
    """``queued -> streaming`` for the one worker whose update wins; None when the session
    was cancelled (its client left) or another worker has it."""
    now = timezone.now()
    won = RealtimeSession.objects.filter(pk=session_id, status=SessionStatus.QUEUED).update(
        status=SessionStatus.STREAMING, worker=worker[:200], started_at=now, heartbeat_at=now)
    if not won:
        return None
    session = RealtimeSession.objects.filter(pk=session_id).first()
    if session is not None:
        notify_user(session.owner_id, "realtime.status", event(session))
    return session


def heartbeat(session_id: Any, *, frames: int | None = None) -> None:
    fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
    if frames is not None:
        fields["frames"] = frames
    RealtimeSession.objects.filter(pk=session_id, status__in=OPEN_SESSION).update(**fields)


def cancel_if_queued(session_id: Any) -> bool:
    """The client left before a GPU took its session: it never runs."""
    ended = bool(RealtimeSession.objects.filter(pk=session_id, status=SessionStatus.QUEUED).update(
        status=SessionStatus.CANCELLED, finished_at=timezone.now()))
    if ended:
        _announce(session_id)
    return ended


def fail(session_id: Any, message: str) -> None:
    """End an open session as failed (frame timeout, upstream error); a final one stays as it is."""
    if RealtimeSession.objects.filter(pk=session_id, status__in=OPEN_SESSION).update(
            status=SessionStatus.FAILED, finished_at=timezone.now(), error_message=message[:2000]):
        _announce(session_id)


def _announce(session_id: Any) -> None:
    session = RealtimeSession.objects.filter(pk=session_id).first()
    if session is not None:
        notify_user(session.owner_id, "realtime.status", event(session))


def record_dropped(session_id: Any, dropped: int) -> None:
    """Frames the client never received (counted by its socket)."""
    RealtimeSession.objects.filter(pk=session_id).update(dropped=dropped)


def finish(session_id: Any, *, frames: int, timeline: dict[str, Any] | None, video: Video | None,
           error: str = "") -> RealtimeSession | None:
    """The stream is over: keep its frame count, timeline and recording. It ends ``completed``
    (``failed`` with ``error``) unless it was ended already (a frame timeout, say), whose
    verdict stands. The owner's pages hear ``realtime.finished``."""
    with transaction.atomic():
        session = RealtimeSession.objects.select_for_update().filter(pk=session_id).first()
        if session is None:
            return None
        session.frames, session.timeline, session.video = frames, timeline, video
        fields = ["frames", "timeline", "video"]
        if session.status in OPEN_SESSION:
            session.status = SessionStatus.FAILED if error else SessionStatus.COMPLETED
            session.error_message = error[:2000]
            session.finished_at = timezone.now()
            fields += ["status", "error_message", "finished_at"]
        session.save(update_fields=fields)
        notify_user(session.owner_id, "realtime.finished", event(session))
    return session


def event(session: RealtimeSession) -> dict[str, Any]:
    return {"session": str(session.id), "backend": session.backend, "status": session.status,
            "frames": session.frames, "video": str(session.video_id) if session.video_id else None,
            "error": session.error_message or None}


def recorded(session_id: Any) -> dict[str, Any] | None:
    """The recording of a session, as its socket reports it (None until it is saved)."""
    from videogen.realtime.recording import described

    session = RealtimeSession.objects.select_related("video").filter(pk=session_id).first()
    if session is None or session.video is None:
        return None
    return described(session.video, session.frames)
