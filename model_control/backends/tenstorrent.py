"""Tenstorrent's cloud video generation: the legacy endpoint or tt-media-server.

One URL (``CLOUD_VIDEO_GENERATION_URL``), two servers, told apart in one place: the answer
to the paid submit. tt-media-server answers ``202`` with a job to poll (``submit`` returns
its id); the legacy endpoint answers the POST with the MP4 itself (``submit`` returns the
video, and the job completes without a poll). Images travel as base64 in the body.
"""

from __future__ import annotations

import base64
import functools
from typing import Any

from django.conf import settings

from model_control.backends.port import (
    GeneratedVideo,
    ImageResolver,
    ProviderStatus,
    RemoteBackend,
    Submitted,
)
from model_control.catalog import (
    IMAGE_TO_VIDEO,
    TEXT_TO_VIDEO,
    VideoModel,
    image_param,
    negative_param,
    prompt_param,
)
from model_control.errors import CatalogError
from model_control.inputs import ImageInput, Param
from model_control.tenstorrent import FINISHED_BAD, TenstorrentClient, TenstorrentJob

NAME = "tenstorrent"
NOT_CONFIGURED = ("Tenstorrent is not configured: set CLOUD_VIDEO_GENERATION_URL (and "
                  "CLOUD_VIDEO_GENERATION_AUTH_TOKEN) in the studio's environment.")


@functools.lru_cache(maxsize=4)
def _client(url: str | None, token: str | None, poll_interval: float) -> TenstorrentClient:
    return TenstorrentClient(url, token, poll_interval=poll_interval)


def tenstorrent_client() -> TenstorrentClient:
    """This process's client for the configured Tenstorrent (kept: its connections are reused)."""
    return _client(settings.CLOUD_VIDEO_GENERATION_URL, settings.CLOUD_VIDEO_GENERATION_AUTH_TOKEN,
                   settings.VIDEO_POLL_INTERVAL)


class TenstorrentBackend(RemoteBackend):
    name = NAME
    title = "Tenstorrent cloud"

    def models(self) -> list[VideoModel]:
        return build_models(self.title)

    def missing(self) -> str | None:
        return None if settings.CLOUD_VIDEO_GENERATION_URL else "set CLOUD_VIDEO_GENERATION_URL"

    def not_configured_message(self) -> str:
        return NOT_CONFIGURED

    def submit(self, model: VideoModel, values: dict[str, Any], *, timeout: float,
               resolve_image: ImageResolver | None = None, webhook_url: str | None = None) -> Submitted:
        fields = model.wire_fields(values)
        image = None
        for param in model.params:
            if param.kind == "image" and param.target in fields:
                image = image_bytes(fields.pop(param.target))
        shown = dict(fields, **({"image": "<upload>"} if image is not None else {}))
        answer = tenstorrent_client().submit(fields, timeout=timeout, image=image)
        if isinstance(answer, TenstorrentJob):
            return Submitted(answer.id, shown)
        return Submitted(None, shown, GeneratedVideo(answer.content, answer.content_type, model.id, NAME, None,
                                                     shown))

    def check(self, model: VideoModel, request_id: str) -> ProviderStatus:
        job = tenstorrent_client().job(request_id)
        if job.status in FINISHED_BAD:
            TenstorrentClient.raise_finished(job)
        state = {"queued": "queued", "completed": "completed"}.get(job.status, "running")
        return ProviderStatus(state)

    def fetch(self, model: VideoModel, request_id: str, fields: dict[str, Any], *, timeout: float) -> GeneratedVideo:
        downloaded = tenstorrent_client().download(request_id, timeout=timeout)
        return GeneratedVideo(downloaded.content, downloaded.content_type, model.id, NAME, request_id, fields)

    def cancel(self, model: VideoModel, request_id: str) -> str:
        return tenstorrent_client().cancel(request_id)


def image_bytes(image: ImageInput | str) -> bytes:
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


def build_models(title: str) -> list[VideoModel]:
    # TT Studio's seed: empty picks 0, so the same prompt gives the same video.
    seed = Param("seed", "seed", "int", default=0, minimum=0, maximum=2**32 - 1,
                 help="The same seed with the same settings gives the same video; empty means 0.")
    return [
        VideoModel(
            "tenstorrent/wan2.2-t2v", "Wan 2.2 on Tenstorrent (text to video)", NAME, TEXT_TO_VIDEO,
            (prompt_param(), negative_param(default="low quality"),
             Param("steps", "num_inference_steps", "int", default=12, minimum=4, maximum=50), seed),
            backend_title=title, endpoint="v1/videos/generations",
            fixed={"negative_prompt": "low quality", "num_inference_steps": 12, "seed": 0},
            description="Wan 2.2 on Tenstorrent hardware (TT Studio's cloud video generation).",
            typical_wait=(60, 180),
        ),
        VideoModel(
            "tenstorrent/wan2.2-i2v", "Wan 2.2 on Tenstorrent (image to video)", NAME, IMAGE_TO_VIDEO,
            (prompt_param(), image_param("image_prompts"), negative_param(default="low quality"),
             Param("steps", "num_inference_steps", "int", default=20, minimum=4, maximum=50), seed),
            backend_title=title, endpoint="v1/videos/generations/i2v",
            fixed={"negative_prompt": "low quality"},
            description="Wan 2.2 on Tenstorrent hardware, starting from your picture.",
            typical_wait=(120, 180),
        ),
    ]
