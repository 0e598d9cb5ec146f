"""A WebSocket client on a bare socket, for tests that must control when bytes are read.

Client libraries read ahead into their own buffers, so a test using one cannot be a client
that truly stops reading. This one reads nothing until asked, on a socket whose receive
window is as small as the kernel allows: the server feels a slow client at once.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import struct

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class RawWebSocket:
    def __init__(self, host: str, port: int, path: str, *, headers: dict[str, str] | None = None,
                 receive_buffer: int | None = 4096, timeout: float = 30) -> None:
        self.sock = socket.socket()
        if receive_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self._buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
                 *(f"{k}: {v}" for k, v in (headers or {}).items())]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = self._read_until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        if self.status != 101:
            raise ConnectionRefusedError(f"handshake answered HTTP {self.status}")
        self.close_code: int | None = None

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self._buffer += chunk
        head, self._buffer = self._buffer.split(marker, 1)
        return head

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def send(self, payload: bytes | str) -> None:
        """One masked frame (text for str, binary for bytes)."""
        opcode = TEXT if isinstance(payload, str) else BINARY
        self._send_frame(opcode, payload.encode() if isinstance(payload, str) else payload)

    def _send_frame(self, opcode: int, data: bytes) -> None:
        header = bytes([0x80 | opcode])
        n = len(data)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 2**16:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self) -> str | bytes | None:
        """The next text (str) or binary (bytes) message; None once the server closed.
        Pings are answered; fragmented messages are not used by the studio."""
        while True:
            first, second = self._read(2)
            opcode, n = first & 0x0F, second & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            data = self._read(n)
            if opcode == PING:
                self._send_frame(PONG, data)
            elif opcode == CLOSE:
                self.close_code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                return None
            elif opcode == TEXT:
                return data.decode()
            elif opcode == BINARY:
                return data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_frame(CLOSE, struct.pack("!H", 1000))
        self.sock.close()
