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
from model_control.tenstorrent import TenstorrentClient

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
