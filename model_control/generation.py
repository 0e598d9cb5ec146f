"""Run one catalog model to the end and hand back the video (the synchronous door).

Used by ``POST /api/videos/generate`` now and by the durable job tasks later: it knows
which client each backend needs, resolves images (fal CDN upload, Tenstorrent base64) and
keeps one deadline across submit, polling and download.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from model_control import backends
from model_control.catalog import FAL, TENSTORRENT, CatalogError, ImageInput, VideoModel
from model_control.errors import ProviderError, ProviderUnavailable
from model_control.fal import FalClient, FalStatus
from model_control.tenstorrent import FINISHED_BAD, TenstorrentClient, TenstorrentJob

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneratedVideo:
    content: bytes
    content_type: str
    model_id: str
    backend: str
    request_id: str | None
    fields: dict[str, Any]  # what was sent to the provider (images as URLs or "<upload>")
    output: dict[str, Any] | None = None  # the provider's output JSON (fal)


Progress = Callable[[dict[str, Any]], None]


def generate_video(model: VideoModel, request: dict[str, Any], *, timeout: float,
                   fal: FalClient | None = None, tenstorrent: TenstorrentClient | None = None,
                   on_progress: Progress | None = None) -> GeneratedVideo:
    """Validate ``request`` for ``model``, run it on its backend, return the video bytes.

    Raises ``CatalogError`` before anything is sent, then only ``ProviderError``s.
    """
    if model.realtime:
        raise CatalogError({"model": f"{model.id} is a realtime model: stream it over the realtime WebSocket"})
    fields = model.map_request(request)
    if model.backend == FAL:
        return _run_fal(model, fields, timeout, fal or backends.fal_client(), on_progress)
    if model.backend == TENSTORRENT:
        return _run_tenstorrent(model, fields, timeout, tenstorrent or backends.tenstorrent_client(),
                                on_progress)
    raise CatalogError({"model": f"{model.id} cannot be run synchronously"})


def _run_fal(model: VideoModel, fields: dict[str, Any], timeout: float, client: FalClient,
             on_progress: Progress | None) -> GeneratedVideo:
    deadline = time.monotonic() + timeout
    for name, value in list(fields.items()):
        if isinstance(value, ImageInput):
            fields[name] = value.url or client.upload(value.data, content_type=value.content_type,
                                                      file_name=value.file_name)
    request = client.submit(model.endpoint, fields)
    logger.info("fal request %s submitted for %s", request.request_id, model.id)

    def report(status: FalStatus) -> None:
        if on_progress:
            on_progress({"status": status.status, "queue_position": status.queue_position,
                         "logs": [entry.get("message", "") for entry in status.logs[-5:]]})

    try:
        output = client.wait(request, timeout=max(deadline - time.monotonic(), 0.0), on_status=report)
        video = output.get("video") if isinstance(output, dict) else None
        if not isinstance(video, dict) or not video.get("url"):
            raise ProviderUnavailable("fal's result has no video URL.", provider="fal",
                                      request_id=request.request_id)
        content, content_type = client.download(video["url"], timeout=max(deadline - time.monotonic(), 1.0))
    except ProviderError as exc:
        exc.request_id = exc.request_id or request.request_id
        raise
    return GeneratedVideo(content, video.get("content_type") or content_type, model.id, FAL,
                          request.request_id, fields, output)


def _run_tenstorrent(model: VideoModel, fields: dict[str, Any], timeout: float, client: TenstorrentClient,
                     on_progress: Progress | None) -> GeneratedVideo:
    image = None
    for param in model.params:
        if param.kind == "image" and param.target in fields:
            image = _image_bytes(fields.pop(param.target))

    def report(job) -> None:
        if on_progress:
            on_progress({"status": job.status, "job_id": job.id})

    video = client.generate(fields, timeout=timeout, image=image, on_status=report)
    shown = dict(fields, **({"image": "<upload>"} if image is not None else {}))
    return GeneratedVideo(video.content, video.content_type, model.id, TENSTORRENT, video.job_id, shown)


def _image_bytes(image: ImageInput | str) -> bytes:
    """The image itself: Tenstorrent takes base64 in the body, not a URL to fetch."""
    if isinstance(image, ImageInput) and image.data is not None:
        return image.data
    url = image.url if isinstance(image, ImageInput) else image
    if url and url.startswith("data:image/") and ";base64," in url:
        try:
            return base64.b64decode(url.split(";base64,", 1)[1], validate=True)
        except ValueError:
            raise CatalogError({"image": "the data: URL is not valid base64"}) from None
    raise CatalogError({"image": "Tenstorrent needs the image itself: upload the file (or a data: URL) "
                                 "instead of an http(s) URL"})


# --- steps for durable jobs: submit once, check, finish, cancel ---------------------------------

@dataclass(frozen=True)
class Submitted:
    """What a paid submit left: the provider's request id, or (legacy Tenstorrent) the video."""

    request_id: str | None
    fields: dict[str, Any]
    video: GeneratedVideo | None = None


@dataclass(frozen=True)
class ProviderStatus:
    state: str  # queued | running | completed
    queue_position: int | None = None
    logs: tuple[str, ...] = ()
    progress: float | None = None


ImageResolver = Callable[[ImageInput], str]


def submit(model: VideoModel, values: dict[str, Any], *, timeout: float,
           resolve_image: ImageResolver | None = None, webhook_url: str | None = None) -> Submitted:
    """The paid step, sent exactly once by the caller: ``values`` are ``model.clean``'s output.

    fal images that are uploads go to fal's CDN through ``resolve_image`` (which may reuse an
    earlier upload of the same bytes). ``webhook_url`` (fal only) is where fal POSTs its
    signed "done" webhook.
    """
    fields = model.wire_fields(values)
    if model.backend == FAL:
        client = backends.fal_client()
        for name, value in list(fields.items()):
            if isinstance(value, ImageInput):
                fields[name] = resolve_image(value) if resolve_image else client.upload(
                    value.data, content_type=value.content_type, file_name=value.file_name)
        request = client.submit(model.endpoint, fields, webhook_url=webhook_url)
        logger.info("fal request %s submitted for %s", request.request_id, model.id)
        return Submitted(request.request_id, fields)
    if model.backend == TENSTORRENT:
        image = None
        for param in model.params:
            if param.kind == "image" and param.target in fields:
                image = _image_bytes(fields.pop(param.target))
        shown = dict(fields, **({"image": "<upload>"} if image is not None else {}))
        answer = backends.tenstorrent_client().submit(fields, timeout=timeout, image=image)
        if isinstance(answer, TenstorrentJob):
            return Submitted(answer.id, shown)
        return Submitted(None, shown, GeneratedVideo(answer.content, answer.content_type, model.id, TENSTORRENT,
                                                     None, shown))
    raise CatalogError({"model": f"{model.id} does not run as a queued job"})


def check(model: VideoModel, request_id: str) -> ProviderStatus:
    """Where the provider is with ``request_id``; raises the provider's error when it failed."""
    if model.backend == FAL:
        client = backends.fal_client()
        status = client.status(client.handle(model.endpoint, request_id), logs=True)
        logs = tuple(str(entry.get("message", "")) for entry in status.logs[-5:])
        state = {"IN_QUEUE": "queued", "IN_PROGRESS": "running"}.get(status.status, "completed")
        return ProviderStatus(state, status.queue_position, logs)
    job = backends.tenstorrent_client().job(request_id)
    if job.status in FINISHED_BAD:
        TenstorrentClient.raise_finished(job)
    state = {"queued": "queued", "completed": "completed"}.get(job.status, "running")
    return ProviderStatus(state)


def finish(model: VideoModel, request_id: str, fields: dict[str, Any], *, timeout: float) -> GeneratedVideo:
    """Fetch a completed request's output and download the video."""
    if model.backend == FAL:
        client = backends.fal_client()
        output = client.result(client.handle(model.endpoint, request_id))
        video = output.get("video") if isinstance(output, dict) else None
        if not isinstance(video, dict) or not video.get("url"):
            raise ProviderUnavailable("fal's result has no video URL.", provider="fal", request_id=request_id)
        content, content_type = client.download(video["url"], timeout=timeout)
        return GeneratedVideo(content, video.get("content_type") or content_type, model.id, FAL, request_id,
                              fields, output)
    downloaded = backends.tenstorrent_client().download(request_id, timeout=timeout)
    return GeneratedVideo(downloaded.content, downloaded.content_type, model.id, TENSTORRENT, request_id, fields)


def cancel(model: VideoModel, request_id: str) -> str:
    """Ask the provider to stop ``request_id``; returns what it said."""
    if model.backend == FAL:
        client = backends.fal_client()
        return client.cancel(client.handle(model.endpoint, request_id))
    return backends.tenstorrent_client().cancel(request_id)
