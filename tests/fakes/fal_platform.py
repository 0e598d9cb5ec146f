"""fal's platform services for :class:`tests.fakes.fal.FakeFal`: realtime tokens, storage
tokens and CDN uploads, JWKS and signed webhook delivery (docs/protocols.md, "fal queue").

Uploads come three ways, each the way fal's official Python client (``fal-client``) sends
them: one ``POST {cdn}/files/upload``; a multipart upload for big files
(``POST {cdn}/files/upload/multipart`` -> ``{access_url, uploadId}``, ``PUT
{access_url}/multipart/{uploadId}/{n}`` answering an ETag each, ``POST
.../complete`` with ``{"parts": [{partNumber, etag}]}``); and the client's fallback,
``POST {rest}/storage/upload/initiate?storage_type=gcs`` with ``{file_name, content_type}``
-> ``{upload_url, file_url}``, then ``PUT upload_url`` with the bytes (a signed URL: no key
needed, the signature is in its query). Every finished upload is served at its URL under
``{cdn}/files/`` and recorded in ``uploads``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import threading
import time
import uuid
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.fakes._http import FakeHTTPService, Reply, Request, body_error, field_error, json_reply
from tests.fakes.media import tiny_mp4

WEBHOOK_USER_ID = "fake-user"


def now_iso(offset: float = 0.0) -> str:
    """UTC time ``offset`` seconds from now in ISO 8601 with a ``Z``."""
    return (datetime.now(UTC) + timedelta(seconds=offset)).isoformat().replace("+00:00", "Z")


class FalPlatform(FakeHTTPService):
    """Mixin base of FakeFal holding everything that is not the queue itself."""

    requests: dict[str, dict[str, Any]]
    webhook_retries: int
    webhook_retry_delay: float

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.minted_tokens: list[dict[str, Any]] = []
        self.storage_tokens: list[dict[str, Any]] = []
        self.uploads: list[dict[str, Any]] = []
        # Started but unfinished uploads: signed URLs from storage/upload/initiate (by stored
        # name) and multipart uploads (by uploadId).
        self.signed_uploads: dict[str, dict[str, Any]] = {}
        self.multipart_uploads: dict[str, dict[str, Any]] = {}
        self.webhook_deliveries: list[dict[str, Any]] = []
        self.signing_key = Ed25519PrivateKey.generate()  # per instance, published as JWKS
        self._renderer: ThreadPoolExecutor | None = None  # result videos made while requests run
        self._rendered: dict[str, Future[bytes]] = {}

    def _output(self, rec: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    # -- public helpers ---------------------------------------------------------------

    def mint_token(self, allowed_apps: list[str] | None = None, expiration: int = 5000) -> str:
        """Mint a realtime token without HTTP (as ``POST /rest/tokens/`` would)."""
        token = "fal-jwt-" + secrets.token_urlsafe(24)
        now = time.time()
        entry = {
            "token": token,
            "allowed_apps": list(allowed_apps or ["krea-wan-14b"]),
            "token_expiration": expiration,
            "created_at": now,
            "expires_at": now + expiration,
        }
        with self.lock:
            self.minted_tokens.append(entry)
        return token

    def token_allows(self, token: str, app: str) -> bool:
        """Whether ``token`` is a live minted token whose allowed_apps include ``app``."""
        now = time.time()
        with self.lock:
            return any(
                t["token"] == token and t["expires_at"] > now and app in t["allowed_apps"]
                for t in self.minted_tokens
            )

    def jwks(self) -> dict[str, Any]:
        """The public key that signs webhooks, as fal publishes it."""
        raw = self.signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]}

    def render_video(self, request_id: str) -> None:
        """Start making a request's result video while the request runs, as a provider's
        GPU does: fal serves a finished file, so encoding it (about 60 ms of CPU here) must
        not sit on the result or download path a benchmark times."""
        with self.lock:
            if self._renderer is None:
                self._renderer = ThreadPoolExecutor(1, thread_name_prefix="FakeFal-render")
            self._rendered[request_id] = self._renderer.submit(tiny_mp4, zlib.crc32(request_id.encode()))

    def video_bytes(self, request_id: str) -> bytes:
        """The MP4 served for a request's result video (different bytes for every request)."""
        with self.lock:
            rendering = self._rendered.get(request_id)
        if rendering is not None:
            return rendering.result()
        return tiny_mp4(zlib.crc32(request_id.encode()))

    # -- webhooks -----------------------------------------------------------------------

    def _schedule_webhook(self, rec: dict[str, Any]) -> None:
        threading.Thread(target=self._deliver_webhook, args=(rec,), daemon=True).start()

    def _deliver_webhook(self, rec: dict[str, Any]) -> None:
        rid, outcome = rec["id"], rec["outcome"]
        payload = {
            "request_id": rid,
            "gateway_request_id": rid,
            "status": "ERROR" if outcome else "OK",
            "payload": None if outcome else self._output(rec),
            "error": outcome["error"] if outcome else None,
        }
        body = json.dumps(payload).encode()
        session = requests.Session()
        session.trust_env = False  # loopback receivers; never go through a proxy
        for attempt in range(1 + max(0, self.webhook_retries)):
            timestamp = str(int(time.time()))
            message = f"{rid}\n{WEBHOOK_USER_ID}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}"
            headers = {
                "Content-Type": "application/json",
                "X-Fal-Webhook-Request-Id": rid,
                "X-Fal-Webhook-User-Id": WEBHOOK_USER_ID,
                "X-Fal-Webhook-Timestamp": timestamp,
                "X-Fal-Webhook-Signature": self.signing_key.sign(message.encode()).hex(),
            }
            code, error = None, None
            try:
                code = session.post(
                    rec["webhook"], data=body, headers=headers, timeout=5
                ).status_code
            except requests.RequestException as exc:
                error = repr(exc)
            delivery = {
                "url": rec["webhook"],
                "request_id": rid,
                "attempt": attempt + 1,
                "status_code": code,
                "error": error,
                "body": body,
                "headers": headers,
            }
            with self.lock:
                self.webhook_deliveries.append(delivery)
            if code is not None and 200 <= code < 300:
                break
            if not self.sleep(self.webhook_retry_delay):
                break
        session.close()

    # -- REST and CDN routes ------------------------------------------------------------

    def _jwks(self, request: Request) -> Reply:
        return json_reply(200, self.jwks())

    def _mint(self, request: Request) -> Reply:
        try:
            data = request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return body_error("Input should be a JSON object")
        apps, expiration = data.get("allowed_apps"), data.get("token_expiration", 3600)
        if not isinstance(apps, list) or not apps or not all(isinstance(a, str) for a in apps):
            error = field_error("allowed_apps", "Must be a non-empty list of app aliases")
            return json_reply(422, {"detail": [error]})
        if isinstance(expiration, bool) or not isinstance(expiration, int) or expiration <= 0:
            error = field_error("token_expiration", "Must be a positive integer")
            return json_reply(422, {"detail": [error]})
        return json_reply(201, self.mint_token(apps, expiration))

    def _storage_token(self, request: Request) -> Reply:
        if request.query.get("storage_type") != "fal-cdn-v3":
            return json_reply(400, {"detail": "Unsupported storage_type"})
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.storage_tokens.append({"token": token, "expires_at": time.time() + 3600})
        body = {
            "token": token,
            "token_type": "Bearer",
            "base_url": self.base_url + "/cdn",
            "expires_at": now_iso(3600),
        }
        return json_reply(200, body)

    def _storage_token_valid(self, request: Request) -> bool:
        """Whether the request carries ``Authorization: Bearer <live storage token>``."""
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        now = time.time()
        with self.lock:
            return any(t["token"] == token and t["expires_at"] > now for t in self.storage_tokens)

    def _stored_name(self, file_name: str | None) -> tuple[str, str]:
        """(the name a new file is stored under, its ``{cdn}/files/`` URL)."""
        stored = f"{uuid.uuid4().hex}-{(file_name or 'upload.bin').replace('/', '_')}"
        return stored, f"{self.base_url}/cdn/files/{quote(stored)}"

    def _store(self, request: Request, stored: str, file_name: str, access_url: str, data: bytes,
               via: str, content_type: str | None = None, lifecycle: str | None = None) -> None:
        upload = {
            "name": stored,
            "file_name": file_name,
            "access_url": access_url,
            "content_type": content_type
            or request.headers.get("Content-Type", "application/octet-stream"),
            "data": data,
            "via": via,  # "cdn", "multipart" or "storage"
            "lifecycle": lifecycle or request.headers.get("X-Fal-Object-Lifecycle"),
        }
        with self.lock:
            self.uploads.append(upload)

    def _upload(self, request: Request) -> Reply:
        if not self._storage_token_valid(request):
            return json_reply(401, {"detail": "Invalid or missing storage token"})
        if self.take("upload_errors"):
            return json_reply(500, {"detail": "Upload failed", "error_type": "internal_error"})
        file_name = (request.headers.get("X-Fal-File-Name") or "upload.bin").replace("/", "_")
        stored, access_url = self._stored_name(file_name)
        self._store(request, stored, file_name, access_url, request.body, "cdn")
        return json_reply(200, {"access_url": access_url})

    # -- the client's fallback: a signed upload URL from the REST API ---------------------

    def _storage_initiate(self, request: Request) -> Reply:
        if request.query.get("storage_type") != "gcs":
            return json_reply(400, {"detail": "Unsupported storage_type"})
        try:
            data = request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return body_error("Input should be a JSON object")
        for name in ("file_name", "content_type"):
            if not isinstance(data.get(name), str) or not data[name]:
                return json_reply(422, {"detail": [field_error(name, "Field required", "missing")]})
        stored, file_url = self._stored_name(data["file_name"])
        signature = secrets.token_urlsafe(16)
        with self.lock:
            self.signed_uploads[stored] = {
                "signature": signature,
                "file_name": data["file_name"],
                "content_type": data["content_type"],
                "file_url": file_url,
                "lifecycle": request.headers.get("X-Fal-Object-Lifecycle-Preference"),
                "expires_at": time.time() + 3600,
            }
        upload_url = f"{self.base_url}/cdn/signed/{quote(stored)}?signature={signature}"
        return json_reply(200, {"upload_url": upload_url, "file_url": file_url})

    def _signed_put(self, request: Request) -> Reply:
        stored = request.path[len("/cdn/signed/") :]
        with self.lock:
            pending = self.signed_uploads.get(stored)
            ok = (
                pending is not None
                and request.query.get("signature") == pending["signature"]
                and pending["expires_at"] > time.time()
            )
            if ok:
                del self.signed_uploads[stored]
        if not ok or pending is None:  # as a storage bucket answers a bad signature
            body = b"<Error><Code>SignatureDoesNotMatch</Code></Error>"
            return Reply(403, body, {"Content-Type": "application/xml"})
        self._store(request, stored, pending["file_name"], pending["file_url"], request.body, "storage",
                    request.headers.get("Content-Type") or pending["content_type"], pending["lifecycle"])
        return Reply(200)

    # -- multipart uploads (the client's path for files over 100 MB) ----------------------

    def _multipart_create(self, request: Request) -> Reply:
        if not self._storage_token_valid(request):
            return json_reply(401, {"detail": "Invalid or missing storage token"})
        file_name = (request.headers.get("X-Fal-File-Name") or "upload.bin").replace("/", "_")
        stored, access_url = self._stored_name(file_name)
        upload_id = uuid.uuid4().hex
        with self.lock:
            self.multipart_uploads[upload_id] = {
                "name": stored,
                "file_name": file_name,
                "access_url": access_url,
                "content_type": request.headers.get("Content-Type", "application/octet-stream"),
                "parts": {},
            }
        return json_reply(200, {"access_url": access_url, "uploadId": upload_id})

    def _multipart(self, request: Request) -> Reply:
        """``PUT .../files/{name}/multipart/{id}/{n}`` and ``POST .../multipart/{id}/complete``."""
        if not self._storage_token_valid(request):
            return json_reply(401, {"detail": "Invalid or missing storage token"})
        stored, _, rest = request.path[len("/cdn/files/") :].partition("/multipart/")
        upload_id, _, tail = rest.partition("/")
        with self.lock:
            upload = self.multipart_uploads.get(upload_id)
        if upload is None or upload["name"] != stored:
            return json_reply(404, {"detail": "Upload not found"})
        if request.method == "PUT" and tail.isdigit() and int(tail) >= 1:
            etag = f'"{hashlib.md5(request.body).hexdigest()}"'  # noqa: S324 - an ETag, not security
            with self.lock:
                upload["parts"][int(tail)] = (etag, request.body)
            return Reply(200, b"", {"ETag": etag})
        if request.method == "POST" and tail == "complete":
            return self._multipart_complete(request, upload_id, upload)
        return json_reply(405, {"detail": "Method Not Allowed"})

    def _multipart_complete(self, request: Request, upload_id: str, upload: dict[str, Any]) -> Reply:
        body: Any = None
        with contextlib.suppress(ValueError):
            body = request.json()
        parts = body.get("parts") if isinstance(body, dict) else None
        listed = {}
        if isinstance(parts, list):
            listed = {p.get("partNumber"): p.get("etag") for p in parts if isinstance(p, dict)}
        with self.lock:
            received = upload["parts"]
            if sorted(listed) != list(range(1, len(received) + 1)) or any(
                listed[n] != received[n][0] for n in received
            ):
                error = field_error("parts", "Every uploaded part, numbered from 1, with its ETag")
                return json_reply(422, {"detail": [error]})
            data = b"".join(received[n][1] for n in sorted(received))
            del self.multipart_uploads[upload_id]
        self._store(request, upload["name"], upload["file_name"], upload["access_url"], data, "multipart",
                    upload["content_type"])
        return json_reply(200, {"access_url": upload["access_url"]})

    def _cdn_get(self, name: str) -> Reply:
        with self.lock:
            for upload in self.uploads:
                if upload["name"] == name:
                    return Reply(200, upload["data"], {"Content-Type": upload["content_type"]})
            rec = self.requests.get(name.removesuffix(".mp4")) if name.endswith(".mp4") else None
            ready = rec is not None and rec["status"] == "COMPLETED" and not rec["outcome"]
        if ready:
            return Reply(200, self.video_bytes(name[:-4]), {"Content-Type": "video/mp4"})
        return json_reply(404, {"detail": "File not found"})
