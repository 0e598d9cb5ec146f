"""Fake Tenstorrent video endpoints, as docs/protocols.md ("Tenstorrent") describes.

mode "legacy": the TT Studio cloud endpoint ``POST /video/generations`` answering MP4 bytes.
mode "media": tt-media-server's job API under ``/v1/videos/generations``.
Run by hand: ``python -m tests.fakes.tenstorrent --port 9100 --mode media``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import time
import uuid
import zlib
from typing import Any

from tests.fakes._cli import add_switch_args, exit_if_missing, run_until_interrupt

if __name__ == "__main__":  # run by hand: a missing package is one clear line, before anything
    exit_if_missing("tenstorrent", ("PIL", "av"))

from tests.fakes._http import FakeHTTPService, Reply, Request, field_error, json_reply  # noqa: E402
from tests.fakes.media import tiny_mp4  # noqa: E402

LEGACY_PATH = "/video/generations"
MEDIA_PATH = "/v1/videos/generations"
LEGACY_FIELDS = {"prompt", "negative_prompt", "num_inference_steps", "seed"}
MEDIA_FIELDS = LEGACY_FIELDS | {"aspect_ratio", "duration_seconds"}
QUEUED_FOR = 0.05  # seconds a media job shows "queued"
CANCEL_TAKES = 0.05  # seconds from "cancelling" to "cancelled"
TERMINAL = {"completed", "failed", "cancelled"}
_BAD_JSON = object()  # marks a body that was sent but is not JSON


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(
    data: Any, allowed: set[str], steps: tuple[int, int] | None, i2v: bool
) -> list[dict[str, Any]]:
    """FastAPI-style error entries for a generation body (empty when valid)."""
    if not isinstance(data, dict):
        return [{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}]
    errors = []
    if not isinstance(data.get("prompt"), str) or not data["prompt"].strip():
        errors.append(field_error("prompt", "Field required", "missing"))
    for name in ("negative_prompt", "aspect_ratio"):
        if data.get(name) is not None and not isinstance(data[name], str):
            errors.append(field_error(name, "Input should be a valid string", "string_type"))
    for name in ("seed", "num_inference_steps"):
        if data.get(name) is not None and not _is_int(data[name]):
            errors.append(field_error(name, "Input should be a valid integer", "int_type"))
    n = data.get("num_inference_steps")
    if steps and _is_int(n) and not steps[0] <= n <= steps[1]:
        errors.append(
            field_error(
                "num_inference_steps",
                f"Input should be between {steps[0]} and {steps[1]}",
                "greater_than_equal" if n < steps[0] else "less_than_equal",
            )
        )
    d = data.get("duration_seconds")
    if d is not None and (isinstance(d, bool) or not isinstance(d, int | float) or d <= 0):
        errors.append(
            field_error("duration_seconds", "Input should be a positive number", "greater_than")
        )
    if i2v:
        errors += _validate_images(data.get("image_prompts"))
    for name in sorted(set(data) - allowed - ({"image_prompts"} if i2v else set())):
        errors.append(field_error(name, "Extra inputs are not permitted", "extra_forbidden"))
    return errors


def _validate_images(prompts: Any) -> list[dict[str, Any]]:
    if not isinstance(prompts, list) or not prompts:
        return [field_error("image_prompts", "Field required: a non-empty list", "missing")]
    errors = []
    for i, item in enumerate(prompts):
        loc: list[Any] = ["body", "image_prompts", i]
        if not isinstance(item, dict):
            errors.append({"loc": loc, "msg": "Input should be an object", "type": "dict_type"})
            continue
        try:
            if not isinstance(item.get("image"), str) or not base64.b64decode(
                item["image"], validate=True
            ):
                raise ValueError
        except (ValueError, binascii.Error):
            errors.append(
                {"loc": [*loc, "image"], "msg": "Invalid base64 image", "type": "value_error"}
            )
        if "frame_pos" in item and not _is_int(item["frame_pos"]):
            errors.append(
                {
                    "loc": [*loc, "frame_pos"],
                    "msg": "Input should be a valid integer",
                    "type": "int_type",
                }
            )
    return errors


class FakeTenstorrent(FakeHTTPService):
    """Tenstorrent look-alike; switches are plain attributes, changeable any time."""

    def __init__(
        self,
        mode: str = "media",
        token: str = "tt-test-token",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if mode not in ("media", "legacy"):
            raise ValueError("mode must be 'media' or 'legacy'")
        super().__init__(host, port)
        self.mode = mode
        self.token = token
        # Switches.
        self.delay: float = 0.1
        self.unauthorized: bool = False
        self.reject_next: int = 0
        self.fail_next: int = 0
        self.unavailable_next: int = 0
        self.drop_next: int = 0
        # A 500 whose body echoes the request's headers (token included), as a debug page does.
        self.echo_headers_next: int = 0
        # Records.
        self.jobs: dict[str, dict[str, Any]] = {}
        self.bodies: list[Any] = []

    SWITCHES = (
        "delay",
        "unauthorized",
        "reject_next",
        "fail_next",
        "unavailable_next",
        "drop_next",
        "echo_headers_next",
    )

    @property
    def url(self) -> str:
        """The CLOUD_VIDEO_GENERATION_URL for this mode."""
        return self.base_url + (LEGACY_PATH if self.mode == "legacy" else MEDIA_PATH)

    def settings(self) -> dict[str, str]:
        """Django setting overrides pointing Studio at this fake."""
        return {
            "CLOUD_VIDEO_GENERATION_URL": self.url,
            "CLOUD_VIDEO_GENERATION_AUTH_TOKEN": self.token,
        }

    def video_bytes(self, job_id: str) -> bytes:
        """The MP4 a job yields."""
        return tiny_mp4(zlib.crc32(job_id.encode()))

    def handle(self, request: Request) -> Reply | None:
        data: Any = None
        if request.body:
            try:
                data = request.json()
                with self.lock:
                    self.bodies.append(data)
            except ValueError:
                data = _BAD_JSON
        if self.take("drop_next"):
            return None
        if self.take("unavailable_next"):
            return json_reply(503, {"detail": "Service temporarily unavailable"})
        if self.take("echo_headers_next"):
            echoed = "; ".join(f"{k}: {v}" for k, v in request.headers.items())
            return json_reply(500, {"detail": f"Internal Server Error while handling {request.method} "
                                              f"{request.path} from {self.base_url} with headers {echoed}"})
        if self.unauthorized or request.headers.get("Authorization") != f"Bearer {self.token}":
            return json_reply(401, {"detail": "Invalid or missing API Key"})
        path, method = request.path.rstrip("/") or "/", request.method
        if self.mode == "legacy":
            if path != LEGACY_PATH:
                return json_reply(404, {"detail": "Not Found"})
            return (
                self._legacy(data)
                if method == "POST"
                else json_reply(405, {"detail": "Method Not Allowed"})
            )
        if path in (MEDIA_PATH, MEDIA_PATH + "/i2v"):
            if method != "POST":
                return json_reply(405, {"detail": "Method Not Allowed"})
            return self._create(data, i2v=path.endswith("/i2v"))
        if not path.startswith(MEDIA_PATH + "/"):
            return json_reply(404, {"detail": "Not Found"})
        parts = path[len(MEDIA_PATH) + 1 :].split("/")
        action = parts[1] if len(parts) == 2 else ""
        wanted = {"": "GET", "download": "GET", "cancel": "POST"}.get(action)
        if len(parts) > 2 or wanted is None:
            return json_reply(404, {"detail": "Not Found"})
        if method != wanted:
            return json_reply(405, {"detail": "Method Not Allowed"})
        with self.lock:
            job = self.jobs.get(parts[0])
            if job is None or job["mode"] != "media":
                return json_reply(404, {"detail": "Job not found"})
            self._refresh(job, time.time())
            return {"": self._job_reply, "download": self._download, "cancel": self._cancel}[
                action
            ](job)

    def _check_body(
        self, data: Any, allowed: set[str], steps: tuple[int, int] | None, i2v: bool
    ) -> Reply | None:
        if self.take("reject_next"):
            return json_reply(422, {"detail": [field_error("prompt", "Prompt is not allowed")]})
        if data is _BAD_JSON:
            return json_reply(
                422,
                {"detail": [{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}]},
            )
        errors = validate(data, allowed, steps, i2v)
        return json_reply(422, {"detail": errors}) if errors else None

    def _new_job(self, data: dict[str, Any], mode: str, kind: str) -> dict[str, Any]:
        now = time.time()
        job = {
            "id": str(uuid.uuid4()),
            "job_type": "video",
            "status": "queued",
            "created_at": int(now),
            "model": "wan2.2",
            "request_parameters": data,
            "mode": mode,
            "kind": kind,
            "created_ts": now,
            "fail": self.take("fail_next"),
            "cancel_requested_at": None,
            "completed_at": None,
            "error": None,
        }
        with self.lock:
            self.jobs[job["id"]] = job
        return job

    def _legacy(self, data: Any) -> Reply | None:
        if (bad := self._check_body(data, LEGACY_FIELDS, None, False)) is not None:
            return bad
        job = self._new_job(data, "legacy", "t2v")
        job["status"] = "in_progress"
        if not self.sleep(self.delay):
            return None
        with self.lock:
            job["completed_at"] = int(time.time())
            if job["fail"]:
                job["status"] = "failed"
                job["error"] = {"code": "generation_failed", "message": "Video generation failed"}
                return json_reply(500, {"detail": "Video generation failed"})
            job["status"] = "completed"
        return Reply(200, self.video_bytes(job["id"]), {"Content-Type": "video/mp4"})

    def _create(self, data: Any, i2v: bool) -> Reply:
        if (bad := self._check_body(data, MEDIA_FIELDS, (4, 50), i2v)) is not None:
            return bad
        job = self._new_job(data, "media", "i2v" if i2v else "t2v")
        keys = ("id", "job_type", "status", "created_at", "model", "request_parameters")
        return json_reply(202, {k: job[k] for k in keys})

    def _refresh(self, job: dict[str, Any], now: float) -> None:
        """Advance a media job by the current ``delay`` (caller holds the lock)."""
        if job["status"] in TERMINAL:
            return
        if job["cancel_requested_at"] is not None:
            if now - job["cancel_requested_at"] >= CANCEL_TAKES:
                job["status"] = "cancelled"
            return
        elapsed = now - job["created_ts"]
        if elapsed < QUEUED_FOR:
            job["status"] = "queued"
        elif elapsed < max(self.delay, QUEUED_FOR):
            job["status"] = "in_progress"
        else:
            job["completed_at"] = int(now)
            if job["fail"]:
                job["status"] = "failed"
                job["error"] = {
                    "code": "generation_failed",
                    "message": "The device failed to generate the video",
                }
            else:
                job["status"] = "completed"

    def _job_reply(self, job: dict[str, Any]) -> Reply:
        keys = (
            "id",
            "job_type",
            "status",
            "created_at",
            "completed_at",
            "model",
            "request_parameters",
            "error",
        )
        return json_reply(200, {k: job[k] for k in keys})

    def _download(self, job: dict[str, Any]) -> Reply:
        if job["status"] != "completed":
            return json_reply(404, {"detail": "Video not ready"})
        headers = {
            "Content-Type": "video/mp4",
            "Content-Disposition": f'attachment; filename="{job["id"]}.mp4"',
        }
        return Reply(200, self.video_bytes(job["id"]), headers)

    def _cancel(self, job: dict[str, Any]) -> Reply:
        if job["status"] in TERMINAL:
            return json_reply(409, {"detail": f"Job is already {job['status']}"})
        if job["cancel_requested_at"] is None:
            job["cancel_requested_at"] = time.time()
            job["status"] = "cancelling"
        return json_reply(200, {"id": job["id"], "status": "cancelling"})


def main(argv: list[str] | None = None) -> None:
    """CLI: run a FakeTenstorrent until Ctrl-C and print the .env lines for it."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.tenstorrent", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0: any free port")
    parser.add_argument("--mode", choices=("media", "legacy"), default="media")
    parser.add_argument("--token", default="tt-test-token")
    add_switch_args(parser, FakeTenstorrent())
    args = parser.parse_args(argv)
    fake = FakeTenstorrent(mode=args.mode, token=args.token, host=args.host, port=args.port)
    run_until_interrupt(fake, args, f"FakeTenstorrent ({args.mode})")


if __name__ == "__main__":
    main()
