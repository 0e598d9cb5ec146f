"""fal.ai's queue models: submit once, poll (or a signed webhook), fetch, download.

The backend for every ``fal-ai/...`` queue model of the catalog. One :class:`FalClient` per
process and set of settings, so its HTTP session keeps its connections to fal alive between
jobs (docs/protocols.md, "fal queue").
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from model_control import fal_webhook
from model_control.backends.port import (
    GeneratedVideo,
    ImageResolver,
    ProviderStatus,
    RemoteBackend,
    Submitted,
    WebhookNews,
    WebhookRefused,
)
from model_control.catalog import (
    IMAGE_TO_VIDEO,
    TEXT_TO_VIDEO,
    VideoModel,
    flat_per_second,
    image_param,
    kling_price,
    negative_param,
    per_second,
    prompt_param,
    seed_param,
)
from model_control.errors import (
    ProviderError,
    ProviderFailed,
    ProviderRejected,
    ProviderUnavailable,
)
from model_control.fal import FalClient, field_errors
from model_control.inputs import ImageInput, Param

logger = logging.getLogger(__name__)

NAME = "fal"


@functools.lru_cache(maxsize=4)
def _client(key: str | None, queue_url: str, run_url: str, rest_url: str, cdn_url: str, timeout: float,
            max_attempts: int, poll_interval: float) -> FalClient:
    return FalClient(key, queue_url=queue_url, run_url=run_url, rest_url=rest_url, cdn_url=cdn_url,
                     timeout=timeout, max_attempts=max_attempts, poll_interval=poll_interval)


def fal_client() -> FalClient:
    """This process's client for the configured fal (kept, so its connections are reused)."""
    return _client(settings.FAL_KEY, settings.FAL_QUEUE_URL, settings.FAL_RUN_URL, settings.FAL_REST_URL,
                   settings.FAL_CDN_URL, settings.FAL_HTTP_TIMEOUT, settings.FAL_MAX_ATTEMPTS,
                   settings.VIDEO_POLL_INTERVAL)


def fal_missing() -> str | None:
    """What fal needs before it can be used here (its key), or None."""
    return None if settings.FAL_KEY else "set FAL_KEY (or FAL_API_KEY)"


FAL_NOT_CONFIGURED = "fal is not configured: set FAL_KEY (or FAL_API_KEY) in the studio's environment."


class FalQueueBackend(RemoteBackend):
    name = NAME
    title = "fal.ai queue"

    def models(self) -> list[VideoModel]:
        return build_models(self.title)

    def missing(self) -> str | None:
        return fal_missing()

    def not_configured_message(self) -> str:
        return FAL_NOT_CONFIGURED

    def submit(self, model: VideoModel, values: dict[str, Any], *, timeout: float,
               resolve_image: ImageResolver | None = None, webhook_url: str | None = None) -> Submitted:
        fields = model.wire_fields(values)
        for name, value in list(fields.items()):
            if isinstance(value, ImageInput):
                fields[name] = (resolve_image or self.upload)(value)
        request = fal_client().submit(model.endpoint, fields, webhook_url=webhook_url)
        logger.info("fal request %s submitted for %s", request.request_id, model.id)
        return Submitted(request.request_id, fields)

    def upload(self, image: ImageInput) -> str:
        """fal's CDN (v3): the URL a model input can name."""
        return fal_client().upload(image.data, content_type=image.content_type, file_name=image.file_name)

    def check(self, model: VideoModel, request_id: str) -> ProviderStatus:
        client = fal_client()
        status = client.status(client.handle(model.endpoint, request_id), logs=True)
        logs = tuple(str(entry.get("message", "")) for entry in status.logs[-5:])
        state = {"IN_QUEUE": "queued", "IN_PROGRESS": "running"}.get(status.status, "completed")
        return ProviderStatus(state, status.queue_position, logs)

    def fetch(self, model: VideoModel, request_id: str, fields: dict[str, Any], *, timeout: float) -> GeneratedVideo:
        client = fal_client()
        output = client.result(client.handle(model.endpoint, request_id))
        video = output.get("video") if isinstance(output, dict) else None
        if not isinstance(video, dict) or not video.get("url"):
            raise ProviderUnavailable("fal's result has no video URL.", provider=NAME, request_id=request_id)
        content, content_type = client.download(video["url"], timeout=timeout)
        return GeneratedVideo(content, video.get("content_type") or content_type, model.id, NAME, request_id,
                              fields, output)

    def cancel(self, model: VideoModel, request_id: str) -> str:
        client = fal_client()
        return client.cancel(client.handle(model.endpoint, request_id))

    def webhook_url(self, public_url: str) -> str | None:
        return f"{public_url}/api/webhooks/{NAME}/"

    def webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNews:
        """fal's signed webhook: Ed25519 over the raw body, keys from fal's JWKS."""
        try:
            hook = fal_webhook.from_settings(settings).verify(headers, body)
        except fal_webhook.WebhookError as exc:
            raise WebhookRefused(exc.http_status, str(exc), exc.kind) from None
        ids = tuple(dict.fromkeys(i for i in (hook.request_id, hook.gateway_request_id) if i))
        return WebhookNews(ids, None if hook.ok else webhook_error(hook))


def webhook_error(hook: fal_webhook.FalWebhook) -> ProviderError:
    """The job's error from an ``ERROR`` webhook (per-field details when fal names fields)."""
    payload = hook.payload
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if detail:
        details = field_errors(detail)
        summary = "; ".join(f"{d['field']}: {d['message']}" if d["field"] else d["message"] for d in details)
        return ProviderRejected(f"fal rejected the input: {summary}", provider=NAME, details=details,
                                request_id=hook.request_id)
    return ProviderFailed(f"fal reports the request failed: {hook.error or 'no reason given'}", provider=NAME,
                          request_id=hook.request_id)


# --- the models (docs/protocols.md, "Model inputs on fal") -------------------------------------------

_ANIMATEDIFF_SIZES = ("square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9")
_ANIMATEDIFF_SIZE_LABELS = ("Square HD", "Square", "Portrait 3:4", "Portrait 9:16", "Landscape 4:3",
                            "Landscape 16:9")


def build_models(title: str) -> list[VideoModel]:
    def model(id_: str, name: str, kind: str, params: tuple[Param, ...], **extra: Any) -> VideoModel:
        return VideoModel(id_, name, NAME, kind, params, backend_title=title, endpoint=id_, **extra)

    def animatediff(id_: str, name: str, *, steps: tuple[int, int], guidance: float, description: str,
                    wait: tuple[int, int], preview: tuple[str, dict] | None = None) -> VideoModel:
        """The AnimateDiff family: same inputs, the turbo variant with fewer steps."""
        default_steps, max_steps = steps
        params = (
            prompt_param(), negative_param(),
            Param("num_frames", "num_frames", "int", default=16, minimum=8, maximum=64),
            Param("steps", "num_inference_steps", "int", default=default_steps, minimum=1, maximum=max_steps),
            Param("guidance", "guidance_scale", "float", default=guidance, minimum=0, maximum=20),
            Param("fps", "fps", "int", default=8, minimum=1, maximum=30),
            seed_param(),
            Param("resolution", "video_size", "choice", default="square", choices=_ANIMATEDIFF_SIZES,
                  label="Frame size", help="The shape and size of the frames.",
                  choice_labels=_ANIMATEDIFF_SIZE_LABELS),
        )
        return model(id_, name, TEXT_TO_VIDEO, params, description=description, typical_wait=wait, preview=preview)

    veo_duration = Param("duration", "duration", "choice", default="8s", choices=("4s", "6s", "8s"))
    veo_tail = (
        veo_duration,
        Param("resolution", "resolution", "choice", default="720p", choices=("720p", "1080p")),
        Param("audio", "generate_audio", "bool", default=True),
        seed_param(),
    )
    veo_preview = ("fal-ai/veo3.1/fast", {"resolution": "720p", "duration": "4s"})

    def veo(id_: str, name: str, kind: str, rate: str, extra: tuple[Param, ...], aspect: tuple[str, ...], *,
            wait: tuple[int, int], description: str, **more: Any) -> VideoModel:
        params = (prompt_param(), *extra,
                  Param("aspect_ratio", "aspect_ratio", "choice", default=aspect[0], choices=aspect), *veo_tail)
        return model(id_, name, kind, params, price=flat_per_second(rate), typical_wait=wait,
                     description=description, **more)

    duration_5_10 = Param("duration", "duration", "choice", default="5", choices=("5", "10"))
    return [
        animatediff("fal-ai/fast-animatediff/text-to-video", "AnimateDiff (fast)", steps=(25, 50), guidance=7.5,
                    description="Short stylised clips from text; cheap and quick.", wait=(10, 40),
                    preview=("fal-ai/fast-animatediff/turbo/text-to-video", {})),
        animatediff("fal-ai/fast-animatediff/turbo/text-to-video", "AnimateDiff Turbo", steps=(4, 8), guidance=1.0,
                    description="AnimateDiff distilled to a few steps.", wait=(5, 20)),
        model("fal-ai/wan-25-preview/image-to-video", "Wan 2.5 preview (image to video)", IMAGE_TO_VIDEO,
              (prompt_param(), image_param("image_url"), duration_5_10,
               Param("resolution", "resolution", "choice", default="1080p", choices=("480p", "720p", "1080p")),
               negative_param(), seed_param()),
              price=per_second({"480p": "0.05", "720p": "0.10", "1080p": "0.15"}),
              description="Brings a picture to life; up to 10 s at 1080p.", typical_wait=(60, 180),
              aliases=("wan", "wan-2.5"),
              preview=("fal-ai/wan-25-preview/image-to-video", {"resolution": "480p", "duration": "5"})),
        model("fal-ai/wan/v2.2-a14b/image-to-video", "Wan 2.2 A14B (image to video)", IMAGE_TO_VIDEO,
              (prompt_param(), image_param("image_url"),
               Param("num_frames", "num_frames", "int", default=81, minimum=17, maximum=161),
               Param("fps", "frames_per_second", "int", default=16, minimum=4, maximum=60),
               Param("resolution", "resolution", "choice", default="720p", choices=("480p", "580p", "720p")),
               negative_param(), seed_param(),
               Param("steps", "num_inference_steps", "int", default=27, minimum=2, maximum=40)),
              price=per_second({"480p": "0.04", "720p": "0.08"}, fallback="720p"),
              description="Open Wan 2.2 weights; you choose the frames, frame rate and steps.",
              typical_wait=(60, 180), aliases=("wan-2.2",),
              preview=("fal-ai/wan/v2.2-a14b/image-to-video", {"resolution": "480p"})),
        model("fal-ai/kling-video/v2.5-turbo/pro/image-to-video", "Kling 2.5 Turbo Pro (image to video)",
              IMAGE_TO_VIDEO,
              (prompt_param(), image_param("image_url"), duration_5_10, negative_param(),
               Param("guidance", "cfg_scale", "float", default=0.5, minimum=0, maximum=1)),
              price=kling_price, description="Smooth, lifelike motion from a picture.", typical_wait=(60, 120),
              aliases=("kling",),
              preview=("fal-ai/kling-video/v2.5-turbo/pro/image-to-video", {"duration": "5"})),
        veo("fal-ai/veo3.1", "Veo 3.1", TEXT_TO_VIDEO, "0.20", (), ("16:9", "9:16"), wait=(60, 180),
            description="Google's Veo 3.1: cinematic video with sound.", preview=veo_preview),
        veo("fal-ai/veo3.1/fast", "Veo 3.1 Fast", TEXT_TO_VIDEO, "0.10", (), ("16:9", "9:16"), wait=(30, 90),
            description="Veo 3.1 at half the price and faster.", preview=veo_preview),
        veo("fal-ai/veo3.1/image-to-video", "Veo 3.1 (image to video)", IMAGE_TO_VIDEO, "0.20",
            (image_param("image_url"),), ("auto", "16:9", "9:16"), wait=(60, 180),
            description="Veo 3.1 starting from your picture.", aliases=("veo3.1",)),
        veo("fal-ai/veo3.1/first-last-frame-to-video", "Veo 3.1 (first and last frame)", IMAGE_TO_VIDEO, "0.20",
            (image_param("first_frame_url", label="First frame",
                         help="The picture the video starts on: PNG, JPEG or WebP."),
             image_param("last_frame_url", name="last_image")), ("auto", "16:9", "9:16"), wait=(60, 180),
            description="Veo 3.1 moving from one picture to another."),
        model("fal-ai/krea-wan-14b/text-to-video", "Krea WAN 14B (text to video)", TEXT_TO_VIDEO,
              (prompt_param(), Param("num_frames", "num_frames", "int", default=78, minimum=18, maximum=258,
                                     multiple_of=12, offset=6,
                                     help="How many frames to make: 6 plus a multiple of 12 (18, 30, ... 258)."),
               seed_param()),
              description="Krea's realtime model rendering a whole clip.", typical_wait=(30, 90)),
    ]
