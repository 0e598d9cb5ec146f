"""Django's WSGI handler inside the ASGI server, on a fixed set of long-lived request threads.

Every view of the studio is synchronous. Under Django's ASGI handler each request gets a
thread made for it (200 requests at once: 200 threads, each with its own database
connection) and hops between that thread and the event loop once per synchronous
middleware. :class:`ThreadedWSGI` instead reads the request body on the event loop, then runs
the whole WSGI request (middleware, view, database) on one of ``threads`` threads kept for
the life of the process; a request that finds them all busy waits in the queue without
holding a thread. So the threads are bounded and reused, and with a connection pool
(``DATABASE_POOL_SIZE``) the database connections are too. WebSockets stay on the event loop.
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from tempfile import SpooledTemporaryFile
from typing import Any

BODY_IN_MEMORY = 1 << 20  # request bodies past this are spooled to a temporary file
MAX_DUPLICATE_HEADERS = 100


def wsgi_environ(scope: dict, body: Any) -> dict[str, Any]:
    """The WSGI environ of an ASGI HTTP ``scope`` whose body is the file ``body``."""
    script_name = scope.get("root_path", "").encode("utf8").decode("latin1")
    path_info = scope["path"].encode("utf8").decode("latin1")
    if path_info.startswith(script_name):
        path_info = path_info[len(script_name):]
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"], "SCRIPT_NAME": script_name, "PATH_INFO": path_info,
        "QUERY_STRING": scope.get("query_string", b"").decode("latin1"),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "SERVER_NAME": server[0], "SERVER_PORT": str(server[1] if server[1] is not None else 0),
        "wsgi.version": (1, 0), "wsgi.url_scheme": scope.get("scheme", "http"), "wsgi.input": body,
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    if scope.get("client"):
        environ["REMOTE_ADDR"] = scope["client"][0]
    headers: dict[str, list[str]] = defaultdict(list)
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin1").lower()
        key = {"content-length": "CONTENT_LENGTH", "content-type": "CONTENT_TYPE"}.get(
            name, "HTTP_" + name.upper().replace("-", "_"))
        if len(headers[key]) >= MAX_DUPLICATE_HEADERS:
            raise ValueError(f"too many {name} headers")
        headers[key].append(raw_value.decode("latin1"))
    for key, values in headers.items():
        environ[key] = ("; " if key == "HTTP_COOKIE" else ",").join(values)
    return environ


class ThreadedWSGI:
    """An ASGI application running a WSGI one on ``threads`` long-lived threads."""

    def __init__(self, wsgi_application: Any, threads: int) -> None:
        self.wsgi = wsgi_application
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="studio-request")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"ThreadedWSGI serves HTTP, not {scope['type']}")
        with SpooledTemporaryFile(max_size=BODY_IN_MEMORY) as body:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body.write(message.get("body", b""))
                if not message.get("more_body"):
                    break
            body.seek(0)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.executor, self._run, scope, body, send, loop)

    def _run(self, scope: dict, body: Any, send: Any, loop: asyncio.AbstractEventLoop) -> None:
        """On a request thread: the WSGI call, its answer sent through the event loop."""

        def deliver(message: dict) -> None:
            asyncio.run_coroutine_threadsafe(send(message), loop).result()

        started: list[dict] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
            if exc_info and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [{"type": "http.response.start", "status": int(status.split(" ", 1)[0]),
                           "headers": [(k.lower().encode("latin1"), v.encode("latin1")) for k, v in headers]}]

        result = self.wsgi(wsgi_environ(scope, body), start_response)
        try:
            sent_start = False
            for chunk in result:
                if not chunk:
                    continue
                if not sent_start:
                    deliver(started[0])
                    sent_start = True
                deliver({"type": "http.response.body", "body": chunk, "more_body": True})
            if not sent_start:
                deliver(started[0])
            deliver({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
