"""Talking to ``/ws/realtime/`` the way a client does: one message at a time, in order."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
from channels.testing import WebsocketCommunicator

from studio.asgi import application

SMALL = {"width": 64, "height": 64}  # the smallest size: the tiny pipeline is quickest there


@dataclass
class Transcript:
    """What a client saw, in order: ("text", dict) / ("frame", bytes) / ("close", code)."""

    events: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def texts(self) -> list[dict[str, Any]]:
        return [e for kind, e in self.events if kind == "text"]

    @property
    def frames(self) -> list[bytes]:
        return [e for kind, e in self.events if kind == "frame"]

    @property
    def statuses(self) -> list[str]:
        return [t["status"] for t in self.texts if "status" in t]

    @property
    def errors(self) -> list[str]:
        return [t["error"] for t in self.texts if "error" in t]

    @property
    def close_code(self) -> int | None:
        closes = [e for kind, e in self.events if kind == "close"]
        return closes[-1] if closes else None

    def last(self, status: str) -> dict[str, Any] | None:
        found = [t for t in self.texts if t.get("status") == status]
        return found[-1] if found else None


class RealtimeClient:
    """A WebsocketCommunicator on ``/ws/realtime/`` that records everything it receives."""

    def __init__(self, path: str = "/ws/realtime/?backend=local", headers=None) -> None:
        self.communicator = WebsocketCommunicator(application, path, headers=headers or [])
        self.seen = Transcript()
        self.closed = False

    async def connect(self) -> tuple[bool, Any]:
        connected, code = await self.communicator.connect(timeout=10)
        if not connected:
            await self._hang_up(code)
        return connected, code

    async def _hang_up(self, code: Any) -> None:
        """What daphne does once a socket is closed: tell the application, and let it finish
        inside the test (left running, its channel-layer read is cancelled at the loop's
        teardown, where a swallowed cancellation can leave channels_redis polling Redis)."""
        self.closed = True
        await self.communicator.send_input({"type": "websocket.disconnect", "code": code or 1000})
        await self.communicator.wait(10)

    async def send(self, message: Any) -> None:
        await self.communicator.send_to(bytes_data=msgpack.packb(message))

    async def send_raw(self, *, text: str | None = None, data: bytes | None = None) -> None:
        await self.communicator.send_input({"type": "websocket.receive", "text": text, "bytes": data})

    async def next(self, timeout: float = 30) -> tuple[str, Any]:
        output = await self.communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            event = ("close", output.get("code", 1000))
            await self._hang_up(event[1])
        elif output.get("bytes") is not None:
            event = ("frame", output["bytes"])
        else:
            event = ("text", json.loads(output["text"]))
        self.seen.events.append(event)
        return event

    async def until(self, predicate, timeout: float = 60) -> tuple[str, Any]:
        """Read until an event matches ``predicate(kind, value)``; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching message within {timeout} s; saw {self.seen.statuses[-5:]}")
            kind, value = await self.next(left)
            if predicate(kind, value):
                return kind, value
            if kind == "close":
                raise AssertionError(f"closed ({value}) before a matching message; saw {self.seen.texts[-5:]}")

    async def status(self, status: str, timeout: float = 60) -> dict[str, Any]:
        return (await self.until(lambda k, v: k == "text" and v.get("status") == status, timeout))[1]

    async def error(self, timeout: float = 30) -> str:
        return (await self.until(lambda k, v: k == "text" and "error" in v, timeout))[1]["error"]

    async def to_end(self, timeout: float = 120) -> Transcript:
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the stream did not end within {timeout} s; saw {self.seen.statuses[-5:]}")
            await self.next(left)
        return self.seen

    async def disconnect(self) -> None:
        if not self.closed:
            self.closed = True
            await self.communicator.disconnect(timeout=10)
        await asyncio.sleep(0)


async def opened(headers, path: str = "/ws/realtime/?backend=local") -> RealtimeClient:
    """A connected client that has received ``{"status": "ready"}``."""
    client = RealtimeClient(path, headers)
    connected, _ = await client.connect()
    assert connected
    assert await client.next(10) == ("text", {"status": "ready"})
    return client


async def session_row(session_id):
    """The session's row, with its video."""
    from asgiref.sync import sync_to_async

    from videogen.models import RealtimeSession

    return await sync_to_async(RealtimeSession.objects.select_related("video").get)(pk=session_id)


async def wait_for_final(session_id, timeout: float = 60):
    """The session's row once it is final (and, if completed, has its video), or whatever it
    is after ``timeout`` seconds. Polls with asyncio.sleep, never a blocking wait, so the
    embedded pass's shared sync thread stays free."""
    from videogen.models import SessionStatus

    deadline = time.monotonic() + timeout
    while True:
        session = await session_row(session_id)
        if session.status not in (SessionStatus.QUEUED, SessionStatus.STREAMING) and \
                (session.video_id or session.status != SessionStatus.COMPLETED or time.monotonic() > deadline):
            return session
        if time.monotonic() > deadline:
            return session
        await asyncio.sleep(0.1)


def picture(colour: str, index: int = 0, width: int = 832, height: int = 480) -> bytes:
    """A JPEG in ``colour`` with a moving bar (``index``), as a webcam or a drawing would send."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), colour)
    x = (index * 37) % width
    ImageDraw.Draw(image).rectangle((x, 0, x + width // 8, height), fill="white")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def frame_difference(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two JPEG frames (0-255)."""
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(a)) as first, Image.open(io.BytesIO(b)) as second:
        return float(np.abs(np.asarray(first, dtype=np.float32) - np.asarray(second, dtype=np.float32)).mean())


def params(**overrides: Any) -> dict[str, Any]:
    return {"prompt": "a red fox in the snow", **SMALL, "num_blocks": 2, "seed": 7, **overrides}
