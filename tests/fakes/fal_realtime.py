"""The Krea WAN-14B realtime WebSocket of :class:`tests.fakes.fal.FakeFal`.

Speaks docs/protocols.md, "fal temporary tokens and realtime WebSocket": ``{"status": "ready"}``,
one msgpack map of parameters, then JPEG frames a block at a time (9, then 12 per block),
``{"status": "completed", "session_id"}`` and close 1000. Runs an asyncio ``websockets``
server in its own thread with its own event loop; state lives on the owning FakeFal.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import msgpack
from PIL import Image
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes.media import jpeg_frame

if TYPE_CHECKING:
    from tests.fakes.fal import FakeFal

WS_PATH = "/fal-ai/krea-wan-14b/ws"
REALTIME_APP = "krea-wan-14b"
FIRST_BLOCK_FRAMES = 9  # the very first block drops 3 of its 12 frames
BLOCK_FRAMES = 12
KNOWN_PARAMS = {
    "prompt",
    "width",
    "height",
    "num_blocks",
    "num_denoising_steps",
    "seed",
    "strength",
    "start_frame",
    "kv_cache_num_frames",
    "timestep_shift",
    # the rest of Krea's GenerateParams (release_server.py), which fal's endpoint serves
    "interp_steps", "interp_blocks", "context_noise", "keep_first_frame", "block_on_frame", "webcam_mode",
    "webcam_fps", "request_id", "resume_latents", "input_video",
}
KNOWN_UPDATES = {"prompt", "seed", "action", "image", "strength", "timestamp", "interp_steps", "interpolation_steps",
                 "request_id"}


class ParamError(ValueError):
    """A client message the real server would refuse; the text names the field."""


def _int(msg: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = msg.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ParamError(f"{name} must be an integer between {low} and {high}")
    return value


def _number(msg: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = msg.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ParamError(f"{name} must be a number between {low} and {high}")
    return float(value)


def _decode(raw: str | bytes) -> dict[str, Any]:
    if isinstance(raw, str):
        raise ParamError("messages must be binary msgpack maps, got a text frame")
    try:
        msg = msgpack.unpackb(raw, raw=False)
    except Exception as exc:
        raise ParamError(f"message is not valid msgpack: {exc}") from exc
    if not isinstance(msg, dict):
        raise ParamError("message must be a msgpack map")
    return msg


def _prompt(msg: dict[str, Any]) -> str:
    prompt = msg.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ParamError("prompt is required and must be a non-empty string")
    return prompt


def parse_params(raw: str | bytes) -> dict[str, Any]:
    """Validate the first client message and fill in defaults; raises ParamError."""
    msg = _decode(raw)
    unknown = sorted(set(msg) - KNOWN_PARAMS)
    if unknown:  # stricter than Krea's server on purpose: a misspelt field is a client bug
        raise ParamError(f"unknown field(s): {', '.join(map(str, unknown))}")
    params: dict[str, Any] = {"prompt": _prompt(msg)}
    for name, default in (("width", 832), ("height", 480)):
        params[name] = _int(msg, name, default, 64, 2048)
        if params[name] % 8:
            raise ParamError(f"{name} must be a multiple of 8 between 64 and 2048")
    params["num_blocks"] = _int(msg, "num_blocks", 3, 1, 2**31 - 1)  # Krea's server sets no upper bound
    params["num_denoising_steps"] = _int(msg, "num_denoising_steps", 4, 1, 8)
    params["seed"] = _int(msg, "seed", random.randint(0, 2**24), 0, 2**24)
    params["strength"] = _number(msg, "strength", 1.0, 0.0, 1.0)
    params["kv_cache_num_frames"] = _int(msg, "kv_cache_num_frames", 3, 1, 21)
    params["timestep_shift"] = _number(msg, "timestep_shift", 5.0, 0.0, 100.0)
    if "start_frame" in msg:
        frame = msg["start_frame"]
        try:
            if not isinstance(frame, bytes):
                raise TypeError
            with Image.open(io.BytesIO(frame)) as image:
                if image.format != "JPEG":
                    raise TypeError
        except Exception as exc:
            raise ParamError("start_frame must be JPEG bytes (msgpack bin)") from exc
        params["start_frame"] = frame
    return params


class _State:
    """Per-session generation state shared by the frame loop and the update reader."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.prompt: str = params["prompt"]
        self.pending_prompt: str | None = None
        self.seed: int = params["seed"]
        self.reset = False


class RealtimeServer:
    """The WebSocket endpoint; reads switches and token table from its FakeFal."""

    def __init__(self, fake: FakeFal, host: str, port: int) -> None:
        self.fake = fake
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``ws://host:port`` (the FAL_REALTIME_URL setting)."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"ws://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve from a daemon thread with its own event loop."""
        if self._thread is not None:
            return
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # report bind errors to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"FakeFal-ws-{self.port}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread, self._loop = None, None
            raise failure[0]

    async def _open(self) -> None:
        self._server = await serve(
            self._session,
            self.host,
            self.port,
            process_request=self._check_handshake,
            max_size=16 * 2**20,  # start_frame / image updates can exceed the 1 MiB default
            close_timeout=1,  # stop() must not wait 10 s for a silent client
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Close every connection, free the port and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._loop, self._thread, self._server = None, None, None

    async def _close(self) -> None:
        server = self._server
        if server is None:
            return
        connections = list(server.connections)
        server.close(close_connections=True)
        try:
            await asyncio.wait_for(server.wait_closed(), 2)
        except TimeoutError:
            for conn in connections:
                conn.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=1)

    def _check_handshake(self, conn: ServerConnection, request: Request) -> Response | None:
        parsed = urlsplit(request.path)
        token = parse_qs(parsed.query).get("fal_jwt_token", [""])[-1]
        status = 101
        if parsed.path != WS_PATH:
            status = 404
        elif not self.fake.token_allows(token, REALTIME_APP):
            status = 401
        with self.fake.lock:
            self.fake.ws_handshakes.append({"path": request.path, "status": status})
        if status == 404:
            return conn.respond(404, "Not Found\n")
        if status == 401:
            return conn.respond(401, "Invalid or expired fal_jwt_token\n")
        return None

    def _record(self, session: dict[str, Any], raw: str | bytes) -> None:
        try:
            entry: Any = msgpack.unpackb(raw, raw=False) if isinstance(raw, bytes) else raw
        except Exception:
            entry = raw
        with self.fake.lock:
            session["messages"].append(entry)

    async def _fail(self, conn: ServerConnection, session: dict[str, Any], error: str) -> None:
        with self.fake.lock:
            session["errors"].append(error)
            session["closed"] = "error"
        await conn.send(json.dumps({"error": error}))
        await conn.close(1000)

    async def _session(self, conn: ServerConnection) -> None:
        assert conn.request is not None
        query = parse_qs(urlsplit(conn.request.path).query)
        session: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "path": conn.request.path,
            "fmt": query.get("fmt", ["jpeg"])[-1],
            "params": None,
            "messages": [],
            "frames_sent": 0,
            "prompts": [],  # prompt updates received while streaming
            "seeds": [],
            "resets": 0,
            "images": [],  # {size, strength, timestamp} of image updates
            "errors": [],
            "closed": None,  # "completed" | "error" | "dropped" | "client" | "server"
            "started_at": time.time(),
        }
        with self.fake.lock:
            self.fake.ws_sessions.append(session)
        reader: asyncio.Task[None] | None = None
        try:
            await conn.send(json.dumps({"status": "ready"}))
            first = await conn.recv()
            self._record(session, first)
            try:
                params = parse_params(first)
            except ParamError as exc:
                await self._fail(conn, session, str(exc))
                return
            with self.fake.lock:
                session["params"] = params
            state = _State(params)
            reader = asyncio.create_task(self._read_updates(conn, session, state))
            await self._stream(conn, session, state)
        except ConnectionClosed:
            with self.fake.lock:
                session["closed"] = session["closed"] or "client"
        except asyncio.CancelledError:
            with self.fake.lock:
                session["closed"] = session["closed"] or "server"
            raise
        finally:
            if reader is not None:
                reader.cancel()

    async def _read_updates(
        self, conn: ServerConnection, session: dict[str, Any], state: _State
    ) -> None:
        try:
            async for raw in conn:
                self._record(session, raw)
                try:
                    msg = _decode(raw)
                    unknown = sorted(set(msg) - KNOWN_UPDATES)
                    if unknown:
                        raise ParamError(f"unknown field(s): {', '.join(map(str, unknown))}")
                    self._apply_update(session, state, msg)
                except ParamError as exc:
                    await self._fail(conn, session, str(exc))
                    return
        except ConnectionClosed:
            pass

    def _apply_update(self, session: dict[str, Any], state: _State, msg: dict[str, Any]) -> None:
        with self.fake.lock:
            if "prompt" in msg:
                state.pending_prompt = _prompt(msg)  # takes effect from the next block
                session["prompts"].append(state.pending_prompt)
            if "seed" in msg:
                state.seed = _int(msg, "seed", 0, 0, 2**24)
                session["seeds"].append(state.seed)
            if "action" in msg:
                if msg["action"] != "reset":
                    raise ParamError("action must be 'reset'")
                state.reset = True
                session["resets"] += 1
            if "image" in msg:
                if not isinstance(msg["image"], bytes):
                    raise ParamError("image must be JPEG bytes (msgpack bin)")
                session["images"].append(
                    {
                        "size": len(msg["image"]),
                        "strength": msg.get("strength"),
                        "timestamp": msg.get("timestamp"),
                    }
                )

    async def _stream(self, conn: ServerConnection, session: dict[str, Any], state: _State) -> None:
        fake = self.fake
        params = session["params"]
        # Frames are rendered at a quarter of the requested size to keep the fake fast;
        # clients must not rely on the JPEG's pixel size.
        width, height = max(16, params["width"] // 4), max(16, params["height"] // 4)
        block = 0
        frame_index = 0
        while block < params["num_blocks"]:
            with fake.lock:
                if state.reset:  # restart block counting at a block boundary
                    state.reset, block = False, 0
                if state.pending_prompt is not None:
                    state.prompt, state.pending_prompt = state.pending_prompt, None
                prompt = state.prompt
            for _ in range(FIRST_BLOCK_FRAMES if block == 0 else BLOCK_FRAMES):
                sent = session["frames_sent"]
                if fake.drop_after is not None and sent >= fake.drop_after:
                    with fake.lock:
                        session["closed"] = "dropped"
                    conn.transport.abort()  # no close frame: the client sees 1006
                    return
                if fake.error_after is not None and sent >= fake.error_after:
                    await self._fail(conn, session, "the runner failed while generating (internal error)")
                    return
                if fake.stall_after is not None and sent >= fake.stall_after:
                    with fake.lock:
                        session["stalled"] = True
                    await conn.wait_closed()  # socket stays open, nothing more is sent
                    with fake.lock:
                        session["closed"] = session["closed"] or "client"
                    return
                jpeg = jpeg_frame(prompt, frame_index, width, height)
                if session["fmt"] == "msgpack":
                    await conn.send(msgpack.packb({"image": jpeg, "request_id": session["id"]}))
                else:
                    await conn.send(jpeg)
                frame_index += 1
                with fake.lock:
                    session["frames_sent"] = sent + 1
                await asyncio.sleep(fake.frame_interval)
            block += 1
            if state.reset:
                block = 0
        with fake.lock:
            session["closed"] = "completed"
        await conn.send(json.dumps({"status": "completed", "session_id": session["id"]}))
        await conn.close(1000)
