"""``python -m studio.serve``: daphne, plus write backpressure and a message size that
answers instead of dropping, for WebSockets.

The same command line as ``python -m daphne``. The differences:

- every WebSocket scope carries ``extensions["studio.backpressure"]``, an object whose
  ``wait_writable()`` returns once the connection's write buffer has room. ASGI has no such
  signal (``websocket.send`` returns at once and daphne buffers without limit), so without it
  a client that reads slower than frames arrive would make the server hold every frame in
  memory; with it the realtime consumer drops old frames instead
  (videogen/realtime/flow.py). The kernel's own send buffer of each WebSocket is capped at
  ``STUDIO_REALTIME_SEND_BUFFER`` for the same reason;
- incoming messages may be as large as the realtime protocol allows
  (``protocol.MAX_MESSAGE_BYTES``: a 10 MiB image with its map; daphne's default is 1 MiB),
  and a larger one is answered with the protocol's error frame and skipped, its bytes never
  kept, the connection left open (autobahn, daphne's WebSocket layer, drops the TCP
  connection with no close code instead).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol

from videogen.realtime.flow import BACKPRESSURE_EXTENSION

logger = logging.getLogger(__name__)


class TransportBackpressure:
    """A Twisted streaming producer on one connection's transport: Twisted pauses it when
    the transport's write buffer passes its limit (64 KiB) and resumes it once drained."""

    def __init__(self, transport: Any) -> None:
        self._writable = asyncio.Event()
        self._writable.set()
        if getattr(transport, "producer", None) is not None:
            # The HTTP channel that upgraded the connection registered itself; it no longer
            # reads this connection, and its reaction to a full buffer (stop reading the
            # client) would also hold back a slow client's prompt updates.
            transport.unregisterProducer()
        transport.registerProducer(self, True)

    async def wait_writable(self) -> None:
        await self._writable.wait()

    # Twisted's IPushProducer; called on the reactor's thread, which is asyncio's.
    def pauseProducing(self) -> None:  # noqa: N802
        self._writable.clear()

    def resumeProducing(self) -> None:  # noqa: N802
        self._writable.set()

    def stopProducing(self) -> None:  # noqa: N802
        self._writable.set()


def cap_send_buffer(transport: Any, size: int) -> None:
    """Keep at most about ``size`` bytes queued in the kernel for this socket (0: leave the
    kernel's autotuning, up to 4 MiB on Linux). Beyond it writes wait in Twisted's buffer,
    where backpressure sees them: a slow reader then loses old frames instead of receiving
    seconds of stale video."""
    if size <= 0:
        return
    import socket

    handle = transport.getHandle() if hasattr(transport, "getHandle") else None
    if isinstance(handle, socket.socket):
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


# Seconds a client has to answer the studio's close frame. Autobahn's default (1 s) then
# aborts the TCP connection, and an abort discards what a slow client has not read yet:
# the end of a stream and its "completed" message with the recording's address.
CLOSE_HANDSHAKE_TIMEOUT_S = 10


class SizeLimitedWebSocket(WebSocketProtocol):
    """Daphne's WebSocket protocol, answering a message past the size limit with an error
    frame instead of dropping the connection: its frames are read and thrown away."""

    _oversized = 0  # the size of the message being skipped (0: none)

    def _max_message_size_exceeded(self, msg_size: int, max_msg_size: int, reason: str) -> None:
        if self._isMessageCompressed:  # never negotiated by daphne; autobahn's own way then
            super()._max_message_size_exceeded(msg_size, max_msg_size, reason)
            return
        self._oversized = max(self._oversized, msg_size)

    def onMessageFrameData(self, payload: bytes) -> None:  # noqa: N802
        if not self._oversized:
            super().onMessageFrameData(payload)

    def onMessageFrameEnd(self) -> None:  # noqa: N802
        if self._oversized:
            self.frame_data = None
            return
        super().onMessageFrameEnd()

    def onMessageEnd(self) -> None:  # noqa: N802
        if not self._oversized:
            super().onMessageEnd()
            return
        size, self._oversized = self._oversized, 0
        self.message_data = None
        logger.info("skipped a %d-byte WebSocket message from %s (the limit is %d)", size,
                    getattr(self, "client_addr", None), self.maxMessagePayloadSize)
        from videogen.realtime.protocol import too_large

        self.sendMessage(json.dumps(too_large(size)).encode(), isBinary=False)


class StudioServer(Server):
    @property
    def ws_factory(self):
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory) -> None:
        # Daphne builds its factory in run(); each connection's protocol comes from it.
        factory.protocol = SizeLimitedWebSocket
        self._ws_factory = factory

    def create_application(self, protocol, scope):
        if scope.get("type") == "websocket":
            protocol.closeHandshakeTimeout = CLOSE_HANDSHAKE_TIMEOUT_S
            transport = getattr(protocol, "transport", None)
            try:
                from django.conf import settings

                cap_send_buffer(transport, settings.STUDIO_REALTIME_SEND_BUFFER)
            except OSError as exc:
                logger.debug("cannot size this socket's send buffer: %s", exc)
            try:
                extension = TransportBackpressure(transport)
            except (AttributeError, RuntimeError) as exc:  # not a Twisted transport
                logger.warning("no write backpressure for this socket: %s", exc)
            else:
                scope["extensions"] = {**(scope.get("extensions") or {}), BACKPRESSURE_EXTENSION: extension}
        return super().create_application(protocol, scope)


class StudioCommandLine(CommandLineInterface):
    server_class = StudioServer

    def __init__(self) -> None:
        super().__init__()
        from videogen.realtime.protocol import MAX_MESSAGE_BYTES

        self.parser.set_defaults(websocket_max_message_size=MAX_MESSAGE_BYTES,
                                 websocket_max_frame_size=MAX_MESSAGE_BYTES)


if __name__ == "__main__":
    StudioCommandLine.entrypoint()
