"""Fake fal.ai: queue API, sync run, REST tokens and storage, CDN, signed webhooks, JWKS, and
the Krea WAN-14B realtime WebSocket (tests/fakes/fal_realtime.py), as docs/protocols.md describes.
It serves every URL fal's official Python client calls, its three upload paths included
(tests/fakes/fal_platform.py; tests/model_control/test_fal_official_client.py).

Run by hand: ``python -m tests.fakes.fal --port 9000`` prints the .env lines to use it.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from typing import Any, Self

from tests.fakes._cli import add_switch_args, exit_if_missing, run_until_interrupt

if __name__ == "__main__":  # run by hand: a missing package is one clear line, before anything
    exit_if_missing("fal", ("requests", "cryptography", "msgpack", "websockets", "PIL", "av"))

from tests.fakes._http import Reply, Request, body_error, field_error, json_reply  # noqa: E402
from tests.fakes.fal_platform import FalPlatform, now_iso  # noqa: E402
from tests.fakes.fal_realtime import RealtimeServer  # noqa: E402

PROMPT_REJECTED = {"detail": [field_error("prompt", "Prompt is not allowed")]}
RID = "x-fal-request-id"


class FakeFal(FalPlatform):
    """A fal.ai look-alike on loopback; switches are plain attributes, changeable any time.

    Queue timing uses the current ``queue_time``/``processing_time`` until a request
    completes (then it stays completed), so a test can hold requests with a large
    ``processing_time`` and release them by lowering it.
    """

    def __init__(
        self, key: str = "fal-test-key", host: str = "127.0.0.1", port: int = 0, ws_port: int = 0
    ) -> None:
        super().__init__(host, port)
        self.key = key
        # Switches.
        self.queue_time: float = 0.05
        self.processing_time: float = 0.2
        self.reject_next: int = 0
        self.complete_with_error: bool = False
        self.ingress_errors: int = 0
        self.app_errors: int = 0
        self.rate_limited: int = 0
        self.user_timeout: int = 0
        self.unauthorized: bool = False
        self.drop_next: int = 0
        self.cdn_errors: int = 0  # result files (videos) answer 503 this many times
        self.upload_errors: int = 0  # CDN uploads (POST /files/upload) answer 500 this many times
        self.webhook_retries: int = 3  # retries after a failed first attempt
        self.webhook_retry_delay: float = 0.2
        self.frame_interval: float = 0.02
        self.stall_after: int | None = None
        self.drop_after: int | None = None
        self.error_after: int | None = None  # realtime: {"error"} and close 1000 after N frames
        # Records (calls, minted_tokens, storage_tokens, uploads, webhook_deliveries: bases).
        self.requests: dict[str, dict[str, Any]] = {}
        self.ws_sessions: list[dict[str, Any]] = []
        self.ws_handshakes: list[dict[str, Any]] = []
        self._realtime = RealtimeServer(self, host, ws_port)
        self._ticker: threading.Thread | None = None

    SWITCHES = (
        "queue_time",
        "processing_time",
        "reject_next",
        "complete_with_error",
        "ingress_errors",
        "app_errors",
        "rate_limited",
        "user_timeout",
        "unauthorized",
        "drop_next",
        "cdn_errors",
        "upload_errors",
        "webhook_retries",
        "webhook_retry_delay",
        "frame_interval",
        "stall_after",
        "drop_after",
        "error_after",
    )

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:WSPORT`` of the realtime server."""
        return self._realtime.url

    @property
    def ws_port(self) -> int:
        """The WebSocket port (the bound one after start())."""
        return self._realtime.port

    def start(self) -> Self:
        """Start the HTTP server, the WebSocket server and the completion ticker."""
        super().start()
        try:
            self._realtime.start()
        except BaseException:
            super().stop()
            raise
        self._ticker = threading.Thread(target=self._tick, name="FakeFal-ticker", daemon=True)
        self._ticker.start()
        return self

    def stop(self) -> None:
        """Stop everything and free both ports."""
        self._realtime.stop()
        super().stop()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None
        if self._renderer is not None:
            self._renderer.shutdown(wait=True, cancel_futures=True)
            self._renderer = None

    def settings(self) -> dict[str, str]:
        """Django setting overrides pointing Studio at this fake."""
        return {
            "FAL_KEY": self.key,
            "FAL_QUEUE_URL": self.base_url,
            "FAL_RUN_URL": self.base_url + "/run",
            "FAL_REST_URL": self.base_url + "/rest",
            "FAL_CDN_URL": self.base_url + "/cdn",
            "FAL_REALTIME_URL": self.ws_url,
        }

    # -- routing ------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply | None:
        path, method = request.path, request.method
        if method in ("GET", "HEAD") and path.startswith("/cdn/files/"):
            if self.take("cdn_errors"):
                return json_reply(503, {"detail": "CDN unavailable"})
            return self._cdn_get(path[len("/cdn/files/") :])
        if self.take("drop_next"):
            return None
        if self.take("ingress_errors"):
            body = {"detail": "Service unavailable", "error_type": "runner_unavailable"}
            return json_reply(503, body, {"X-Fal-Error-Type": "runner_unavailable"})
        if self.take("rate_limited"):
            return json_reply(429, {"detail": "Rate limited"})
        if self.take("user_timeout"):
            body = {"detail": "Request timed out", "error_type": "request_timeout"}
            headers = {"X-Fal-Request-Timeout-Type": "user", "X-Fal-Error-Type": "request_timeout"}
            return json_reply(504, body, headers)
        route, key_auth = self._route(method, path)
        if route is None:
            if key_auth:
                return json_reply(404, {"detail": "Not Found"})
            return json_reply(405, {"detail": "Method Not Allowed"})
        if key_auth and (denied := self._check_key(request)) is not None:
            return denied
        if self.take("app_errors"):
            body = {"detail": "Service unavailable", "error_type": "runner_unavailable"}
            headers = {"X-Fal-Error-Type": "runner_unavailable", RID: str(uuid.uuid4())}
            return json_reply(503, body, headers)
        return route(request)

    def _route(self, method: str, path: str) -> tuple[Any, bool]:
        """(handler, needs Key auth); (None, True) for 404 and (None, False) for 405."""
        if path.startswith("/rest/") or path == "/rest":
            table = {
                ("GET", "/rest/.well-known/jwks.json"): (self._jwks, False),
                ("POST", "/rest/tokens/"): (self._mint, True),
                ("POST", "/rest/tokens"): (self._mint, True),
                ("POST", "/rest/storage/auth/token"): (self._storage_token, True),
                ("POST", "/rest/storage/upload/initiate"): (self._storage_initiate, True),
            }
            return table.get((method, path), (None, True))
        if path.startswith("/cdn/") or path == "/cdn":
            # Uploads check their own credentials: a storage token, or a signature in the URL.
            if path in ("/cdn/files/upload", "/cdn/files/upload/multipart"):
                handler = self._upload if path == "/cdn/files/upload" else self._multipart_create
                return (handler, False) if method == "POST" else (None, False)
            if path.startswith("/cdn/files/") and "/multipart/" in path:
                return (self._multipart, False) if method in ("PUT", "POST") else (None, False)
            if path.startswith("/cdn/signed/"):
                return (self._signed_put, False) if method == "PUT" else (None, False)
            return None, True
        if path.startswith("/run/"):
            return (self._run, True) if method == "POST" else (None, False)
        if "/requests/" in path:
            return self._queue_route(method, path)
        if len([p for p in path.strip("/").split("/") if p]) < 2:
            return None, True
        return (self._submit, True) if method == "POST" else (None, False)

    def _queue_route(self, method: str, path: str) -> tuple[Any, bool]:
        prefix, _, rest = path.partition("/requests/")
        parts = rest.split("/")
        if len(prefix.strip("/").split("/")) != 2 or not parts[0] or len(parts) > 2:
            return None, True  # status/result/cancel take only owner/alias
        tail = parts[1] if len(parts) == 2 else ""
        expected = {"": "GET", "status": "GET", "cancel": "PUT"}.get(tail)
        if expected is None:
            return None, True
        if method != expected:
            return None, False
        handler = {"": self._result, "status": self._status, "cancel": self._cancel}[tail]
        return handler, True

    def _check_key(self, request: Request) -> Reply | None:
        header = request.headers.get("Authorization")
        if not header:
            return json_reply(401, {"detail": "Missing Authorization header"})
        if self.unauthorized or header != f"Key {self.key}":
            return json_reply(401, {"detail": "Invalid API key"})
        return None

    # -- queue --------------------------------------------------------------------------

    def _parse_input(self, request: Request) -> dict[str, Any] | Reply:
        try:
            data = request.json()
        except ValueError:
            return body_error("Invalid JSON")
        return (
            data if isinstance(data, dict) else body_error("Input should be an object", "dict_type")
        )

    def _new_request(self, request: Request, app_id: str, data: dict[str, Any]) -> dict[str, Any]:
        outcome = None
        missing = [
            f
            for f in ("prompt",) + (("image_url",) if "image-to-video" in app_id else ())
            if not isinstance(data.get(f), str) or not data[f]
        ]
        if missing:  # like a real app: the failure shows when the result is fetched
            detail = [field_error(f, "Field required", "missing") for f in missing]
            outcome = {
                "error": "Field required",
                "error_type": "validation_error",
                "status_code": 422,
                "body": {"detail": detail},
                "headers": {},
            }
        elif self.complete_with_error:
            outcome = {
                "error": "Prompt is not allowed",
                "error_type": "validation_error",
                "status_code": 422,
                "body": PROMPT_REJECTED,
                "headers": {},
            }
        rid = str(uuid.uuid4())
        owner_alias = "/".join(app_id.split("/")[:2])
        return {
            "id": rid,
            "app_id": app_id,
            "owner_alias": owner_alias,
            "input": data,
            "status": "IN_QUEUE",
            "submitted_at": time.time(),
            "started_at": None,
            "completed_at": None,
            "outcome": outcome,
            "cancelled": False,
            "sync": False,
            "webhook": request.query.get("fal_webhook"),
            "request_timeout": request.headers.get("X-Fal-Request-Timeout"),
        }

    def _urls(self, rec: dict[str, Any]) -> dict[str, str]:
        base = f"{self.base_url}/{rec['owner_alias']}/requests/{rec['id']}"
        return {
            "response_url": base,
            "status_url": base + "/status",
            "cancel_url": base + "/cancel",
        }

    def _submit(self, request: Request) -> Reply:
        if self.take("reject_next"):
            return json_reply(422, PROMPT_REJECTED, {RID: str(uuid.uuid4())})
        data = self._parse_input(request)
        if isinstance(data, Reply):
            return data
        rec = self._new_request(request, request.path.strip("/"), data)
        with self.lock:
            self.requests[rec["id"]] = rec
        if rec["outcome"] is None:
            self.render_video(rec["id"])
        body = {
            "request_id": rec["id"],
            **self._urls(rec),
            "status": "IN_QUEUE",
            "queue_position": 0,
        }
        return json_reply(200, body, {RID: rec["id"]})

    def _lookup(self, path: str) -> tuple[str, dict[str, Any] | None]:
        prefix, _, rest = path.partition("/requests/")
        rid = rest.split("/")[0]
        with self.lock:
            rec = self.requests.get(rid)
            if rec is None or rec["owner_alias"] != prefix.strip("/") or rec["sync"]:
                return rid, None
            self._refresh(rec, time.time())
            return rid, rec

    def _status(self, request: Request) -> Reply:
        rid, rec = self._lookup(request.path)
        if rec is None:
            return json_reply(404, {"detail": "Request not found"}, {RID: rid})
        with_logs = request.query.get("logs", "0").lower() in ("1", "true")
        with self.lock:
            body: dict[str, Any] = {"status": rec["status"], "request_id": rid, **self._urls(rec)}
            if rec["status"] == "IN_QUEUE":
                body["queue_position"] = 0
            else:
                body["logs"] = self._logs(rec) if with_logs else None
            if rec["status"] == "COMPLETED":
                body["metrics"] = {
                    "inference_time": round(rec["completed_at"] - rec["started_at"], 4)
                }
                if rec["outcome"]:
                    body["error"] = rec["outcome"]["error"]
                    body["error_type"] = rec["outcome"]["error_type"]
        return json_reply(200 if rec["status"] == "COMPLETED" else 202, body, {RID: rid})

    def _logs(self, rec: dict[str, Any]) -> list[dict[str, Any]]:
        def entry(message: str, level: str = "INFO") -> dict[str, Any]:
            return {"message": message, "level": level, "source": "user", "timestamp": now_iso()}

        logs = [
            entry("Loading model"),
            entry(f"Generating: {str(rec['input'].get('prompt'))[:60]}"),
        ]
        if rec["status"] == "COMPLETED":
            if rec["outcome"]:
                logs.append(entry(rec["outcome"]["error"], "ERROR"))
            else:
                logs.append(entry("Done"))
        return logs

    def _result(self, request: Request) -> Reply:
        rid, rec = self._lookup(request.path)
        if rec is None:
            return json_reply(404, {"detail": "Request not found"}, {RID: rid})
        if rec["status"] != "COMPLETED":
            return json_reply(400, {"detail": "Request is still in progress"}, {RID: rid})
        return self._outcome_reply(rec)

    def _outcome_reply(self, rec: dict[str, Any]) -> Reply:
        outcome = rec["outcome"]
        if outcome:
            return json_reply(
                outcome["status_code"], outcome["body"], {RID: rec["id"], **outcome["headers"]}
            )
        return json_reply(200, self._output(rec), {RID: rec["id"]})

    def _output(self, rec: dict[str, Any]) -> dict[str, Any]:
        name = f"{rec['id']}.mp4"
        video = {
            "url": f"{self.base_url}/cdn/files/{name}",
            "content_type": "video/mp4",
            "file_name": name,
            "file_size": len(self.video_bytes(rec["id"])),
        }
        seed = rec["input"].get("seed")
        return {"video": video, "seed": seed if isinstance(seed, int) else 42}

    def _cancel(self, request: Request) -> Reply:
        rid, rec = self._lookup(request.path)
        if rec is None:
            return json_reply(404, {"status": "NOT_FOUND"}, {RID: rid})
        with self.lock:
            if rec["status"] == "COMPLETED":
                return json_reply(400, {"status": "ALREADY_COMPLETED"}, {RID: rid})
            rec["cancelled"] = True
            rec["outcome"] = {
                "error": "cancelled",
                "error_type": "client_cancelled",
                "status_code": 499,
                "body": {"detail": "Request was cancelled", "error_type": "client_cancelled"},
                "headers": {"X-Fal-Error-Type": "client_cancelled"},
            }
            self._complete(rec, time.time())
        return json_reply(202, {"status": "CANCELLATION_REQUESTED"}, {RID: rid})

    def _run(self, request: Request) -> Reply | None:
        if self.take("reject_next"):
            return json_reply(422, PROMPT_REJECTED, {RID: str(uuid.uuid4())})
        data = self._parse_input(request)
        if isinstance(data, Reply):
            return data
        rec = self._new_request(request, request.path[len("/run/") :].strip("/"), data)
        rec.update(sync=True, status="IN_PROGRESS", started_at=rec["submitted_at"], webhook=None)
        with self.lock:
            self.requests[rec["id"]] = rec
        if not self.sleep(self.processing_time):
            return None
        with self.lock:
            self._complete(rec, time.time())
        return self._outcome_reply(rec)

    # -- completion and webhooks ----------------------------------------------------------

    def _refresh(self, rec: dict[str, Any], now: float) -> None:
        """Move a request along by the current switch values (caller holds the lock)."""
        if rec["status"] == "COMPLETED" or rec["sync"]:
            return
        elapsed = now - rec["submitted_at"]
        if elapsed < self.queue_time:
            rec["status"] = "IN_QUEUE"
        elif elapsed < max(self.processing_time, self.queue_time):
            rec["status"] = "IN_PROGRESS"
            rec["started_at"] = rec["started_at"] or now
        else:
            self._complete(rec, now)

    def _complete(self, rec: dict[str, Any], now: float) -> None:
        rec["status"] = "COMPLETED"
        rec["started_at"] = rec["started_at"] or now
        rec["completed_at"] = now
        if rec["webhook"]:
            self._schedule_webhook(rec)

    def _tick(self) -> None:
        # Completes requests nobody polls, so webhooks fire on time.
        while self.sleep(0.01):
            with self.lock:
                now = time.time()
                for rec in self.requests.values():
                    self._refresh(rec, now)


def main(argv: list[str] | None = None) -> None:
    """CLI: run a FakeFal until Ctrl-C and print the .env lines for it."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.fal", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="HTTP port (0: any free one)")
    parser.add_argument("--ws-port", type=int, default=None, help="WebSocket port (default port+1)")
    parser.add_argument("--key", default="fal-test-key")
    add_switch_args(parser, FakeFal())
    args = parser.parse_args(argv)
    ws_port = args.ws_port if args.ws_port is not None else (args.port + 1 if args.port else 0)
    fake = FakeFal(key=args.key, host=args.host, port=args.port, ws_port=ws_port)
    run_until_interrupt(fake, args, "FakeFal")


if __name__ == "__main__":
    main()
