"""The model catalog's shape: a video model, its inputs, its price, and how Studio's one
request shape maps onto each model's own fields. The models themselves are declared by the
backends that serve them (``model_control.backends``); ``model_control.backends.catalog()``
is every registered backend's models.

Studio's request shape: ``prompt, negative_prompt, image, last_image, resolution,
aspect_ratio, duration, num_frames, fps, seed, steps, guidance, audio, strength, video``. Each
model accepts a subset; :meth:`VideoModel.map_request` validates a request against it
(naming the field and the allowed values) and returns exactly the fields the model's
endpoint takes. Nothing is sent to a provider before this succeeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from model_control.errors import CatalogError
from model_control.inputs import ImageInput, Param

__all__ = ["CatalogError", "Catalog", "VideoModel", "UnknownModel", "STUDIO_FIELDS", "KIND_TITLES"]

STUDIO_FIELDS = ("prompt", "negative_prompt", "image", "last_image", "resolution", "aspect_ratio",
                 "duration", "num_frames", "fps", "seed", "steps", "guidance", "audio", "strength", "video")

TEXT_TO_VIDEO, IMAGE_TO_VIDEO, REALTIME = "text-to-video", "image-to-video", "realtime"
KIND_TITLES = {TEXT_TO_VIDEO: "Text to video", IMAGE_TO_VIDEO: "Image to video", REALTIME: "Realtime"}


PriceFn = Callable[[dict[str, Any]], tuple[Decimal, str] | None]


@dataclass(frozen=True)
class VideoModel:
    id: str
    title: str
    backend: str  # the name of the backend that serves it (model_control.backends)
    kind: str
    params: tuple[Param, ...]
    backend_title: str = ""
    endpoint: str = ""  # the provider's app id / path
    price: PriceFn | None = None
    fixed: dict[str, Any] = field(default_factory=dict)  # always sent (e.g. TT's legacy defaults)
    description: str = ""
    # How long a generation usually takes, in seconds (low, high), from submit to video;
    # None for realtime models (their frames stream).
    typical_wait: tuple[int, int] | None = None
    # Other names clients use for it (the i2v service's "wan", "kling"...).
    aliases: tuple[str, ...] = ()
    # Progressive generation: the fast, cheap variant run first when a job asks for a preview,
    # and the values it forces (the final job keeps the user's own).
    preview: tuple[str, dict[str, Any]] | None = None
    # Rules across fields (``strength`` only with a ``video``): the cleaned values -> errors by field.
    check: Callable[[dict[str, Any]], dict[str, str]] | None = None

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
        if not errors and self.check is not None:
            errors = self.check(values)
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
        seconds, frames = _seconds(values)
        note = "" if resolution in rates else f" (priced at the {fallback} rate)"
        if frames:
            return rate * seconds, f"{resolution}: {frames} x ${rate}/s{note}"
        return rate * seconds, f"{resolution} at ${rate}/s x {seconds:g} s{note}"

    return price


def flat_per_second(rate: str) -> PriceFn:
    def price(values: dict[str, Any]) -> tuple[Decimal, str]:
        seconds, frames = _seconds(values)
        return Decimal(rate) * seconds, f"{frames} x ${rate}/s" if frames else f"${rate}/s x {seconds:g} s"

    return price


def kling_price(values: dict[str, Any]) -> tuple[Decimal, str]:
    seconds, _ = _seconds(values)
    extra = max(seconds - 5, Decimal(0))
    if not extra:
        return Decimal("0.35"), "$0.35 for up to 5 s"
    return Decimal("0.35") + Decimal("0.07") * extra, f"$0.35 for the first 5 s + {extra:g} s more at $0.07/s"


def free(values: dict[str, Any]) -> tuple[Decimal, str]:
    return Decimal(0), "no charge: it runs on the studio's own machines"


def _seconds(values: dict[str, Any]) -> tuple[Decimal, str]:
    """The video's length in seconds, and how it follows from frames when it does ("81 frames
    at 16 fps (5.06 s)"; empty when the request gives a duration, or neither)."""
    duration = values.get("duration")
    if duration is not None:
        return Decimal(str(duration).rstrip("s")), ""
    frames, fps = values.get("num_frames"), values.get("fps")
    if frames and fps:
        frames, fps = Decimal(str(frames)), Decimal(str(fps))
        seconds = (frames / fps).quantize(Decimal("0.01"))
        return seconds, f"{frames:g} frames at {fps:g} fps ({seconds:g} s)"
    return Decimal(5), ""


# --- inputs most models share ------------------------------------------------------------------

def prompt_param(required: bool = True) -> Param:
    return Param("prompt", "prompt", "text", required=required)


def negative_param(default: str | None = None) -> Param:
    return Param("negative_prompt", "negative_prompt", "text", default=default)


def seed_param(maximum: int = 2**32 - 1, default: int | None = None) -> Param:
    return Param("seed", "seed", "int", minimum=0, maximum=maximum, default=default)


def image_param(target: str, required: bool = True, name: str = "image", label: str = "", help: str = "") -> Param:
    return Param(name, target, "image", required=required, label=label, help=help)


class UnknownModel(LookupError):
    """A model id the catalog does not have; the message lists the ones it has."""

    def __init__(self, model_id: str, known: list[str]):
        self.model_id = model_id
        super().__init__(f"Unknown model {model_id!r}. Known models: {', '.join(known)}")


class Catalog:
    """The models of the registered backends, by id (built by ``model_control.backends``)."""

    def __init__(self, models: list[VideoModel]):
        self._models = {model.id: model for model in models}
        self._aliases = {alias: model.id for model in models for alias in model.aliases}

    def all(self) -> list[VideoModel]:
        return list(self._models.values())

    def get(self, model_id: str) -> VideoModel | None:
        model_id = model_id.strip("/")
        return self._models.get(model_id) or self._models.get(self._aliases.get(model_id, ""))

    def require(self, model_id: str) -> VideoModel:
        """The model (by id or alias), or ``UnknownModel`` (a 404 at the API) naming the known ones."""
        model = self.get(model_id)
        if model is None:
            raise UnknownModel(model_id, list(self._models))
        return model

    def preview_for(self, model: VideoModel, values: dict[str, Any]) -> tuple[VideoModel, dict[str, Any]] | None:
        """The fast variant and its values for a preview of ``model`` run with ``values``, or None."""
        if model.preview is None:
            return None
        variant, forced = model.preview
        preview = self.require(variant)
        kept = {name: value for name, value in values.items() if preview.param(name) is not None}
        return preview, {**kept, **forced}
