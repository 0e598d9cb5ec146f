"""Flow control toward one client: a small buffer that drops the oldest frame, never waits.

Frames arrive from the upstream at the producer's pace. A sender task writes them to the
client's socket as fast as the socket takes them: under daphne (``python -m studio.serve``)
it waits while the connection's write buffer is full (the ``studio.backpressure`` extension
below), so a slow client fills this buffer instead of the server's memory, and the oldest
frames are dropped and counted. The producer is never slowed down.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Any

BACKPRESSURE_EXTENSION = "studio.backpressure"


class FrameBuffer:
    """At most ``size`` frames; putting one into a full buffer drops the oldest."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.dropped = 0
        self._frames: collections.deque[bytes] = collections.deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: bytes) -> None:
        if len(self._frames) >= self.size:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(frame)
        self._ready.set()

    async def get(self) -> bytes:
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        return self._frames.popleft()

    def clear(self) -> int:
        """Forget the frames waiting (counted as dropped); returns how many."""
        n = len(self._frames)
        self._frames.clear()
        self.dropped += n
        return n


class ClientSender:
    """Moves frames from a :class:`FrameBuffer` to the client, measuring what it delivers."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]], buffer_size: int,
                 backpressure: Any = None) -> None:
        self.buffer = FrameBuffer(buffer_size)
        self.sent = 0
        self.last_frame_at: float | None = None  # monotonic time of the last frame from upstream
        self._send = send
        self._backpressure = backpressure
        self._window: collections.deque[float] = collections.deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None

    @property
    def dropped(self) -> int:
        return self.buffer.dropped

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def push(self, frame: bytes) -> None:
        """A frame from upstream (never waits)."""
        self.last_frame_at = time.monotonic()
        self._idle.clear()
        self.buffer.put(frame)

    def fps(self, window_s: float = 2.0) -> float:
        """Frames delivered per second over the last ``window_s``."""
        now = time.monotonic()
        while self._window and now - self._window[0] > window_s:
            self._window.popleft()
        if len(self._window) < 2:
            return float(len(self._window))
        return round(len(self._window) / max(now - self._window[0], window_s / 4), 2)

    async def drain(self, timeout: float) -> bool:
        """Wait until every buffered frame has been written (or ``timeout``)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self) -> None:
        """Stop sending; frames still buffered count as dropped."""
        self.buffer.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            if not len(self.buffer):
                self._idle.set()
            frame = await self.buffer.get()
            if self._backpressure is not None:
                await self._backpressure.wait_writable()
            await self._send(frame)
            self.sent += 1
            self._window.append(time.monotonic())
            if not len(self.buffer):
                self._idle.set()
