"""``/ws/realtime/``: the Krea WAN-14B WebSocket protocol (fal's endpoint, Krea's release
server), served by the studio.

A client written for fal's endpoint works here by changing only the URL:

1. the studio sends ``{"status": "ready"}``;
2. the client sends one msgpack map of parameters (every field of Krea's ``GenerateParams``);
   an invalid one is answered with ``{"error": [...], "message"}`` (Krea's list) and the
   socket waits for a corrected one;
3. frames arrive, one binary message of JPEG bytes each (``?fmt=msgpack``:
   ``{image, request_id}``); meanwhile the client may send ``{prompt, interp_steps}``,
   ``{seed}``, ``{action: "reset" | "stop"}`` and, in webcam mode, ``{image, strength,
   timestamp}``;
4. ``{"status": "completed", "end_reason", ...}`` and close code 1000 (or ``{"error": ...,
   "end_reason"}`` and 1000).

The studio adds text messages a fal client ignores: ``{"status": "queued", "position",
"waited_s", "workers"}`` while waiting for a GPU, ``"loading"``, ``"started"`` (the size,
seed and blocks used) and every ``STUDIO_REALTIME_STATUS_INTERVAL`` ``{"status":
"streaming", "fps", "frames", "dropped"}``. ``?backend=<key>`` picks the upstream (default
``STUDIO_REALTIME_BACKEND``). Limits in time: ``STUDIO_REALTIME_QUEUE_TIMEOUT_S`` waiting,
``STUDIO_REALTIME_FRAME_TIMEOUT`` between frames, ``STUDIO_REALTIME_SESSION_MAX_S`` in all.
See docs/realtime.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

import msgpack
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from rest_framework.exceptions import Throttled

from model_control import backends, limits
from runtime.consumers import CLOSE_UNAUTHENTICATED
from videogen.models import EndReason
from videogen.realtime import auth, protocol, sessions
from videogen.realtime.flow import BACKPRESSURE_EXTENSION, ClientSender
from videogen.realtime.relay import RecordedStream

logger = logging.getLogger(__name__)

LOAD_TIMEOUT_S = 600  # a GPU worker loading the 14B model for the first time
DRAIN_TIMEOUT_S = 3.0  # time a client gets to take the frames buffered for it at the end
HEARTBEAT_S = 5.0
QUEUE_STATUS_S = 5.0  # a waiting client hears its place, its wait and the workers this often
# How long an upstream told to stop has to say it finished (and saved its recording) before
# the socket saves what the recording's parts hold: a block and the recording's end...
STOP_GRACE_S = 30.0
# ...or, when it has already been silent past the frame timeout (its worker died), this long.
SILENT_GRACE_S = 5.0

db = database_sync_to_async


class RealtimeConsumer(AsyncWebsocketConsumer):
    state = "new"  # new -> params -> waiting -> streaming -> ending -> closed
    # Set once a stream starts; a socket refused at the handshake still gets disconnect().
    session_id: str | None = None
    upstream = None
    sender: ClientSender | None = None
    ticker: asyncio.Task | None = None
    ending: asyncio.Task | None = None

    async def connect(self) -> None:
        self.user = await auth.user_for(self.scope)
        if self.user is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.backend = query.get("backend", [settings.STUDIO_REALTIME_BACKEND])[-1]
        self.fmt = query.get("fmt", ["jpeg"])[-1]
        await self.accept()
        problem = await self._refusal()
        if problem:
            await self.send_error_text(problem)
            await self.close(1000)
            self.state = "closed"
            return
        self.state = "params"
        await self.send_status("ready")

    async def _refusal(self) -> str | None:
        known = backends.stream_backends()
        self.stream_backend = known.get(self.backend)
        if self.stream_backend is None:
            return f"backend must be one of {', '.join(known)}, got {self.backend!r}"
        if self.fmt not in ("jpeg", "msgpack"):
            return f"fmt must be jpeg or msgpack, got {self.fmt!r}"
        missing = await db(self.stream_backend.missing)()
        if missing:
            return f"the {self.backend} backend cannot run here: {missing}"
        self.limits = self.stream_backend.limits
        return None

    # ---- from the client
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.state not in ("params", "waiting", "streaming"):
            return
        try:
            message = protocol.decode(text_data, bytes_data)
            if self.state == "params":
                await self._start(message)
            else:
                await self._update(message)
        except protocol.ProtocolError as exc:
            await self.send(text_data=json.dumps(exc.payload()))
        except sessions.SessionRefused as exc:
            await self.send_error_text(str(exc))

    def _refuse_images(self, params: protocol.StreamParams) -> None:
        if self.limits.takes_images:
            return
        for name in ("start_frame", "webcam_mode"):
            if getattr(params, name):
                raise protocol.ProtocolError([protocol.error_entry(
                    (name,), f"the {self.backend} backend takes no video in ({name})")])

    async def _start(self, message: dict[str, Any]) -> None:
        backend = self.stream_backend
        params = protocol.parse_params(message, self.limits)
        self._refuse_images(params)
        capacity = await backend.capacity()
        if capacity == 0:
            raise sessions.SessionRefused(f"no worker is running to take the {self.backend} backend's sessions "
                                          "(start one: celery -A studio worker -Q gpu -c 1)")
        if backend.paid and not await db(limits.allow_generation)(self.user):
            raise sessions.SessionRefused("you have started the most paid generations one user may start in an "
                                          "hour (STUDIO_THROTTLE_GENERATION): try again later")
        try:
            session = await db(sessions.open_session)(self.user, self.backend, backend.model_id, params.public(),
                                                      capacity=capacity, paid=backend.paid)
        except Throttled as exc:
            raise sessions.SessionRefused(str(exc.detail)) from None
        self.params = params
        self.queued = capacity is not None  # it waits its turn for a worker
        self.session_id = str(session.id)
        self.state = "waiting"
        self.waiting_since = self.queued_since = time.monotonic()
        self.started_at: float | None = None
        self.position: int | None = None
        self.workers: int | None = capacity
        self.last_queue_status = self.last_census = time.monotonic()
        self.last_beat = time.monotonic()
        self.sender = ClientSender(self._send_frame, settings.STUDIO_REALTIME_CLIENT_BUFFER,
                                   (self.scope.get("extensions") or {}).get(BACKPRESSURE_EXTENSION))
        self.sender.start()
        self.upstream = backend.open(self, session, params) if backend.records_at_source \
            else RecordedStream(backend, self, session, params)
        await self.upstream.start()
        self.ticker = asyncio.ensure_future(self._tick())

    async def _update(self, message: dict[str, Any]) -> None:
        update = protocol.parse_update(message, self.limits)
        if update.get("stop"):
            # On a task of its own: the end waits for the producer's last message, which (in
            # process) reaches this consumer through the loop this receive() holds.
            self.ending = asyncio.ensure_future(self._end(reason=EndReason.STOPPED))
            return
        if "image" in update and not self.params.webcam_mode:
            raise protocol.ProtocolError([protocol.error_entry(
                ("image",), "image messages feed Krea's webcam mode: start the stream with webcam_mode: true")])
        await self.upstream.update(update)

    # ---- from the upstream (the StreamListener callbacks)
    async def upstream_loading(self) -> None:
        if self.state == "waiting":
            self.waiting_since = time.monotonic()
            await self.send_status("loading")

    async def upstream_started(self, info: dict[str, Any]) -> None:
        if self.state != "waiting":
            return
        self.state = "streaming"
        self.started_at = time.monotonic()
        await self.send_status("started", session_id=self.session_id, backend=self.backend,
                               time_limit_s=settings.STUDIO_REALTIME_SESSION_MAX_S, **info)

    def upstream_frame(self, jpeg: bytes) -> None:
        if self.state != "streaming":
            return
        if self.fmt == "msgpack":
            jpeg = msgpack.packb({"image": jpeg, "request_id": self.session_id})
        self.sender.push(jpeg)

    async def upstream_error(self, error: str, recorded: dict[str, Any] | None = None) -> None:
        await self._end(reason=EndReason.ERROR, error=error, recorded=recorded, upstream_done=True)

    async def upstream_completed(self, recorded: dict[str, Any]) -> None:
        await self._end(reason=EndReason.COMPLETED, recorded=recorded, upstream_done=True)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # A local producer's messages on the in-process layer (``rt.*``) go to its stream; they
        # touch no database, so they skip Channels' per-message close_old_connections(), a hop
        # to the one shared sync thread and back per frame.
        if message["type"].startswith("rt."):
            if self.upstream is not None and hasattr(self.upstream, "producer_message"):
                await self.upstream.producer_message(message)
            return
        await super().dispatch(message)

    # ---- the session's clock: queue, status, timeouts, keepalive
    async def _tick(self) -> None:
        interval = settings.STUDIO_REALTIME_STATUS_INTERVAL
        while self.state in ("waiting", "streaming"):
            await asyncio.sleep(interval)
            try:
                await self._tick_once()
            except Exception:  # the clock must not die with one bad tick
                logger.exception("realtime session %s: tick failed", self.session_id)

    async def _tick_once(self) -> None:
        now = time.monotonic()
        if self.state == "waiting":
            if self.queued and await self._queue_tick(now):
                return
            if self.position is None and now - self.waiting_since > LOAD_TIMEOUT_S:
                await self._end(reason=EndReason.TIMEOUT,
                                error=f"the GPU worker did not start the session within {LOAD_TIMEOUT_S} s")
                return
        elif self.state == "streaming":
            await self.send_status("streaming", fps=self.sender.fps(), frames=self.sender.sent,
                                   dropped=self.sender.dropped)
            last = self.sender.last_frame_at or self.started_at
            timeout = settings.STUDIO_REALTIME_FRAME_TIMEOUT
            if now - last > timeout:
                await self._end(reason=EndReason.TIMEOUT,
                                error=f"no frame for {timeout:g} s: the stream stalled and was ended")
                return
            most = settings.STUDIO_REALTIME_SESSION_MAX_S
            if now - self.started_at > most:
                await self._end(reason=EndReason.TIMEOUT, notice=f"the session reached its time limit of {most:g} s "
                                                                 "(STUDIO_REALTIME_SESSION_MAX_S)")
                return
        await self.upstream.keepalive()
        if now - self.last_beat > HEARTBEAT_S:
            self.last_beat = now
            await db(sessions.heartbeat)(self.session_id)

    async def _queue_tick(self, now: float) -> bool:
        """Tell a waiting client where it is, how long it has waited and how many workers are
        alive; end the wait after ``STUDIO_REALTIME_QUEUE_TIMEOUT_S``. True when it ended."""
        position = await db(sessions.queue_position)(self.session_id)
        if position is None:  # a worker took it (loading, or about to start)
            self.position = None
            return False
        if now - self.last_census >= QUEUE_STATUS_S:
            self.last_census = now
            self.workers = await self.stream_backend.capacity()
        waited = now - self.queued_since
        limit = settings.STUDIO_REALTIME_QUEUE_TIMEOUT_S
        if waited > limit:
            why = "no GPU worker is running" if self.workers == 0 else "every GPU was busy"
            await self._end(reason=EndReason.TIMEOUT, error=f"the session waited {waited:.0f} s for a GPU and {why} "
                                                            f"(STUDIO_REALTIME_QUEUE_TIMEOUT_S={limit:g})")
            return True
        if position != self.position or now - self.last_queue_status >= QUEUE_STATUS_S:
            self.position, self.last_queue_status = position, now
            fields: dict[str, Any] = {"position": position, "waited_s": round(waited, 1), "workers": self.workers}
            if self.workers == 0:
                fields["message"] = (f"no GPU worker is running: the session waits up to {limit:g} s for one "
                                     "(start one: celery -A studio worker -Q gpu -c 1)")
            await self.send_status("queued", **fields)
        return False

    # ---- the end
    async def _end(self, *, reason: str, error: str | None = None, recorded: dict[str, Any] | None = None,
                   upstream_done: bool = False, notice: str | None = None) -> None:
        """Deliver what is buffered, say how it ended, close with 1000. An end decided here (a
        timeout, a stop) also stops the upstream, waits for it to save its recording, and saves
        the recording's parts itself when it never answers; ``upstream_done``: the upstream
        ended it."""
        if self.state in ("ending", "closed"):
            return
        started = self.state == "streaming"
        silent = started and time.monotonic() - (self.sender.last_frame_at or self.started_at) \
            > settings.STUDIO_REALTIME_FRAME_TIMEOUT
        self.state = "ending"
        if self.sender is not None:
            if not error:
                await self.sender.drain(DRAIN_TIMEOUT_S)
            await self.sender.stop()
        if self.session_id and not upstream_done:
            await db(sessions.end_with)(self.session_id, reason, error)
            if self.upstream is not None and not started:
                await self.upstream.stop()
            elif self.upstream is not None:
                recorded = await self._stop_upstream(SILENT_GRACE_S if silent else STOP_GRACE_S)
                if recorded is None:  # it never answered: its worker is gone
                    recorded = await db(sessions.salvage_recording)(self.session_id)
        await self._record_dropped()
        if self.session_id and not (recorded or {}).get("video"):  # the upstream may have saved it already
            recorded = await db(sessions.recorded)(self.session_id) or recorded
        video = None
        if recorded and recorded.get("video"):
            video = {"id": recorded["video"], "url": recorded.get("url")}
        end_reason = (await db(sessions.end_reason)(self.session_id) if self.session_id else None) or reason
        if error:
            await self.send(text_data=json.dumps({"error": error, "session_id": self.session_id, "video": video,
                                                  "end_reason": end_reason}))
        else:
            fields = {"message": notice} if notice else {}
            await self.send_status("completed", session_id=self.session_id, frames=self.sender.sent,
                                   dropped=self.sender.dropped, generated=(recorded or {}).get("frames"),
                                   video=video, end_reason=end_reason, **fields)
        await self.close(1000)
        self.state = "closed"

    async def _stop_upstream(self, grace: float) -> dict[str, Any] | None:
        """Stop the upstream and wait up to ``grace`` for its end; what it recorded, or None."""
        end = getattr(self.upstream, "end", None)
        if end is None:
            await self.upstream.stop()
            return await db(sessions.recorded)(self.session_id)
        return await end(grace)

    async def _record_dropped(self) -> None:
        if self.session_id and self.sender is not None:
            await db(sessions.record_dropped)(self.session_id, self.sender.dropped)

    async def disconnect(self, code: int) -> None:
        ended = self.state in ("ending", "closed")
        self.state = "closed"
        if self.ticker is not None:
            self.ticker.cancel()
        if self.sender is not None:
            await self.sender.stop()
        if self.upstream is not None:
            if not ended:  # the client left: it stopped the session
                await db(sessions.end_with)(self.session_id, EndReason.STOPPED)
                await self.upstream.stop()
                await self._record_dropped()
            await self.upstream.close()

    # ---- sending
    async def _send_frame(self, frame: bytes) -> None:
        await self.send(bytes_data=frame)

    async def send_status(self, status: str, **fields: Any) -> None:
        await self.send(text_data=json.dumps({"status": status, **fields}))

    async def send_error_text(self, message: str) -> None:
        """A refusal that is not about a field (a limit, a backend that cannot run)."""
        await self.send(text_data=json.dumps({"error": message}))
