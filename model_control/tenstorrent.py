"""Tenstorrent cloud video generation over HTTP (docs/protocols.md, "Tenstorrent").

One URL, two servers, told apart by what they answer:

* the legacy cloud endpoint answers the POST with the MP4 bytes (180 s);
* tt-media-server answers ``202`` with a job (``{"id", "status": "queued", ...}``): the client
  polls ``{url}/{id}``, then downloads ``{url}/{id}/download``. It can also cancel a job and
  take an image (``{url}/i2v``). In its sync mode it answers 200 with bytes, like legacy.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from model_control.errors import (
    ProviderCancelled,
    ProviderError,
    ProviderFailed,
    ProviderNotConfigured,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnauthorized,
    ProviderUnavailable,
)
from model_control.http import provider_session

logger = logging.getLogger(__name__)

PROVIDER = "tenstorrent"
CONNECT_TIMEOUT_S = 10.0
FINISHED_BAD = {"failed", "cancelled"}


@dataclass(frozen=True)
class TenstorrentVideo:
    content: bytes
    content_type: str
    job_id: str | None = None  # None for the legacy endpoint's direct answer


@dataclass(frozen=True)
class TenstorrentJob:
    id: str
    status: str
    error: dict[str, Any] | None = None
    raw: dict[str, Any] | None = None


def _error_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        for key in ("detail", "error", "message"):
            if body.get(key):
                value = body[key]
                return value.get("message", str(value)) if isinstance(value, dict) else str(value)
    return str(body)[:200]


def error_from_response(response: requests.Response, job_id: str | None = None) -> ProviderError:
    code = response.status_code
    message = _error_message(response)
    kwargs = {"provider": PROVIDER, "request_id": job_id, "upstream_status": code}
    if code in (401, 403):
        return ProviderUnauthorized(
            f"Tenstorrent refused the token ({message}): check CLOUD_VIDEO_GENERATION_AUTH_TOKEN.", **kwargs)
    if code in (400, 422):
        details = None
        try:
            body = response.json()
            if isinstance(body, dict) and isinstance(body.get("detail"), list):
                details = [{"field": ".".join(str(p) for p in d.get("loc", []) if p != "body"),
                            "message": str(d.get("msg", d))} for d in body["detail"] if isinstance(d, dict)]
                message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        except ValueError:
            pass
        return ProviderRejected(f"Tenstorrent rejected the input: {message}", details=details, **kwargs)
    if code == 504:
        return ProviderTimeout(f"Tenstorrent timed out: {message}", **kwargs)
    return ProviderUnavailable(f"Tenstorrent failed (HTTP {code}): {message}", **kwargs)


class TenstorrentClient:
    def __init__(self, url: str | None, token: str | None, *, poll_interval: float = 1.0,
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.url = url.rstrip("/") if url else None
        self.token = token
        self.poll_interval = poll_interval
        self.session = session or provider_session()
        self.sleep = sleep
        self.clock = clock

    @property
    def configured(self) -> bool:
        return bool(self.url)

    def _base(self) -> str:
        if not self.url:
            raise ProviderNotConfigured("Cloud video generation URL not configured", provider=PROVIDER)
        return self.url

    def _request(self, method: str, url: str, *, timeout: float, job_id: str | None = None,
                 **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            return self.session.request(method, url, headers=headers,
                                        timeout=(min(CONNECT_TIMEOUT_S, timeout), timeout), **kwargs)
        except requests.Timeout:
            raise ProviderTimeout(f"Tenstorrent did not answer within {timeout:g} s.",
                                  provider=PROVIDER, request_id=job_id) from None
        except requests.ConnectionError as exc:
            logger.warning("cannot reach Tenstorrent at %s: %s", urlsplit(url).netloc, type(exc).__name__)
            raise ProviderUnavailable(f"Cannot reach Tenstorrent ({type(exc).__name__}); try again later.",
                                      provider=PROVIDER, request_id=job_id) from None

    def generate(self, fields: dict[str, Any], *, timeout: float, image: bytes | None = None,
                 on_status: Callable[[TenstorrentJob], None] | None = None) -> TenstorrentVideo:
        """Make one video; waits up to ``timeout`` seconds in all.

        ``ProviderTimeout`` carries the media server's job id when there is one, so a caller
        can fetch the video later instead of paying for it twice.
        """
        deadline = self.clock() + timeout
        submitted = self.submit(fields, timeout=timeout, image=image)
        if isinstance(submitted, TenstorrentVideo):
            return submitted
        return self._finish(submitted, deadline, on_status)

    def submit(self, fields: dict[str, Any], *, timeout: float, image: bytes | None = None
               ) -> TenstorrentJob | TenstorrentVideo:
        """The paid step: tt-media-server answers a job to poll, the legacy endpoint the video."""
        url = self._base()
        body = dict(fields)
        if image is not None:
            url = f"{url}/i2v"
            body["image_prompts"] = [{"image": base64.b64encode(image).decode("ascii"), "frame_pos": 0}]
        response = self._request("POST", url, json=body, timeout=timeout)
        if response.status_code == 202:
            return self._job(response)
        if not response.ok:
            raise error_from_response(response)
        return TenstorrentVideo(response.content, response.headers.get("Content-Type") or "video/mp4")

    def _job(self, response: requests.Response) -> TenstorrentJob:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("id"):
            raise ProviderUnavailable("Tenstorrent answered 202 without a job id.", provider=PROVIDER)
        return TenstorrentJob(str(body["id"]), str(body.get("status", "queued")), body.get("error"), body)

    def job(self, job_id: str, *, timeout: float = 30.0) -> TenstorrentJob:
        response = self._request("GET", f"{self._base()}/{job_id}", timeout=timeout, job_id=job_id)
        if not response.ok:
            raise error_from_response(response, job_id)
        return self._job(response)

    def download(self, job_id: str, *, timeout: float = 60.0) -> TenstorrentVideo:
        response = self._request("GET", f"{self._base()}/{job_id}/download", timeout=timeout, job_id=job_id)
        if not response.ok:
            raise error_from_response(response, job_id)
        return TenstorrentVideo(response.content, response.headers.get("Content-Type") or "video/mp4", job_id)

    def cancel(self, job_id: str, *, timeout: float = 30.0) -> str:
        response = self._request("POST", f"{self._base()}/{job_id}/cancel", timeout=timeout, job_id=job_id)
        if not response.ok:
            raise error_from_response(response, job_id)
        try:
            return str(response.json().get("status", "cancelling"))
        except (ValueError, AttributeError):
            return "cancelling"

    def _finish(self, job: TenstorrentJob, deadline: float,
                on_status: Callable[[TenstorrentJob], None] | None) -> TenstorrentVideo:
        interval = self.poll_interval
        while True:
            if on_status:
                on_status(job)
            if job.status == "completed":
                return self.download(job.id, timeout=max(deadline - self.clock(), 1.0))
            if job.status in FINISHED_BAD:
                self.raise_finished(job)
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise ProviderTimeout(
                    f"Tenstorrent did not finish in time; the job keeps running as {job.id}.",
                    provider=PROVIDER, request_id=job.id)
            self.sleep(min(interval, remaining))
            interval = min(interval * 1.5, 5.0)
            try:
                job = self.job(job.id, timeout=max(min(deadline - self.clock(), 30.0), 1.0))
            except ProviderUnavailable as exc:  # a blip while polling: poll again next tick
                logger.warning("polling Tenstorrent job %s failed: %s", job.id, exc.message)

    @staticmethod
    def raise_finished(job: TenstorrentJob) -> None:
        error = job.error or {}
        message = error.get("message") if isinstance(error, dict) else str(error)
        if job.status == "cancelled":
            raise ProviderCancelled(f"The Tenstorrent job {job.id} was cancelled.", provider=PROVIDER,
                                    request_id=job.id)
        raise ProviderFailed(f"Tenstorrent failed the job: {message or 'no reason given'}",
                                  provider=PROVIDER, request_id=job.id,
                                  provider_error_type=error.get("code") if isinstance(error, dict) else None)
