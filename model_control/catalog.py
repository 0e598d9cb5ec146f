"""The model catalog: every video model Studio can drive, and how Studio's one request
shape maps onto each model's own fields.

Studio's request shape: ``prompt, negative_prompt, image, last_image, resolution,
aspect_ratio, duration, num_frames, fps, seed, steps, guidance, audio, strength``. Each
model accepts a subset; :meth:`VideoModel.map_request` validates a request against it
(naming the field and the allowed values) and returns exactly the fields the model's
endpoint takes. Nothing is sent to a provider before this succeeds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from model_control.inputs import CatalogError, ImageInput, Param

STUDIO_FIELDS = ("prompt", "negative_prompt", "image", "last_image", "resolution", "aspect_ratio",
                 "duration", "num_frames", "fps", "seed", "steps", "guidance", "audio", "strength")

TEXT_TO_VIDEO, IMAGE_TO_VIDEO, REALTIME = "text-to-video", "image-to-video", "realtime"
FAL, FAL_REALTIME, TENSTORRENT, LOCAL = "fal", "fal-realtime", "tenstorrent", "local"
KIND_TITLES = {TEXT_TO_VIDEO: "Text to video", IMAGE_TO_VIDEO: "Image to video", REALTIME: "Realtime"}
BACKEND_TITLES = {
    FAL: "fal.ai queue",
    FAL_REALTIME: "fal.ai realtime",
    TENSTORRENT: "Tenstorrent cloud",
    LOCAL: "Local Krea realtime pipeline",
}


PriceFn = Callable[[dict[str, Any]], tuple[Decimal, str] | None]


@dataclass(frozen=True)
class VideoModel:
    id: str
    title: str
    backend: str
    kind: str
    params: tuple[Param, ...]
    endpoint: str = ""  # the provider's app id / path
    price: PriceFn | None = None
    fixed: dict[str, Any] = field(default_factory=dict)  # always sent (e.g. TT's legacy defaults)
    description: str = ""
    # How long a generation usually takes, in seconds (low, high), from submit to video;
    # None for realtime models (their frames stream).
    typical_wait: tuple[int, int] | None = None

    @property
    def backend_title(self) -> str:
        return BACKEND_TITLES[self.backend]

    @property
    def kind_title(self) -> str:
        return KIND_TITLES[self.kind]

    @property
    def typical_wait_text(self) -> str | None:
        """``"usually 2-3 minutes"``, ``"usually 10-40 seconds"``; None when it streams."""
        if self.typical_wait is None:
            return None
        low, high = self.typical_wait
        if high <= 90:
            return f"usually {low}-{high} seconds"
        return f"usually {max(low // 60, 1)}-{-(-high // 60)} minutes"

    @property
    def realtime(self) -> bool:
        return self.kind == REALTIME

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def clean(self, request: dict[str, Any], *, require: bool = True) -> dict[str, Any]:
        """Validated Studio values for this model (unset optional fields left out).

        ``require=False`` skips the required-field check (for a price estimate).
        """
        errors: dict[str, str] = {}
        unknown = [k for k, v in request.items() if v not in (None, "") and self.param(k) is None]
        accepted = ", ".join(p.name for p in self.params)
        for name in unknown:
            hint = "" if name in STUDIO_FIELDS else " (not a Studio field)"
            errors[name] = f"not accepted by {self.id}{hint}; it accepts: {accepted}"
        values: dict[str, Any] = {}
        for param in self.params:
            raw = request.get(param.name)
            if raw is None or raw == "":
                if param.required and require:
                    errors[param.name] = "is required"
                continue
            try:
                values[param.name] = param.clean(raw)
            except ValueError as exc:
                errors[param.name] = str(exc)
        if errors:
            raise CatalogError(errors)
        return values

    def map_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Exactly the fields this model's endpoint takes, from a Studio request."""
        return self.wire_fields(self.clean(request))

    def wire_fields(self, values: dict[str, Any]) -> dict[str, Any]:
        """The endpoint's fields from values ``clean`` already validated (not validated again)."""
        fields = dict(self.fixed)
        for name, value in values.items():
            param = self.param(name)
            wire = param.encode(value) if param.encode else value
            if isinstance(wire, ImageInput) and wire.url:
                wire = wire.url  # a URL travels as is; uploads are resolved by the backend
            if param.kind == "size":
                fields.update(zip(param.target.split(","), wire, strict=True))
            else:
                fields[param.target] = wire
        return fields

    def estimate(self, request: dict[str, Any]) -> dict[str, Any]:
        """Estimated cost in USD of one request (validated first)."""
        return self.price_of(self.clean(request, require=False))

    def price_of(self, values: dict[str, Any]) -> dict[str, Any]:
        """Estimated cost in USD of already-cleaned values (model defaults fill the gaps)."""
        values = dict(values)
        for param in self.params:
            values.setdefault(param.name, param.default)
        priced = self.price(values) if self.price else None
        if priced is None:
            return {"model": self.id, "currency": "USD", "estimated_cost": None,
                    "basis": "no published price for this model"}
        cost, basis = priced
        return {"model": self.id, "currency": "USD",
                "estimated_cost": str(cost.quantize(Decimal("0.01"), ROUND_HALF_UP)), "basis": basis}

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "backend": self.backend, "backend_title": self.backend_title,
            "kind": self.kind, "kind_title": self.kind_title, "endpoint": self.endpoint,
            "description": self.description, "typical_wait_s": list(self.typical_wait) if self.typical_wait else None,
            "typical_wait": self.typical_wait_text, "inputs": [p.describe() for p in self.params],
        }


# --- price functions (docs/protocols.md's table) -------------------------------------------------

def per_second(rates: dict[str, str], *, fallback: str | None = None) -> PriceFn:
    """``rate[resolution] x seconds``; seconds from ``duration`` or ``num_frames / fps``."""

    def price(values: dict[str, Any]) -> tuple[Decimal, str]:
        resolution = values.get("resolution") or fallback
        rate = Decimal(rates.get(resolution, rates.get(fallback or "", "0")))
        seconds = _seconds(values)
        note = "" if resolution in rates else f" (priced at the {fallback} rate)"
        return rate * seconds, f"{resolution} at ${rate}/s x {seconds:g} s{note}"

    return price


def flat_per_second(rate: str) -> PriceFn:
    def price(values: dict[str, Any]) -> tuple[Decimal, str]:
        seconds = _seconds(values)
        return Decimal(rate) * seconds, f"${rate}/s x {seconds:g} s"

    return price


def kling_price(values: dict[str, Any]) -> tuple[Decimal, str]:
    seconds = _seconds(values)
    extra = max(seconds - 5, Decimal(0))
    return Decimal("0.35") + Decimal("0.07") * extra, f"$0.35 for 5 s + $0.07 x {extra:g} extra s"


def free(values: dict[str, Any]) -> tuple[Decimal, str]:
    return Decimal(0), "runs on your own GPU"


def _seconds(values: dict[str, Any]) -> Decimal:
    duration = values.get("duration")
    if duration is not None:
        return Decimal(str(duration).rstrip("s"))
    frames, fps = values.get("num_frames"), values.get("fps")
    if frames and fps:
        return (Decimal(frames) / Decimal(fps)).quantize(Decimal("0.01"))
    return Decimal(5)


# --- the models ------------------------------------------------------------------------------

def _prompt(required: bool = True) -> Param:
    return Param("prompt", "prompt", "text", required=required)


def _negative(default: str | None = None) -> Param:
    return Param("negative_prompt", "negative_prompt", "text", default=default)


def _seed(maximum: int = 2**32 - 1) -> Param:
    return Param("seed", "seed", "int", minimum=0, maximum=maximum)


def _image(target: str, required: bool = True, name: str = "image", label: str = "", help: str = "") -> Param:
    return Param(name, target, "image", required=required, label=label, help=help)


_ANIMATEDIFF_SIZES = ("square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9")
_ANIMATEDIFF_SIZE_LABELS = ("Square HD", "Square", "Portrait 3:4", "Portrait 9:16", "Landscape 4:3",
                            "Landscape 16:9")
_VEO_DURATION = Param("duration", "duration", "choice", default="8s", choices=("4s", "6s", "8s"))
_VEO_COMMON = (
    _prompt(),
    _VEO_DURATION,
    Param("resolution", "resolution", "choice", default="720p", choices=("720p", "1080p")),
    Param("audio", "generate_audio", "bool", default=True),
    _seed(),
)


def _veo(id_: str, title: str, kind: str, rate: str, extra: tuple[Param, ...], aspect: tuple[str, ...],
         *, wait: tuple[int, int], description: str) -> VideoModel:
    params = (*_VEO_COMMON[:1], *extra,
              Param("aspect_ratio", "aspect_ratio", "choice", default=aspect[0], choices=aspect),
              *_VEO_COMMON[1:])
    return VideoModel(id_, title, FAL, kind, params, endpoint=id_, price=flat_per_second(rate),
                      typical_wait=wait, description=description)


def _animatediff(id_: str, title: str, *, steps: tuple[int, int], guidance: float, description: str,
                 wait: tuple[int, int]) -> VideoModel:
    """The AnimateDiff family: same inputs, the turbo variant with fewer steps."""
    default_steps, max_steps = steps
    params = (
        _prompt(), _negative(),
        Param("num_frames", "num_frames", "int", default=16, minimum=8, maximum=64),
        Param("steps", "num_inference_steps", "int", default=default_steps, minimum=1, maximum=max_steps),
        Param("guidance", "guidance_scale", "float", default=guidance, minimum=0, maximum=20),
        Param("fps", "fps", "int", default=8, minimum=1, maximum=30),
        _seed(),
        Param("resolution", "video_size", "choice", default="square", choices=_ANIMATEDIFF_SIZES,
              label="Frame size", help="The shape and size of the frames.", choice_labels=_ANIMATEDIFF_SIZE_LABELS),
    )
    return VideoModel(id_, title, FAL, TEXT_TO_VIDEO, params, endpoint=id_, description=description,
                      typical_wait=wait)


# Sizes the local pipeline takes as a job (multiples of 16; Krea's 832x480 first).
LOCAL_RESOLUTIONS = ("832x480", "480x832", "576x320", "320x576", "640x368", "368x640", "320x192", "192x320")


def realtime_blocks(frames: int) -> int:
    """Blocks a realtime stream needs for ``frames`` frames (9 in the first block, then 12 each)."""
    return max(1, -(-(frames + 3) // 12))


def build_models() -> list[VideoModel]:
    duration_5_10 = Param("duration", "duration", "choice", default="5", choices=("5", "10"))
    realtime_params = (
        _prompt(),
        Param("resolution", "width,height", "size", default="832x480", label="Size",
              help="Width x height in pixels, 64-2048, each rounded to a multiple of 8 "
                   "(16 on the local pipeline)."),
        # Frames come a block (12) at a time and the first block drops 3; a stream has at most
        # 50 blocks (the relay's limit, videogen/realtime/protocol.py): 9 + 12 x 49 frames.
        Param("num_frames", "num_blocks", "int", minimum=9, maximum=597,
              encode=realtime_blocks,
              help="How many frames to stream; they are made 12 at a time."),
        Param("steps", "num_denoising_steps", "int", default=4, minimum=1, maximum=8),
        _seed(maximum=2**24),
        Param("strength", "strength", "float", default=1.0, minimum=0.0, maximum=1.0),
        _image("start_frame", required=False, label="Start frame",
               help="An optional picture the stream starts from."),
    )
    return [
        _animatediff("fal-ai/fast-animatediff/text-to-video", "AnimateDiff (fast)", steps=(25, 50), guidance=7.5,
                     description="Short stylised clips from text; cheap and quick.", wait=(10, 40)),
        _animatediff("fal-ai/fast-animatediff/turbo/text-to-video", "AnimateDiff Turbo", steps=(4, 8), guidance=1.0,
                     description="AnimateDiff distilled to a few steps.", wait=(5, 20)),
        VideoModel(
            "fal-ai/wan-25-preview/image-to-video", "Wan 2.5 preview (image to video)", FAL, IMAGE_TO_VIDEO,
            (_prompt(), _image("image_url"), duration_5_10,
             Param("resolution", "resolution", "choice", default="1080p", choices=("480p", "720p", "1080p")),
             _negative(), _seed()),
            endpoint="fal-ai/wan-25-preview/image-to-video",
            price=per_second({"480p": "0.05", "720p": "0.10", "1080p": "0.15"}),
            description="Brings a picture to life; up to 10 s at 1080p.", typical_wait=(60, 180),
        ),
        VideoModel(
            "fal-ai/wan/v2.2-a14b/image-to-video", "Wan 2.2 A14B (image to video)", FAL, IMAGE_TO_VIDEO,
            (_prompt(), _image("image_url"),
             Param("num_frames", "num_frames", "int", default=81, minimum=17, maximum=161),
             Param("fps", "frames_per_second", "int", default=16, minimum=4, maximum=60),
             Param("resolution", "resolution", "choice", default="720p", choices=("480p", "580p", "720p")),
             _negative(), _seed(),
             Param("steps", "num_inference_steps", "int", default=27, minimum=2, maximum=40)),
            endpoint="fal-ai/wan/v2.2-a14b/image-to-video",
            price=per_second({"480p": "0.04", "720p": "0.08"}, fallback="720p"),
            description="Open Wan 2.2 weights; you choose the frames, frame rate and steps.", typical_wait=(60, 180),
        ),
        VideoModel(
            "fal-ai/kling-video/v2.5-turbo/pro/image-to-video", "Kling 2.5 Turbo Pro (image to video)", FAL,
            IMAGE_TO_VIDEO,
            (_prompt(), _image("image_url"), duration_5_10, _negative(),
             Param("guidance", "cfg_scale", "float", default=0.5, minimum=0, maximum=1)),
            endpoint="fal-ai/kling-video/v2.5-turbo/pro/image-to-video", price=kling_price,
            description="Smooth, lifelike motion from a picture.", typical_wait=(60, 120),
        ),
        _veo("fal-ai/veo3.1", "Veo 3.1", TEXT_TO_VIDEO, "0.20", (), ("16:9", "9:16"), wait=(60, 180),
             description="Google's Veo 3.1: cinematic video with sound."),
        _veo("fal-ai/veo3.1/fast", "Veo 3.1 Fast", TEXT_TO_VIDEO, "0.10", (), ("16:9", "9:16"), wait=(30, 90),
             description="Veo 3.1 at half the price and faster."),
        _veo("fal-ai/veo3.1/image-to-video", "Veo 3.1 (image to video)", IMAGE_TO_VIDEO, "0.20",
             (_image("image_url"),), ("auto", "16:9", "9:16"), wait=(60, 180),
             description="Veo 3.1 starting from your picture."),
        _veo("fal-ai/veo3.1/first-last-frame-to-video", "Veo 3.1 (first and last frame)", IMAGE_TO_VIDEO, "0.20",
             (_image("first_frame_url", label="First frame", help="The picture the video starts on: PNG, JPEG or WebP."),
              _image("last_frame_url", name="last_image")), ("auto", "16:9", "9:16"), wait=(60, 180),
             description="Veo 3.1 moving from one picture to another."),
        VideoModel(
            "fal-ai/krea-wan-14b/text-to-video", "Krea WAN 14B (text to video)", FAL, TEXT_TO_VIDEO,
            (_prompt(), Param("num_frames", "num_frames", "int", default=78, minimum=18, maximum=258,
                              multiple_of=12, offset=6,
                              help="How many frames to make: 6 plus a multiple of 12 (18, 30, ... 258)."), _seed()),
            endpoint="fal-ai/krea-wan-14b/text-to-video",
            description="Krea's realtime model rendering a whole clip.", typical_wait=(30, 90),
        ),
        VideoModel(
            "tenstorrent/wan2.2-t2v", "Wan 2.2 on Tenstorrent (text to video)", TENSTORRENT, TEXT_TO_VIDEO,
            (_prompt(), _negative(default="low quality"),
             Param("steps", "num_inference_steps", "int", default=12, minimum=4, maximum=50),
             Param("seed", "seed", "int", default=0, minimum=0, maximum=2**32 - 1)),
            endpoint="v1/videos/generations",
            fixed={"negative_prompt": "low quality", "num_inference_steps": 12, "seed": 0},
            description="Wan 2.2 on Tenstorrent hardware (TT Studio's cloud video generation).",
            typical_wait=(60, 180),
        ),
        VideoModel(
            "tenstorrent/wan2.2-i2v", "Wan 2.2 on Tenstorrent (image to video)", TENSTORRENT, IMAGE_TO_VIDEO,
            (_prompt(), _image("image_prompts"), _negative(default="low quality"),
             Param("steps", "num_inference_steps", "int", default=20, minimum=4, maximum=50),
             Param("seed", "seed", "int", default=0, minimum=0, maximum=2**32 - 1)),
            endpoint="v1/videos/generations/i2v",
            fixed={"negative_prompt": "low quality"},
            description="Wan 2.2 on Tenstorrent hardware, starting from your picture.",
            typical_wait=(120, 180),
        ),
        VideoModel(
            "fal-ai/krea-wan-14b", "Krea WAN 14B realtime (fal)", FAL_REALTIME, REALTIME, realtime_params,
            endpoint="fal-ai/krea-wan-14b/ws",
            description="Frames stream over a WebSocket; prompts can change mid-stream.",
        ),
        VideoModel(
            "local/krea-realtime", "Krea realtime (local GPU)", LOCAL, REALTIME, realtime_params,
            endpoint="local", price=free,
            description="Our own PyTorch pipeline in a Celery GPU worker.",
        ),
        VideoModel(
            "local/krea-offline", "Krea realtime 14B, offline (local GPU)", LOCAL, TEXT_TO_VIDEO,
            (_prompt(),
             Param("resolution", "resolution", "choice", default="832x480", choices=LOCAL_RESOLUTIONS, label="Size",
                   choice_labels=tuple(size.replace("x", " x ") for size in LOCAL_RESOLUTIONS),
                   help="Width x height in pixels; Krea is trained at 832 x 480."),
             # 16 fps; a block is 12 frames (9 for the first); at most 50 blocks (about 37 s).
             Param("num_frames", "num_frames", "int", default=81, minimum=9, maximum=9 + 12 * 49,
                   help="How many frames to make at 16 fps (81 is about 5 s); they are made 12 at a time."),
             Param("seed", "seed", "int", default=0, minimum=0, maximum=2**32 - 1),
             Param("steps", "steps", "int", default=4, minimum=1, maximum=8,
                   help="Denoising steps per block, evenly spaced from 1000; Krea is distilled for 4.")),
            endpoint="local", price=free,
            description="The local Krea pipeline run to the end on a GPU worker (a 16 fps MP4); without a GPU "
                        "and weights, its tiny random-weights configuration (patterns, not video).",
            typical_wait=(10, 90),
        ),
    ]


# Progressive generation: the fast, cheap variant that runs first when a job asks for a
# preview, and the values it forces (the final job keeps the user's own).
PREVIEWS: dict[str, tuple[str, dict[str, Any]]] = {
    "fal-ai/veo3.1": ("fal-ai/veo3.1/fast", {"resolution": "720p", "duration": "4s"}),
    "fal-ai/veo3.1/fast": ("fal-ai/veo3.1/fast", {"resolution": "720p", "duration": "4s"}),
    "fal-ai/fast-animatediff/text-to-video": ("fal-ai/fast-animatediff/turbo/text-to-video", {}),
    "fal-ai/wan-25-preview/image-to-video": ("fal-ai/wan-25-preview/image-to-video",
                                             {"resolution": "480p", "duration": "5"}),
    "fal-ai/wan/v2.2-a14b/image-to-video": ("fal-ai/wan/v2.2-a14b/image-to-video", {"resolution": "480p"}),
    "fal-ai/kling-video/v2.5-turbo/pro/image-to-video": ("fal-ai/kling-video/v2.5-turbo/pro/image-to-video",
                                                        {"duration": "5"}),
}


class UnknownModel(LookupError):
    """A model id the catalog does not have; the message lists the ones it has."""

    def __init__(self, model_id: str, known: list[str]):
        self.model_id = model_id
        super().__init__(f"Unknown model {model_id!r}. Known models: {', '.join(known)}")


class Catalog:
    def __init__(self, models: list[VideoModel]):
        self._models = {model.id: model for model in models}

    def all(self) -> list[VideoModel]:
        return list(self._models.values())

    def get(self, model_id: str) -> VideoModel | None:
        return self._models.get(model_id.strip("/"))

    def require(self, model_id: str) -> VideoModel:
        """The model, or ``UnknownModel`` (a 404 at the API) naming the known ones."""
        model = self.get(model_id)
        if model is None:
            raise UnknownModel(model_id, list(self._models))
        return model

    def preview_for(self, model: VideoModel, values: dict[str, Any]) -> tuple[VideoModel, dict[str, Any]] | None:
        """The fast variant and its values for a preview of ``model`` run with ``values``, or None."""
        entry = PREVIEWS.get(model.id)
        if entry is None:
            return None
        preview = self.require(entry[0])
        kept = {name: value for name, value in values.items() if preview.param(name) is not None}
        return preview, {**kept, **entry[1]}

    def realtime_apps(self) -> list[str]:
        """fal app aliases (``krea-wan-14b``) a temporary token may be minted for."""
        return sorted({m.endpoint.split("/")[1] for m in self._models.values() if m.backend == FAL_REALTIME})


@functools.cache
def catalog() -> Catalog:
    return Catalog(build_models())
