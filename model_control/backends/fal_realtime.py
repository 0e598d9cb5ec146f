"""fal's realtime Krea WAN-14B: a WebSocket the studio opens with a token it mints itself.

The stream backend behind ``/ws/realtime/?backend=fal``: the studio connects to
``{FAL_REALTIME_URL}/fal-ai/krea-wan-14b/ws`` with a short-lived token (the key never leaves
the server), waits for ``{"status": "ready"}``, sends the session's parameters as one msgpack
map, relays fal's JPEG frames to its listener and the client's updates to fal, and reports
how it ended. Recording and the session's state are the studio's business
(``records_at_source`` is False: the studio records what it relays). docs/protocols.md,
"fal temporary tokens and realtime WebSocket".
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import msgpack
from asgiref.sync import sync_to_async
from django.conf import settings

from model_control.backends.fal_queue import FAL_NOT_CONFIGURED, fal_client, fal_missing
from model_control.backends.port import Backend, StreamBackend, StreamLimits, realtime_params
from model_control.catalog import REALTIME, VideoModel
from model_control.errors import ProviderError
from model_control.redaction import hide_hosts, redact

logger = logging.getLogger(__name__)

APP = "krea-wan-14b"
MODEL_ID = f"fal-ai/{APP}"
TOKEN_TTL_S = 120
CONNECT_TIMEOUT_S = 10.0
MAX_MESSAGE_BYTES = 10 * 2**20 + 2**16  # a frame or an image, with the map around it


class FalRealtimeBackend(Backend, StreamBackend):
    name = "fal-realtime"
    title = "fal.ai realtime"
    key = "fal"
    model_id = MODEL_ID
    description = "fal.ai's Krea WAN 14B, relayed by the studio: the key stays on the server."
    records_at_source = False

    @property
    def limits(self) -> StreamLimits:
        return StreamLimits(size_multiple=8, takes_images=True, max_blocks=settings.STUDIO_REALTIME_MAX_BLOCKS,
                            default_blocks=settings.STUDIO_REALTIME_DEFAULT_BLOCKS)

    def models(self) -> list[VideoModel]:
        return [VideoModel(MODEL_ID, "Krea WAN 14B realtime (fal)", self.name, REALTIME,
                           realtime_params(self.limits), backend_title=self.title, endpoint=f"{MODEL_ID}/ws",
                           description="Frames stream over a WebSocket; prompts can change mid-stream.")]

    def missing(self) -> str | None:
        return fal_missing()

    def not_configured_message(self) -> str:
        return FAL_NOT_CONFIGURED

    def apps(self) -> list[str]:
        """fal app aliases a temporary token may be minted for."""
        return [APP]

    def open(self, listener: Any, session: Any, params: Any) -> FalRealtimeStream:
        return FalRealtimeStream(listener, session, params)


def update_wire(update: dict[str, Any]) -> dict[str, Any]:
    """A parsed update as fal's endpoint takes it (``reset`` is ``action: "reset"``)."""
    out = {k: v for k, v in update.items() if k != "reset"}
    if update.get("reset"):
        out["action"] = "reset"
    return out


class FalRealtimeStream:
    """One session relayed to fal (see the module docstring)."""

    def __init__(self, listener: Any, session: Any, params: Any) -> None:
        self.listener = listener
        self.session = session
        self.params = params
        self.started = False
        self._ws = None
        self._task: asyncio.Task | None = None
        self._pending: list[dict[str, Any]] = []
        self._closing = False

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def update(self, update: dict[str, Any]) -> None:
        if self._ws is None:
            self._pending.append(update)
            return
        await self._ws.send(msgpack.packb(update_wire(update)))

    async def keepalive(self) -> None:
        pass  # fal's socket is held open by this process

    async def close(self) -> None:
        pass  # the relay task ends with fal's socket

    async def stop(self) -> None:
        """The client left: close fal's socket and let the relay end."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None and self._task is not asyncio.current_task():
            await asyncio.wait([self._task], timeout=8)

    async def _connect(self):
        import websockets

        token = await sync_to_async(lambda: fal_client().mint_token([APP], TOKEN_TTL_S), thread_sensitive=False)()
        url = f"{settings.FAL_REALTIME_URL}/fal-ai/{APP}/ws?fal_jwt_token={token}"
        return await websockets.connect(url, max_size=MAX_MESSAGE_BYTES, open_timeout=CONNECT_TIMEOUT_S,
                                        close_timeout=2, ping_interval=20)

    async def _run(self) -> None:
        error = ""
        try:
            ws = await self._connect()
            try:
                ready = await asyncio.wait_for(ws.recv(), CONNECT_TIMEOUT_S)
                if not isinstance(ready, str) or json.loads(ready).get("status") != "ready":
                    raise FalRelayError("fal's realtime endpoint did not say it was ready")
                await ws.send(msgpack.packb(self.params.wire()))
                self._ws = ws
                for update in self._pending:
                    await ws.send(msgpack.packb(update_wire(update)))
                self._pending = []
                self.started = True
                await self.listener.upstream_started({
                    "width": self.params.width, "height": self.params.height, "seed": self.params.seed,
                    "num_blocks": self.params.num_blocks, "num_denoising_steps": self.params.num_denoising_steps,
                    "model": MODEL_ID})
                error = await self._relay(ws)
            finally:
                self._ws = None
                await ws.close()
        except ProviderError as exc:
            error = exc.message
        except FalRelayError as exc:
            error = str(exc)
        except (OSError, TimeoutError) as exc:
            error = f"cannot reach fal's realtime endpoint ({type(exc).__name__})"
        except Exception as exc:  # websockets' handshake and protocol errors
            logger.warning("fal realtime relay failed: %s", redact(repr(exc)))
            error = f"fal's realtime endpoint refused or broke the stream ({type(exc).__name__})"
        if error:
            await self.listener.upstream_error(redact(hide_hosts(error)))
        else:
            await self.listener.upstream_completed({})

    async def _relay(self, ws) -> str:
        """Frames to the listener until fal completes; returns an error message or ''."""
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in ws:
                if isinstance(message, bytes):
                    self.listener.upstream_frame(message)
                    continue
                try:
                    data = json.loads(message)
                except ValueError:
                    continue
                if not isinstance(data, dict):
                    continue
                if data.get("error"):
                    return f"fal: {data['error']}"
                if data.get("status") == "completed":
                    return ""
            code = ws.close_code
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else 1006
        if self._closing:
            return ""
        return f"fal's realtime endpoint closed the stream (code {code}) before it completed"


class FalRelayError(Exception):
    """fal's endpoint said something the relay cannot go on from."""
