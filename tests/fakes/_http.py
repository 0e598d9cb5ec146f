"""Shared plumbing for the fake HTTP providers: a threaded HTTP/1.1 server and call records.

A subclass of :class:`FakeHTTPService` implements :meth:`FakeHTTPService.handle`, which gets
a parsed :class:`Request` and returns a :class:`Reply`, or ``None`` to drop the connection
without answering (to imitate a proxy or runner dying mid-request).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote


class Headers(dict[str, str]):
    """A dict of request headers whose lookups ignore case (keys are stored lower-cased)."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__()
        for key, value in dict(items).items():
            self[key] = value

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class Request:
    """One HTTP request as the fake saw it (path without query, query values flattened)."""

    method: str
    path: str
    query: dict[str, str]
    headers: Headers
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON; raises ``ValueError`` when it is not JSON."""
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Reply:
    """What to answer: status, body bytes and extra headers (Content-Length is added)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    """A JSON reply with ``Content-Type: application/json``."""
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return Reply(status, json.dumps(payload).encode(), all_headers)


def field_error(loc: str, msg: str, kind: str = "value_error") -> dict[str, Any]:
    """One FastAPI/pydantic-style validation error entry for a body field."""
    return {"loc": ["body", loc], "msg": msg, "type": kind}


def body_error(msg: str, kind: str = "json_invalid") -> Reply:
    """A 422 whose single error is about the body as a whole."""
    return json_reply(422, {"detail": [{"loc": ["body"], "msg": msg, "type": kind}]})


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck handler must never keep a test process alive
    block_on_close = False
    allow_reuse_address = True  # tests start and stop many instances, often on reused ports

    def __init__(self, address: tuple[str, int], fake: FakeHTTPService) -> None:
        self.fake = fake
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real providers
    timeout = 30  # idle keep-alive connections do not pin a thread forever
    # Headers and body leave in one segment (flushed per request by handle_one_request) and
    # TCP_NODELAY is set: otherwise Nagle + delayed ACK add ~40 ms to every request.
    wbufsize = 1 << 16
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Stay quiet: test output should not fill with access logs."""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, False)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        raw_path, _, raw_query = self.path.partition("?")
        query = {k: v[-1] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
        request = Request(
            method=self.command,
            path=unquote(raw_path),
            query=query,
            headers=Headers(self.headers.items()),
            body=self._read_body(),
        )
        try:
            reply = self.server.fake._serve(request)
        except Exception:  # a bug in the fake should show up in the test, not hang it
            reply = json_reply(
                500, {"detail": "fake server error", "trace": traceback.format_exc()}
            )
        if reply is None:
            self.close_connection = True  # read the request, then hang up without a word
            return
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


class FakeHTTPService:
    """Base of the fakes: start()/stop(), context manager, thread-safe records of calls."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.lock = threading.RLock()
        self.calls: list[dict[str, Any]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server (a wildcard bind shows as 127.0.0.1)."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        """Bind (port 0 picks a free one) and serve from a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-http-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, free the port and cut open keep-alive connections."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self.lock:
            connections = list(self._connections)
        for conn in connections:
            # Handler threads blocked reading a keep-alive socket wake up and exit.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, method: str, path_prefix: str) -> int:
        """How many received requests had this method ("*" for any) and path prefix."""
        with self.lock:
            return sum(
                1
                for call in self.calls
                if method in ("*", call["method"], call["method"].lower())
                and call["path"].startswith(path_prefix)
            )

    def handle(self, request: Request) -> Reply | None:
        """Answer one request; ``None`` drops the connection. Subclasses implement this."""
        raise NotImplementedError

    def sleep(self, seconds: float) -> bool:
        """Sleep unless stopped meanwhile (returns False then), so stop() stays prompt."""
        return not self._stopping.wait(max(0.0, seconds))

    def take(self, switch: str) -> bool:
        """Consume one unit of a counter switch (e.g. ``reject_next``); True if one was left."""
        with self.lock:
            left = getattr(self, switch)
            if left and left > 0:
                setattr(self, switch, left - 1)
                return True
            return False

    def _serve(self, request: Request) -> Reply | None:
        with self.lock:
            self.calls.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": dict(request.query),
                    "headers": Headers(request.headers),
                    "body": request.body,
                    "time": time.time(),
                }
            )
        return self.handle(request)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self.lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)
