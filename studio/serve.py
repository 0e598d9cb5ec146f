"""``python -m studio.serve``: daphne, plus write backpressure for WebSockets.

The same command line as ``python -m daphne``. The one difference: every WebSocket scope
carries ``extensions["studio.backpressure"]``, an object whose ``wait_writable()`` returns
once the connection's write buffer has room. ASGI has no such signal (``websocket.send``
returns at once and daphne buffers without limit), so without it a client that reads slower
than frames arrive would make the server hold every frame in memory; with it the realtime
consumer drops old frames instead (videogen/realtime/flow.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server

logger = logging.getLogger(__name__)

BACKPRESSURE_EXTENSION = "studio.backpressure"


class TransportBackpressure:
    """A Twisted streaming producer on one connection's transport: Twisted pauses it when
    the transport's write buffer passes its limit (64 KiB) and resumes it once drained."""

    def __init__(self, transport: Any) -> None:
        self._writable = asyncio.Event()
        self._writable.set()
        self.pauses = 0
        transport.registerProducer(self, True)

    async def wait_writable(self) -> None:
        await self._writable.wait()

    # Twisted's IPushProducer; called on the reactor's thread, which is asyncio's.
    def pauseProducing(self) -> None:  # noqa: N802
        self.pauses += 1
        self._writable.clear()

    def resumeProducing(self) -> None:  # noqa: N802
        self._writable.set()

    def stopProducing(self) -> None:  # noqa: N802
        self._writable.set()


class StudioServer(Server):
    def create_application(self, protocol, scope):
        if scope.get("type") == "websocket":
            transport = getattr(protocol, "transport", None)
            try:
                extension = TransportBackpressure(transport)
            except (AttributeError, RuntimeError) as exc:  # no transport, or a producer already there
                logger.debug("no write backpressure for this socket: %s", exc)
            else:
                scope["extensions"] = {**(scope.get("extensions") or {}), BACKPRESSURE_EXTENSION: extension}
        return super().create_application(protocol, scope)


class StudioCommandLine(CommandLineInterface):
    server_class = StudioServer


if __name__ == "__main__":
    StudioCommandLine.entrypoint()
