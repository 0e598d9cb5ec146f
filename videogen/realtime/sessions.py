"""Every change to a realtime session, in one place (the sockets and the GPU side call these).

A session row is the truth about a stream: who owns it, where it waits, whether a GPU took
it, how it ended (``end_reason``: the first reason given wins) and where its recording is.
Sessions whose owner vanished without a word (a web process killed mid-stream) stop counting
against limits once their heartbeat is ``STALE_AFTER_S`` old, and are closed as failed the
next time anyone opens a session or the sweep runs (``sweep``, every
``STUDIO_REALTIME_SWEEP_S``), which also saves the recording a dead producer left in parts.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from model_control import generations
from runtime.events import notify_user
from videogen.models import (
    OPEN_SESSION,
    EndReason,
    RealtimeSession,
    RecordingState,
    SessionStatus,
    Video,
)
from videogen.realtime import recording

logger = logging.getLogger(__name__)

STALE_AFTER_S = 60
START_FRAME_TTL_S = 3600  # a start frame waits in the cache at most this long for its GPU


class SessionRefused(Exception):
    """A session the studio will not open now (a limit); the text says which and why."""


def _fresh() -> Q:
    since = timezone.now() - timedelta(seconds=STALE_AFTER_S)
    return Q(heartbeat_at__gte=since) | Q(heartbeat_at__isnull=True, created_at__gte=since)


def close_stale() -> int:
    """Fail open sessions nobody has heard of for ``STALE_AFTER_S``; returns how many."""
    stale = RealtimeSession.objects.filter(status__in=OPEN_SESSION).exclude(_fresh())
    ids = list(stale.values_list("pk", flat=True))
    if not ids:
        return 0
    stale = RealtimeSession.objects.filter(pk__in=ids, status__in=OPEN_SESSION)
    stale.filter(end_reason="").update(end_reason=EndReason.ERROR)
    closed = stale.update(status=SessionStatus.FAILED, finished_at=timezone.now(),
                          error_message="the session's socket or GPU worker stopped answering")
    _no_longer_counted(*ids)
    return closed


def _start_frame_key(session_id: Any) -> str:
    return f"realtime-start-frame:{uuid.UUID(str(session_id)).hex}"


def open_session(owner, backend: str, model_id: str, params: dict[str, Any], *,
                 capacity: int | None = None, paid: bool = False) -> RealtimeSession:
    """A new ``queued`` session, or ``SessionRefused`` when the owner has
    ``STUDIO_REALTIME_SESSIONS_PER_USER`` open, or (a backend with a ``capacity``: workers
    that stream one session each) ``STUDIO_REALTIME_MAX_QUEUED`` wait already for them (a
    session bound for an idle worker waits only a moment: not counted). A ``paid`` session
    counts against the owner's unfinished generations, with the other doors' (``Throttled``,
    a 429's reason, when at the cap), until it ends."""
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
        session_id = uuid.uuid4()
        if paid:  # leased: a session no one ends (a killed web process) stops counting by itself
            generations.take(owner.pk, generations.REALTIME, str(session_id),
                             lease_s=settings.STUDIO_REALTIME_SESSION_MAX_S + STALE_AFTER_S)
        session = RealtimeSession.objects.create(id=session_id, owner=owner, backend=backend, model_id=model_id,
                                                 params=params, heartbeat_at=timezone.now())
        notify_user(owner.pk, "realtime.status", event(session))
        return session


def _no_longer_counted(*session_ids: Any) -> None:
    """Ended sessions stop counting against their owners' unfinished generations."""
    for session_id in session_ids:
        generations.give_back(generations.REALTIME, str(session_id))


def keep_start_frame(session_id: Any, data: bytes) -> None:
    """A start frame (image bytes) for the GPU worker that will take the session: it waits in
    the cache (Redis, shared by web and workers; in process in the embedded mode)."""
    cache.set(_start_frame_key(session_id), data, timeout=START_FRAME_TTL_S)


def start_frame(session_id: Any) -> bytes | None:
    """The session's start frame (image bytes), once: the GPU worker takes it."""
    key = _start_frame_key(session_id)
    data = cache.get(key)
    if data is not None:
        cache.delete(key)
    return data


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
    was cancelled (its client left) or another worker has it. Its recording starts."""
    now = timezone.now()
    won = RealtimeSession.objects.filter(pk=session_id, status=SessionStatus.QUEUED).update(
        status=SessionStatus.STREAMING, worker=worker[:200], started_at=now, heartbeat_at=now,
        recording=RecordingState.WRITING)
    if not won:
        return None
    session = RealtimeSession.objects.filter(pk=session_id).first()
    if session is not None:
        notify_user(session.owner_id, "realtime.status", event(session))
    return session


def heartbeat(session_id: Any, *, frames: int | None = None, timeline: dict[str, Any] | None = None) -> None:
    """A sign of life; the producer adds its frames so far and its timeline (what a salvaged
    recording keeps when the producer dies)."""
    fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
    if frames is not None:
        fields["frames"] = frames
    if timeline is not None:
        fields["timeline"] = timeline
    RealtimeSession.objects.filter(pk=session_id, status__in=OPEN_SESSION).update(**fields)


def cancel_if_queued(session_id: Any) -> bool:
    """The client left before a GPU took its session: it never runs."""
    RealtimeSession.objects.filter(pk=session_id, status=SessionStatus.QUEUED, end_reason="").update(
        end_reason=EndReason.STOPPED)
    ended = bool(RealtimeSession.objects.filter(pk=session_id, status=SessionStatus.QUEUED).update(
        status=SessionStatus.CANCELLED, finished_at=timezone.now()))
    if ended:
        cache.delete(_start_frame_key(session_id))
        _no_longer_counted(session_id)
        _announce(session_id)
    return ended


def end_with(session_id: Any, reason: str, error: str | None = None) -> None:
    """The socket decided how the session ends (``EndReason``): kept unless a reason was given
    already; with ``error`` an open session is failed now (its recording is still saved)."""
    RealtimeSession.objects.filter(pk=session_id, end_reason="").update(end_reason=reason)
    if error:
        fail(session_id, error)


def fail(session_id: Any, message: str) -> None:
    """End an open session as failed (frame timeout, upstream error); a final one stays as it is."""
    RealtimeSession.objects.filter(pk=session_id, end_reason="").update(end_reason=EndReason.ERROR)
    if RealtimeSession.objects.filter(pk=session_id, status__in=OPEN_SESSION).update(
            status=SessionStatus.FAILED, finished_at=timezone.now(), error_message=message[:2000]):
        _no_longer_counted(session_id)
        _announce(session_id)


def _announce(session_id: Any) -> None:
    session = RealtimeSession.objects.filter(pk=session_id).first()
    if session is not None:
        notify_user(session.owner_id, "realtime.status", event(session))


def record_dropped(session_id: Any, dropped: int) -> None:
    """Frames the client never received (counted by its socket)."""
    RealtimeSession.objects.filter(pk=session_id).update(dropped=dropped)


def claim_recording(session_id: Any) -> bool:
    """Whether the caller is the one who saves the session's recording (the producer at its
    end, or whoever salvages its parts): the first to ask."""
    return bool(RealtimeSession.objects.filter(
        pk=session_id, recording__in=(RecordingState.NONE, RecordingState.WRITING)).update(
        recording=RecordingState.SAVING))


def finish(session_id: Any, *, frames: int, timeline: dict[str, Any] | None, video: Video | None,
           error: str = "", reason: str | None = None, saved: bool = False) -> RealtimeSession | None:
    """The stream is over: keep its frame count, timeline and recording (``video``; ``saved``:
    the caller claimed the recording and is done with it). It ends ``completed`` (``failed``
    with ``error``) unless it was ended already (a frame timeout, say), whose verdict stands;
    ``end_reason`` is kept if set, else ``reason`` (default: ``error`` or ``completed``). The
    owner's pages hear ``realtime.finished``."""
    with transaction.atomic():
        session = RealtimeSession.objects.select_for_update().filter(pk=session_id).first()
        if session is None:
            return None
        session.frames = frames
        fields = ["frames"]
        if timeline is not None or session.timeline is None:
            session.timeline = timeline
            fields.append("timeline")
        if video is not None:
            session.video = video
            fields.append("video")
        if saved:
            session.recording = RecordingState.SAVED
            fields.append("recording")
        if not session.end_reason:
            session.end_reason = reason or (EndReason.ERROR if error else EndReason.COMPLETED)
            fields.append("end_reason")
        if session.status in OPEN_SESSION:
            session.status = SessionStatus.FAILED if error else SessionStatus.COMPLETED
            session.error_message = error[:2000]
            session.finished_at = timezone.now()
            fields += ["status", "error_message", "finished_at"]
            _no_longer_counted(session.pk)
        session.save(update_fields=fields)
        notify_user(session.owner_id, "realtime.finished", event(session))
    return session


def save_recording(session_id: Any, content: bytes | None, timeline: dict[str, Any] | None,
                   frames: int) -> Video | None:
    """The producer's own recording into the gallery, unless someone salvaged its parts first
    (then None: that video stands). Its parts go once it is saved."""
    if not claim_recording(session_id):
        logger.warning("session %s: its recording was saved from its parts already", session_id)
        return None
    session = RealtimeSession.objects.get(pk=session_id)
    video = recording.save(session, content, timeline, frames)
    recording.delete_parts(session_id)
    return video


def salvage_recording(session_id: Any) -> dict[str, Any] | None:
    """Save the recording a session's parts hold when its producer can no longer (it died):
    the frames up to its last part, and the timeline of its last heartbeat. Returns what the
    socket tells its client about the recording (``recorded``), whoever saved it."""
    if not claim_recording(session_id):
        return recorded(session_id)
    content, frames = recording.salvage(session_id)
    session = RealtimeSession.objects.get(pk=session_id)
    video = recording.save(session, content, session.timeline, frames, partial=True) if content else None
    with transaction.atomic():
        session = RealtimeSession.objects.select_for_update().get(pk=session_id)
        session.video = video or session.video
        session.frames = max(session.frames, frames)
        session.recording = RecordingState.SAVED
        session.save(update_fields=["video", "frames", "recording"])
        notify_user(session.owner_id, "realtime.finished", event(session))
    recording.delete_parts(session_id)
    logger.warning("session %s: its producer stopped answering; %d frames saved from its recording's parts",
                   session_id, frames)
    return recorded(session_id)


def sweep() -> dict[str, int]:
    """Close stale sessions and save the recordings their dead producers left in parts (a
    session whose recording is still being written, silent for ``STALE_AFTER_S``)."""
    stale = close_stale()
    since = timezone.now() - timedelta(seconds=STALE_AFTER_S)
    orphans = list(RealtimeSession.objects.filter(recording=RecordingState.WRITING)
                   .filter(Q(heartbeat_at__lt=since) | Q(heartbeat_at__isnull=True, created_at__lt=since))
                   .values_list("id", flat=True)[:20])
    salvaged = 0
    for session_id in orphans:
        try:
            salvage_recording(session_id)
            salvaged += 1
        except Exception:  # one bad recording must not stop the sweep
            logger.exception("salvaging the recording of session %s failed", session_id)
    return {"stale": stale, "salvaged": salvaged}


def event(session: RealtimeSession) -> dict[str, Any]:
    return {"session": str(session.id), "backend": session.backend, "status": session.status,
            "end_reason": session.end_reason or None, "frames": session.frames,
            "video": str(session.video_id) if session.video_id else None, "error": session.error_message or None}


def recorded(session_id: Any) -> dict[str, Any] | None:
    """The recording of a session, as its socket reports it (None until it is saved)."""
    session = RealtimeSession.objects.select_related("video").filter(pk=session_id).first()
    if session is None or session.video is None:
        return None
    return {**recording.described(session.video, session.frames), "end_reason": session.end_reason or None}


def end_reason(session_id: Any) -> str | None:
    return RealtimeSession.objects.filter(pk=session_id).values_list("end_reason", flat=True).first() or None
