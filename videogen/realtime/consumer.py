"""``/ws/realtime/``: fal's krea-wan-14b WebSocket protocol, served by the studio.

A client written for fal's endpoint works here by changing only the URL:

1. the studio sends ``{"status": "ready"}``;
2. the client sends one msgpack map of parameters (``prompt``, ``width``, ``height``,
   ``num_blocks``, ``num_denoising_steps``, ``seed``...); an invalid one is answered with
   ``{"error": ...}`` and the socket waits for a corrected one;
3. frames arrive, one binary message of JPEG bytes each (``?fmt=msgpack``:
   ``{image, request_id}``); meanwhile the client may send ``{prompt}``, ``{seed}``,
   ``{action: "reset"}`` (and, to fal, ``{image, strength, timestamp}``);
4. ``{"status": "completed", ...}`` and close code 1000 (or ``{"error": ...}`` and 1000).

The studio adds text messages a fal client ignores: ``{"status": "queued", "position"}``
while waiting for a GPU, ``"loading"``, ``"started"`` (the size, seed and blocks used) and
every ``STUDIO_REALTIME_STATUS_INTERVAL`` ``{"status": "streaming", "fps", "frames",
"dropped"}``. ``?backend=local|fal`` picks the upstream (default
``STUDIO_REALTIME_BACKEND``). See docs/realtime.md.
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

from model_control import backends
from runtime.consumers import CLOSE_UNAUTHENTICATED
from videogen.realtime import auth, protocol, sessions
from videogen.realtime.flow import BACKPRESSURE_EXTENSION, ClientSender
from videogen.realtime.relay import RecordedStream

logger = logging.getLogger(__name__)

LOAD_TIMEOUT_S = 600  # a GPU worker loading the 14B model for the first time
DRAIN_TIMEOUT_S = 3.0  # time a client gets to take the frames buffered for it at the end
HEARTBEAT_S = 5.0


class RealtimeConsumer(AsyncWebsocketConsumer):
    state = "new"  # new -> params -> waiting -> streaming -> ending -> closed
    # Set once a stream starts; a socket refused at the handshake still gets disconnect().
    session_id: str | None = None
    upstream = None
    sender: ClientSender | None = None
    ticker: asyncio.Task | None = None

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
            await self.send_error(problem)
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
        missing = await database_sync_to_async(self.stream_backend.missing)()
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
            await self.send_error(str(exc))

    async def _start(self, message: dict[str, Any]) -> None:
        backend = self.stream_backend
        params = protocol.parse_params(message, self.limits)
        if params.start_frame is not None and not self.limits.takes_images:
            raise protocol.ProtocolError(f"the {self.backend} backend does not take a start_frame yet")
        capacity = await backend.capacity()
        if capacity == 0:
            raise protocol.ProtocolError(f"no worker is running to take the {self.backend} backend's sessions "
                                         "(start one: celery -A studio worker -Q gpu -c 1)")
        try:
            session = await database_sync_to_async(sessions.open_session)(
                self.user, self.backend, backend.model_id, params.public(), capacity=capacity)
        except sessions.SessionRefused as exc:
            raise protocol.ProtocolError(str(exc)) from None
        self.queued = capacity is not None  # it waits its turn for a worker
        self.session_id = str(session.id)
        self.state = "waiting"
        self.waiting_since = time.monotonic()
        self.started_at: float | None = None
        self.position: int | None = None
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
        if "image" in update and not self.limits.takes_images:
            raise protocol.ProtocolError(f"the {self.backend} backend does not take image updates yet")
        await self.upstream.update(update)

    # ---- from the upstream (callbacks, and the local producer's channel-layer messages)
    async def upstream_loading(self) -> None:
        if self.state == "waiting":
            self.waiting_since = time.monotonic()
            await self.send_status("loading")

    async def upstream_started(self, info: dict[str, Any]) -> None:
        if self.state != "waiting":
            return
        self.state = "streaming"
        self.started_at = time.monotonic()
        await self.send_status("started", session_id=self.session_id, backend=self.backend, **info)

    def upstream_frame(self, jpeg: bytes) -> None:
        if self.state != "streaming":
            return
        if self.fmt == "msgpack":
            jpeg = msgpack.packb({"image": jpeg, "request_id": self.session_id})
        self.sender.push(jpeg)

    async def upstream_error(self, error: str, recorded: dict[str, Any] | None = None) -> None:
        await self._end(error=error, recorded=recorded, upstream_done=True)

    async def upstream_completed(self, recorded: dict[str, Any]) -> None:
        await self._end(recorded=recorded, upstream_done=True)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Frames are the hot path and touch no database: skip Channels' per-message
        # close_old_connections(), a hop to the one shared sync thread and back per frame.
        if message["type"] == "rt.frame":
            self.upstream_frame(message["jpeg"])
            return
        await super().dispatch(message)

    async def producer_message(self, message: dict[str, Any]) -> None:
        """A message of the local producer from the bus (services mode), in order."""
        kind = message.get("type")
        if kind == "rt.frame":
            self.upstream_frame(message["jpeg"])
        elif kind in ("rt.loading", "rt.started", "rt.error", "rt.completed"):
            await getattr(self, kind.replace(".", "_"))(message)

    async def rt_loading(self, message: dict[str, Any]) -> None:
        await self.upstream_loading()

    async def rt_started(self, message: dict[str, Any]) -> None:
        await self.upstream.on_started()
        await self.upstream_started({k: v for k, v in message.items() if k != "type"})

    async def rt_error(self, message: dict[str, Any]) -> None:
        await self.upstream_error(message["error"], message)

    async def rt_completed(self, message: dict[str, Any]) -> None:
        await self.upstream_completed(message)

    # ---- the session's clock: queue position, status, frame timeout, keepalive
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
            if self.queued:
                position = await database_sync_to_async(sessions.queue_position)(self.session_id)
                if position is not None and position != self.position:
                    self.position = position
                    await self.send_status("queued", position=position)
                if position is None and now - self.waiting_since > LOAD_TIMEOUT_S:
                    await self._end(error=f"the GPU worker did not start the session within {LOAD_TIMEOUT_S} s")
                    return
        elif self.state == "streaming":
            await self.send_status("streaming", fps=self.sender.fps(), frames=self.sender.sent,
                                   dropped=self.sender.dropped)
            last = self.sender.last_frame_at or self.started_at
            timeout = settings.STUDIO_REALTIME_FRAME_TIMEOUT
            if now - last > timeout:
                await self._end(error=f"no frame for {timeout:g} s: the stream stalled and was ended")
                return
        await self.upstream.keepalive()
        if now - self.last_beat > HEARTBEAT_S:
            self.last_beat = now
            await database_sync_to_async(sessions.heartbeat)(self.session_id)

    # ---- the end
    async def _end(self, *, error: str | None = None, recorded: dict[str, Any] | None = None,
                   upstream_done: bool = False) -> None:
        """Deliver what is buffered, say how it ended, close with 1000. An end decided here (a
        frame timeout) also stops the upstream; ``upstream_done``: the upstream ended it."""
        if self.state in ("ending", "closed"):
            return
        self.state = "ending"
        if self.sender is not None:
            if not error:
                await self.sender.drain(DRAIN_TIMEOUT_S)
            await self.sender.stop()
        if error:
            await database_sync_to_async(sessions.fail)(self.session_id, error)
        if not upstream_done and self.upstream is not None:
            await self.upstream.stop()
        await self._record_dropped()
        if not recorded and self.session_id:  # ended here: the upstream may have saved it already
            recorded = await database_sync_to_async(sessions.recorded)(self.session_id)
        video = None
        if recorded and recorded.get("video"):
            video = {"id": recorded["video"], "url": recorded.get("url")}
        if error:
            await self.send(text_data=json.dumps({"error": error, "session_id": self.session_id, "video": video}))
        else:
            await self.send_status("completed", session_id=self.session_id, frames=self.sender.sent,
                                   dropped=self.sender.dropped, generated=(recorded or {}).get("frames"),
                                   video=video)
        await self.close(1000)
        self.state = "closed"

    async def _record_dropped(self) -> None:
        if self.session_id and self.sender is not None:
            await database_sync_to_async(sessions.record_dropped)(self.session_id, self.sender.dropped)

    async def disconnect(self, code: int) -> None:
        ended = self.state in ("ending", "closed")
        self.state = "closed"
        if self.ticker is not None:
            self.ticker.cancel()
        if self.sender is not None:
            await self.sender.stop()
        if self.upstream is not None:
            if not ended:
                await self.upstream.stop()
                await self._record_dropped()
            await self.upstream.close()

    # ---- sending
    async def _send_frame(self, frame: bytes) -> None:
        await self.send(bytes_data=frame)

    async def send_status(self, status: str, **fields: Any) -> None:
        await self.send(text_data=json.dumps({"status": status, **fields}))

    async def send_error(self, message: str) -> None:
        await self.send(text_data=json.dumps({"error": message}))
