"""Studio's request shape, field by field: how each input is described and validated.

A ``Param`` is one Studio field a model accepts, the model's own name for it, and the
values it allows; ``clean`` turns what a user sent into the validated value or raises
``ValueError`` with a message naming what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from model_control import images, videos
from model_control.errors import CatalogError
from runtime.parsers import unstorable

MAX_PROMPT = 4000


@dataclass(frozen=True)
class FieldText:
    """How a person sees a Studio field: its label, unit and a one-line help."""

    label: str
    help: str
    unit: str = ""


# Each Studio field's words; a model's ``Param`` may say something of its own instead.
FIELD_TEXT: dict[str, FieldText] = {
    "prompt": FieldText("Prompt", "What the video shows: the subject, what happens, the setting, camera and light."),
    "negative_prompt": FieldText("Negative prompt", "What to keep out of the video (blur, text, extra limbs...)."),
    "image": FieldText("Image", "The picture the video starts from: PNG, JPEG or WebP."),
    "last_image": FieldText("Last frame", "The picture the video ends on: PNG, JPEG or WebP."),
    "resolution": FieldText("Resolution", "The video's height in pixels: higher is sharper, slower and costs more."),
    "aspect_ratio": FieldText("Aspect ratio", "Width to height; auto follows the image."),
    "duration": FieldText("Duration", "How long the video is.", "s"),
    "num_frames": FieldText("Frames", "How many frames to make; with the frame rate this sets the length.",
                            "frames"),
    "fps": FieldText("Frame rate", "Frames per second of the video.", "fps"),
    "seed": FieldText("Seed", "The same seed with the same settings gives the same video; empty picks one at random."),
    "steps": FieldText("Inference steps", "Denoising steps: more give more detail and take longer.", "steps"),
    "guidance": FieldText("Guidance scale", "How strictly the video follows the prompt: higher is stricter, "
                                            "lower leaves the model more freedom."),
    "audio": FieldText("Generate audio", "Add a soundtrack and sound effects to the video."),
    "strength": FieldText("Strength", "How far the video may move away from what it starts from, the start "
                                      "frame or the video to restyle (1 = all the way)."),
    "video": FieldText("Video", "A video to restyle: the result follows its motion (MP4, MOV or WebM)."),
}


@dataclass(frozen=True)
class ImageInput:
    """An image given as a URL or as uploaded bytes; backends resolve it (CDN upload, base64)."""

    url: str | None = None
    data: bytes | None = None
    content_type: str = "image/jpeg"
    file_name: str = "image.jpg"


@dataclass(frozen=True)
class VideoInput:
    """An uploaded video (checked where it was read: ``model_control.videos``)."""

    data: bytes
    content_type: str = "video/mp4"
    file_name: str = "video.mp4"


# What a file input of each kind takes (the page's ``accept``).
ACCEPT = {"image": ("image/png", "image/jpeg", "image/webp"),
          "video": tuple(videos.EXTENSIONS)}


@dataclass(frozen=True)
class Param:
    """One Studio field a model accepts, and the model's name for it."""

    name: str
    target: str
    kind: str  # text | int | float | bool | choice | image | video | size
    required: bool = False
    default: Any = None  # the model's own default, documented and used for prices
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    multiple_of: int | None = None
    offset: int = 0  # with multiple_of: value = offset + k * multiple_of
    encode: Callable[[Any], Any] | None = None  # Studio value -> the model's wire value
    # How a person sees it; empty means the Studio field's own words (FIELD_TEXT).
    label: str = ""
    unit: str | None = None
    help: str = ""
    choice_labels: tuple[str, ...] = ()  # one per choice, in order

    @property
    def text(self) -> FieldText:
        base = FIELD_TEXT.get(self.name, FieldText(self.name.replace("_", " ").capitalize(), ""))
        return FieldText(self.label or base.label, self.help or base.help,
                         base.unit if self.unit is None else self.unit)

    def choice_label(self, choice: Any) -> str:
        """How a person sees one of the choices: ``"8 s"`` for ``"8s"``, a preset's name."""
        if self.choice_labels:
            return self.choice_labels[self.choices.index(choice)]
        unit = self.text.unit
        if unit:
            return f"{str(choice).removesuffix(unit)} {unit}"
        return str(choice)

    def describe(self) -> dict[str, Any]:
        text = self.text
        out: dict[str, Any] = {"name": self.name, "field": self.target, "type": self.kind,
                               "required": self.required, "label": text.label, "help": text.help}
        if text.unit:
            out["unit"] = text.unit
        if self.default is not None:
            out["default"] = self.default
        if self.choices:
            out["choices"] = list(self.choices)
            out["choice_labels"] = [self.choice_label(c) for c in self.choices]
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.multiple_of:
            out["step"] = self.multiple_of
        if self.kind in ACCEPT:
            out["accept"] = list(ACCEPT[self.kind])
        return out

    def clean(self, value: Any) -> Any:
        """The validated Studio value; raises ``ValueError`` with a user-facing message."""
        if self.kind == "text":
            if not isinstance(value, str) or not value.strip():
                raise ValueError("must be a non-empty string")
            reason = unstorable(value)  # whichever door it came through, a job must store it
            if reason:
                raise ValueError(reason)
            limit = int(self.maximum) if self.maximum else MAX_PROMPT
            if len(value) > limit:
                raise ValueError(f"must be at most {limit} characters")
            return value.strip()
        if self.kind == "video":
            if isinstance(value, VideoInput):
                return value
            if isinstance(value, ImageInput):
                raise ValueError("must be a video file (MP4, MOV or WebM); got an image")
            raise ValueError("must be an uploaded video file (multipart form: MP4, MOV or WebM)")
        if self.kind == "image":
            if isinstance(value, VideoInput):
                raise ValueError("must be an image (PNG, JPEG or WebP); got a video")
            if isinstance(value, ImageInput):
                return value  # uploads were checked where they were read (parsing.studio_request)
            try:
                if isinstance(value, str) and value[:11].lower() == "data:image/":
                    return ImageInput(url=images.validate_data_url(value, self.name))
                if isinstance(value, str) and value.lower().startswith(("http://", "https://")):
                    return ImageInput(url=images.check_public_url(value, self.name))
            except CatalogError as exc:
                raise ValueError(exc.errors[self.name]) from None
            raise ValueError("must be an uploaded image file or an http(s) URL of one")
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
                return value.lower() in ("true", "1")
            raise ValueError("must be true or false")
        if self.kind == "choice":
            text = str(value).strip().lower()
            for choice in self.choices:
                # "8" matches "8s" and 5 matches "5": durations come as numbers too.
                if text.removesuffix("s") == str(choice).lower().removesuffix("s"):
                    return choice
            raise ValueError(f"must be one of {', '.join(map(str, self.choices))}; got {value!r}")
        if self.kind in ("int", "float"):
            number = _number(value, integer=self.kind == "int")
            if self.minimum is not None and number < self.minimum:
                raise ValueError(f"must be at least {self.minimum:g}; got {number}")
            if self.maximum is not None and number > self.maximum:
                raise ValueError(f"must be at most {self.maximum:g}; got {number}")
            if self.multiple_of and (number - self.offset) % self.multiple_of:
                raise ValueError(f"must be {self.offset} plus a multiple of {self.multiple_of} "
                                 f"(e.g. {self.offset + self.multiple_of * 6}); got {number}")
            return number
        if self.kind == "size":
            width, height = _size(value)
            multiple, low, high = self.multiple_of or 8, int(self.minimum or 64), int(self.maximum or 2048)
            for side in (width, height):
                if side % multiple or not low <= side <= high:
                    raise ValueError(f"width and height must be multiples of {multiple} between {low} and "
                                     f"{high}; got {width}x{height}")
            return (width, height)
        raise AssertionError(f"unknown parameter kind {self.kind}")


def _number(value: Any, *, integer: bool) -> float | int:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be {'an integer' if integer else 'a number'}; got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number; got {value!r}")
    if integer:
        if number != int(number):
            raise ValueError(f"must be an integer; got {value!r}")
        return int(number)
    return number


def _size(value: Any) -> tuple[int, int]:
    text = str(value).lower().replace(" ", "")
    try:
        width, height = (int(part) for part in text.split("x"))
    except ValueError:
        raise ValueError(f"must look like WIDTHxHEIGHT, e.g. 832x480; got {value!r}") from None
    return width, height
