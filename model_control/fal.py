"""fal.ai over HTTP: the queue (submit, status, result, cancel), sync run, CDN upload and
temporary realtime tokens. One protocol, no Django models (docs/protocols.md, "fal queue").

Retries follow fal's own Python client: up to ``max_attempts`` on 408, 409, 429 and on
502/503/504 that come from fal's ingress (no ``x-fal-request-id`` header), with exponential
backoff from 0.1 s, 0.5-1.5 jitter, capped at 30 s. A user-set timeout
(``X-Fal-Request-Timeout-Type: user``), any other 4xx and a dropped connection are not
retried: a submit that may have reached fal must never be sent twice.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from model_control.errors import (
    ProviderCancelled,
    ProviderError,
    ProviderNotConfigured,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnauthorized,
    ProviderUnavailable,
)
from model_control.http import provider_session

logger = logging.getLogger(__name__)

PROVIDER = "fal"
RETRYABLE_STATUS = {408, 409, 429}
INGRESS_STATUS = {502, 503, 504}
BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 30.0
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class FalRequest:
    """A queued fal request and the URLs fal returned for it."""

    app_id: str
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str
    queue_position: int | None = None


@dataclass(frozen=True)
class FalStatus:
    status: str  # IN_QUEUE | IN_PROGRESS | COMPLETED
    queue_position: int | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None

    @property
    def completed(self) -> bool:
        return self.status == "COMPLETED"


def app_alias(app_id: str) -> str:
    """``owner/alias`` of an app id such as ``fal-ai/wan/v2.2-a14b/image-to-video``."""
    parts = [p for p in app_id.split("/") if p]
    if len(parts) < 2:
        raise ValueError(f"fal app ids look like owner/alias[/path], got {app_id!r}")
    return "/".join(parts[:2])


def backoff_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based)."""
    jitter = (rng or random).uniform(0.5, 1.5)
    return min(BACKOFF_BASE_S * (2**attempt), BACKOFF_MAX_S) * jitter


def should_retry(response: requests.Response) -> bool:
    """Whether fal's own client would retry this answer."""
    if response.headers.get("X-Fal-Request-Timeout-Type", "").lower() == "user":
        return False
    if response.status_code in RETRYABLE_STATUS:
        return True
    return response.status_code in INGRESS_STATUS and "x-fal-request-id" not in response.headers


def field_errors(detail: Any) -> list[dict[str, str]]:
    """fal's 422 ``detail`` (a list of ``{loc, msg, type}`` or a string) as field messages."""
    if isinstance(detail, list):
        errors = []
        for item in detail:
            if not isinstance(item, dict):
                errors.append({"field": "", "message": str(item)})
                continue
            loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query")]
            errors.append({"field": ".".join(loc), "message": str(item.get("msg", item))})
        return errors
    return [{"field": "", "message": str(detail)}]


def error_from_response(response: requests.Response, request_id: str | None = None) -> ProviderError:
    """The caller-facing error for a non-2xx fal answer."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    fal_type = response.headers.get("X-Fal-Error-Type") or (body.get("error_type") if isinstance(body, dict) else None)
    code = response.status_code
    kwargs = {"provider": PROVIDER, "request_id": request_id, "provider_error_type": fal_type}
    if code in (401, 403):
        return ProviderUnauthorized(
            "fal refused the API key: check FAL_KEY (or FAL_API_KEY) in the studio's settings.", **kwargs
        )
    if code == 422 or (code == 400 and detail is not None):
        details = field_errors(detail)
        summary = "; ".join(f"{d['field']}: {d['message']}" if d["field"] else d["message"] for d in details)
        return ProviderRejected(f"fal rejected the input: {summary}", details=details, **kwargs)
    if code == 404:
        return ProviderRejected("fal does not know this request or app.", **kwargs)
    if code == 504 or fal_type in ("request_timeout", "startup_timeout"):
        who = "your timeout" if response.headers.get("X-Fal-Request-Timeout-Type") == "user" else "fal"
        return ProviderTimeout(f"The request timed out on fal ({who}).", **kwargs)
    if code == 499:
        return ProviderCancelled("The request was cancelled on fal.", **kwargs)
    text = detail if isinstance(detail, str) else f"HTTP {code}"
    return ProviderUnavailable(f"fal failed on its side ({fal_type or code}): {text}. Try again later.", **kwargs)


class FalClient:
    """A client for fal's queue, run, REST and CDN hosts, authenticated with one key."""

    def __init__(self, key: str | None, *, queue_url: str, run_url: str, rest_url: str, cdn_url: str,
                 timeout: float = 120.0, max_attempts: int = 10, poll_interval: float = 1.0,
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep):
        self.key = key
        self.queue_url = queue_url.rstrip("/")
        self.run_url = run_url.rstrip("/")
        self.rest_url = rest_url.rstrip("/")
        self.cdn_url = cdn_url.rstrip("/")
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        self.session = session or provider_session()
        self.sleep = sleep
        self._cdn_token: dict[str, Any] | None = None

    # --- transport --------------------------------------------------------------------
    def _auth(self) -> dict[str, str]:
        if not self.key:
            raise ProviderNotConfigured(
                "fal is not configured: set FAL_KEY (or FAL_API_KEY) in the studio's environment.",
                provider=PROVIDER,
            )
        return {"Authorization": f"Key {self.key}"}

    def _send(self, method: str, url: str, *, request_id: str | None = None,
              timeout: float | None = None, accept: tuple[int, ...] = (), **kwargs: Any) -> requests.Response:
        """One logical call: retried where fal's client retries, errors mapped.

        Answers with a status in ``accept`` are returned instead of raised.
        """
        headers = {**self._auth(), **kwargs.pop("headers", {})}
        read_timeout = timeout if timeout is not None else self.timeout
        for attempt in range(self.max_attempts):
            try:
                response = self.session.request(method, url, headers=headers,
                                                timeout=(CONNECT_TIMEOUT_S, read_timeout), **kwargs)
            except requests.Timeout:
                raise ProviderTimeout(f"fal did not answer within {read_timeout:g} s.",
                                      provider=PROVIDER, request_id=request_id) from None
            except requests.ConnectionError as exc:
                logger.warning("cannot reach fal at %s: %s", urlsplit(url).netloc, type(exc).__name__)
                raise ProviderUnavailable(f"Cannot reach fal ({type(exc).__name__}); try again later.",
                                          provider=PROVIDER, request_id=request_id) from None
            if response.ok or response.status_code in accept:
                return response
            if attempt + 1 < self.max_attempts and should_retry(response):
                delay = backoff_delay(attempt)
                logger.info("fal answered %s to %s %s; retry %d in %.2f s", response.status_code,
                            method, urlsplit(url).path, attempt + 1, delay)
                self.sleep(delay)
                continue
            raise error_from_response(response, request_id)
        raise AssertionError("unreachable")  # the loop always returns or raises

    @staticmethod
    def _json(response: requests.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ProviderUnavailable(f"fal answered {what} with something that is not JSON.",
                                      provider=PROVIDER) from None

    # --- queue ------------------------------------------------------------------------
    def submit(self, app_id: str, arguments: dict[str, Any], *, webhook_url: str | None = None,
               request_timeout: float | None = None) -> FalRequest:
        """Queue one request (a paid call: never retried on a dropped connection)."""
        url = f"{self.queue_url}/{app_id.strip('/')}"
        if webhook_url:
            url += f"?fal_webhook={quote(webhook_url, safe='')}"
        headers = {"X-Fal-Request-Timeout": str(int(request_timeout))} if request_timeout else {}
        body = self._json(self._send("POST", url, json=arguments, headers=headers), "the submit")
        if not isinstance(body, dict) or not body.get("request_id"):
            raise ProviderUnavailable("fal's submit answer has no request_id.", provider=PROVIDER)
        request_id = body["request_id"]
        base = f"{self.queue_url}/{app_alias(app_id)}/requests/{request_id}"
        return FalRequest(
            app_id=app_id,
            request_id=request_id,
            status_url=body.get("status_url") or f"{base}/status",
            response_url=body.get("response_url") or base,
            cancel_url=body.get("cancel_url") or f"{base}/cancel",
            queue_position=body.get("queue_position"),
        )

    def handle(self, app_id: str, request_id: str) -> FalRequest:
        """A handle for a request submitted earlier (only its id was kept)."""
        base = f"{self.queue_url}/{app_alias(app_id)}/requests/{request_id}"
        return FalRequest(app_id, request_id, f"{base}/status", base, f"{base}/cancel")

    def status(self, request: FalRequest, *, logs: bool = True) -> FalStatus:
        response = self._send("GET", request.status_url, params={"logs": "1" if logs else "0"},
                              request_id=request.request_id)
        body = self._json(response, "the status")
        return FalStatus(
            status=str(body.get("status", "")),
            queue_position=body.get("queue_position"),
            logs=list(body.get("logs") or []),
            metrics=dict(body.get("metrics") or {}),
            error=body.get("error"),
            error_type=body.get("error_type"),
        )

    def result(self, request: FalRequest) -> dict[str, Any]:
        """The model's output; raises the provider error when the request failed."""
        response = self._send("GET", request.response_url, request_id=request.request_id)
        return self._json(response, "the result")

    def cancel(self, request: FalRequest) -> str:
        """Ask fal to cancel; returns fal's status (CANCELLATION_REQUESTED, ALREADY_COMPLETED, NOT_FOUND)."""
        # fal answers ALREADY_COMPLETED / NOT_FOUND with a 4xx (which one is unverified).
        response = self._send("PUT", request.cancel_url, request_id=request.request_id, accept=(400, 404, 409))
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("status"):
            return str(body["status"])
        if response.ok:
            return "CANCELLATION_REQUESTED"
        return "NOT_FOUND" if response.status_code == 404 else "ALREADY_COMPLETED"

    def run(self, app_id: str, arguments: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """Synchronous ``POST {run}/{app_id}``: the output JSON directly."""
        response = self._send("POST", f"{self.run_url}/{app_id.strip('/')}", json=arguments, timeout=timeout)
        return self._json(response, "the run")

    # --- REST: CDN upload and tokens ----------------------------------------------------
    def _storage_token(self) -> dict[str, Any]:
        token = self._cdn_token
        if token and token["expires"] > time.time() + 30:
            return token
        response = self._send("POST", f"{self.rest_url}/storage/auth/token",
                              params={"storage_type": "fal-cdn-v3"}, json={})
        body = self._json(response, "the storage token")
        self._cdn_token = {
            "token": body["token"],
            "token_type": body.get("token_type", "Bearer"),
            "base_url": (body.get("base_url") or self.cdn_url).rstrip("/"),
            "expires": _expiry_seconds(body.get("expires_at")),
        }
        return self._cdn_token

    def upload(self, data: bytes, *, content_type: str, file_name: str) -> str:
        """Put a local file on fal's CDN; returns its ``access_url`` for model inputs."""
        token = self._storage_token()
        response = self._send(
            "POST", f"{token['base_url']}/files/upload", data=data,
            headers={"Authorization": f"{token['token_type']} {token['token']}",
                     "Content-Type": content_type, "X-Fal-File-Name": file_name},
        )
        body = self._json(response, "the upload")
        if not isinstance(body, dict) or not body.get("access_url"):
            raise ProviderUnavailable("fal's CDN answered the upload without an access_url.", provider=PROVIDER)
        return body["access_url"]

    def mint_token(self, allowed_apps: list[str], expiration_s: int) -> str:
        """A temporary JWT for the realtime WebSocket, limited to ``allowed_apps``."""
        response = self._send("POST", f"{self.rest_url}/tokens/",
                              json={"allowed_apps": allowed_apps, "token_expiration": expiration_s})
        body = self._json(response, "the token request")
        token = body.get("token") if isinstance(body, dict) else body
        if not isinstance(token, str) or not token:
            raise ProviderUnavailable("fal answered the token request without a token.", provider=PROVIDER)
        return token

    def download(self, url: str, *, timeout: float | None = None) -> tuple[bytes, str]:
        """Fetch a result file (fal's CDN URLs are public: no key is sent)."""
        try:
            response = self.session.get(url, timeout=(CONNECT_TIMEOUT_S, timeout or self.timeout))
        except requests.Timeout:
            raise ProviderTimeout("Downloading the video from fal timed out.", provider=PROVIDER) from None
        except requests.ConnectionError:
            logger.warning("cannot download a video from %s", urlsplit(url).netloc)
            raise ProviderUnavailable("Cannot download the video from fal's storage; try again later.",
                                      provider=PROVIDER) from None
        if not response.ok:
            raise ProviderUnavailable(f"Downloading the video failed with HTTP {response.status_code}.",
                                      provider=PROVIDER)
        return response.content, response.headers.get("Content-Type", "video/mp4")


def _expiry_seconds(expires_at: Any) -> float:
    """Unix seconds from fal's ``expires_at`` (ISO 8601 or a number); one hour if absent."""
    if isinstance(expires_at, (int, float)):
        return float(expires_at)
    if isinstance(expires_at, str):
        try:
            parsed = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
        except ValueError:
            pass
    return time.time() + 3600
