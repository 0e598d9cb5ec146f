"""The client's side of the Krea WAN-14B realtime protocol (fal's endpoint, Krea's release
server), validated.

A client sends binary msgpack maps: first the stream's parameters (every field of Krea's
``GenerateParams``, with its defaults), then, while frames flow, updates (``{prompt,
interp_steps}``, ``{seed}``, ``{action: "reset" | "stop"}``, ``{image, strength,
timestamp}``). A message the studio refuses is a :class:`ProtocolError`; its ``errors`` have
the shape Krea's server sends (pydantic's ``ValidationError.errors()``: ``type``, ``loc``,
``msg``, ``input``) and go back as ``{"error": [...], "message": "<the msgs>"}``; the socket
then waits for a corrected message. Unknown keys are ignored, as fal's and Krea's servers do.

The numbers of the backend (sizes, blocks, steps, seeds, prompt length) are its
``StreamLimits``: each is defined once, by the backend that has it; the protocol's own
(message and image sizes, interpolation steps, webcam fps) are here.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import msgpack

from model_control.backends import StreamLimits
from runtime.parsers import unstorable

MAX_IMAGE_BYTES = 10 * 2**20  # a start frame or an image message
MAX_MESSAGE_BYTES = MAX_IMAGE_BYTES + 2**16  # an image with the map around it
MAX_IMAGE_PIXELS = 4096 * 4096
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")
MAX_INTERP_STEPS = 64  # blocks a prompt change may be interpolated over (Krea's default: 4)
MAX_WEBCAM_FPS = 60
MAX_KV_CACHE_FRAMES = 21  # Krea's full cache (its default: 3)
MAX_TIMESTEP_SHIFT = 100.0
MAX_REQUEST_ID = 200
_MISSING = object()


class ProtocolError(ValueError):
    """A client message the studio refuses. ``errors``: one entry per problem, in the shape of
    Krea's server (``{"type", "loc", "msg", "input"}``); the text joins their ``msg``."""

    def __init__(self, errors: list[dict[str, Any]] | str) -> None:
        if isinstance(errors, str):
            errors = [error_entry((), errors)]
        self.errors = errors
        super().__init__("; ".join(entry["msg"] for entry in errors))

    def payload(self) -> dict[str, Any]:
        """The error frame: Krea's list, and the same as one sentence for people."""
        return {"error": self.errors, "message": str(self)}


class _Invalid(ValueError):
    def __init__(self, message: str, kind: str = "value_error") -> None:
        super().__init__(message)
        self.kind = kind


def _json_safe(value: Any) -> Any:
    """``input`` of an error entry: what was sent, short (bytes as their length)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "..."
    if isinstance(value, bool | int | float) or value is None:
        return value if not (isinstance(value, float) and not math.isfinite(value)) else str(value)
    return type(value).__name__


def error_entry(loc: tuple[str, ...], message: str, kind: str = "value_error", value: Any = _MISSING) -> dict[str, Any]:
    entry = {"type": kind, "loc": list(loc), "msg": message}
    if value is not _MISSING:
        entry["input"] = _json_safe(value)
    return entry


def too_large(size: int) -> dict[str, Any]:
    """The error frame for a message past ``MAX_MESSAGE_BYTES`` (sent by the socket's server,
    studio/serve.py, which never reads such a message into memory)."""
    return ProtocolError([error_entry((), f"a message may be at most {MAX_MESSAGE_BYTES} bytes "
                                          f"({MAX_IMAGE_BYTES // 2**20} MiB for an image and its map); "
                                          f"this one has {size}", "too_long")]).payload()


def decode(text: str | None, data: bytes | None) -> dict[str, Any]:
    """One client message as a map; text frames, non-msgpack and non-maps are refused."""
    if data is None:
        raise ProtocolError([error_entry((), "messages are binary msgpack maps, not text frames", "bytes_type")])
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(too_large(len(data))["error"])
    try:
        message = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several types (ExtraData, FormatError, ValueError...)
        raise ProtocolError([error_entry((), f"not a msgpack message ({type(exc).__name__})", "msgpack")]) from None
    if not isinstance(message, dict):
        raise ProtocolError([error_entry((), f"a message must be a msgpack map, got {type(message).__name__}",
                                         "dict_type")])
    return message


# ---- one value each: raise _Invalid naming the field and what is allowed
def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value != int(value):
        raise _Invalid(f"{name} must be an integer", "int_type")
    return int(value)


def _bounded(value: Any, name: str, low: int, high: int) -> int:
    number = _integer(value, name)
    if not low <= number <= high:
        raise _Invalid(f"{name} must be between {low} and {high}, got {number}")
    return number


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Invalid(f"{name} must be a number between {low:g} and {high:g}", "float_type")
    if not low <= value <= high:
        raise _Invalid(f"{name} must be a number between {low:g} and {high:g}, got {value:g}")
    return float(value)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"{name} must be true or false", "bool_type")
    return value


def _text(value: Any, name: str, most: int) -> str:
    if not isinstance(value, str) or len(value) > most:
        raise _Invalid(f"{name} must be a string of at most {most} characters", "string_type")
    return _storable(value, name)


def _storable(value: str, name: str) -> str:
    """A text the session's row can keep: PostgreSQL refuses NUL, and a lone surrogate has no
    UTF-8 form (the same rule as the API's, ``runtime.parsers.unstorable``)."""
    problem = unstorable(value)
    if problem:
        raise _Invalid(f"{name} {problem}", "string_type")
    return value


def snap_size(value: Any, name: str, limits: StreamLimits) -> int:
    """A width or height as the nearest multiple of the backend's size multiple, within its range."""
    multiple = limits.size_multiple
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Invalid(f"{name} must be a number of pixels ({limits.min_size}-{limits.max_size}, "
                       f"multiples of {multiple})", "int_type")
    snapped = int(math.floor(value / multiple + 0.5)) * multiple
    low = -(-limits.min_size // multiple) * multiple
    return min(max(snapped, low), limits.max_size // multiple * multiple)


def _prompt(value: Any, name: str, limits: StreamLimits) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"{name} is required: a non-empty string", "string_type")
    if len(value) > limits.max_prompt:
        raise _Invalid(f"{name} must be at most {limits.max_prompt} characters, got {len(value)}")
    return _storable(value.strip(), name)


def image_of(value: Any, name: str) -> bytes:
    """An image as its bytes: a msgpack bin, or text holding base64 or a ``data:`` URL (what
    Krea's demo page sends); JPEG, PNG or WebP, checked by reading its header."""
    if isinstance(value, str):
        text = value[value.index(",") + 1:] if value.startswith("data:") and "," in value else value
        try:
            value = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise _Invalid(f"{name} must be image bytes, or base64 text of them (a path on Krea's own "
                           "server means nothing here)", "bytes_type") from None
    if not isinstance(value, bytes):
        raise _Invalid(f"{name} must be image bytes (JPEG, PNG or WebP; a msgpack bin)", "bytes_type")
    if len(value) > MAX_IMAGE_BYTES:
        raise _Invalid(f"{name} may be at most {MAX_IMAGE_BYTES // 2**20} MiB", "too_long")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(value)) as image:
            if image.format not in IMAGE_FORMATS:
                raise _Invalid(f"{name} must be a JPEG, PNG or WebP, got {image.format}")
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise _Invalid(f"{name} is too large ({image.width}x{image.height}; at most 4096x4096 pixels)")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise _Invalid(f"{name} is not a readable image ({type(exc).__name__})") from None
    return value


def prompt_of(message: dict[str, Any], limits: StreamLimits) -> str:
    """The message's prompt, or ``ProtocolError``."""
    try:
        return _prompt(message.get("prompt"), "prompt", limits)
    except _Invalid as exc:
        raise ProtocolError([error_entry(("prompt",), str(exc), exc.kind, message.get("prompt"))]) from None


@dataclass(frozen=True)
class StreamParams:
    """A stream's parameters after validation (sizes normalized, seed chosen). ``None``: not
    given, the backend's own default (Krea's in brackets): ``strength`` (1.0; the local
    pipeline takes 0.8 when video comes in), ``kv_cache_num_frames`` (3),
    ``timestep_shift`` (5.0), ``interp_steps`` (4), ``webcam_fps`` (10)."""

    prompt: str
    width: int = 832
    height: int = 480
    num_blocks: int = 10
    num_denoising_steps: int = 4
    seed: int = 0
    strength: float | None = None
    start_frame: bytes | None = None
    kv_cache_num_frames: int | None = None
    timestep_shift: float | None = None
    interp_steps: int | None = None
    keep_first_frame: bool = False
    webcam_mode: bool = False
    webcam_fps: int | None = None
    # Krea's, passed on to fal; the local pipeline has no use for them
    context_noise: float | None = None
    interp_blocks: int | None = None
    block_on_frame: bool | None = None
    request_id: str | None = None
    resume_latents: bytes | None = None

    def public(self) -> dict[str, Any]:
        """JSON-safe (image and latent bytes are summarised, not copied)."""
        out = {k: v for k, v in asdict(self).items() if v is not None and not isinstance(v, bytes)}
        for name in ("start_frame", "resume_latents"):
            if getattr(self, name) is not None:
                out[f"{name}_bytes"] = len(getattr(self, name))
        return out

    @classmethod
    def from_public(cls, data: dict[str, Any]) -> StreamParams:
        """Back from ``public()`` (a session's stored ``params``; no bytes)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def wire(self) -> dict[str, Any]:
        """The msgpack map fal's endpoint takes: what was set or defaulted (flags only when on)."""
        return {k: v for k, v in asdict(self).items() if v is not None and v is not False}

    def denoising_steps(self) -> tuple[int, ...]:
        """The nominal timesteps of ``num_denoising_steps`` steps, evenly spaced from 1000
        (4 -> 1000, 750, 500, 250), as a timeline records them."""
        count = self.num_denoising_steps
        return tuple(round(1000 * (count - i) / count) for i in range(count))


def _params_fields(limits: StreamLimits) -> dict[str, tuple[Callable[[Any, str], Any], Any]]:
    """Each parameter: how its value is checked, and its default when absent (``None``)."""
    return {
        "prompt": (lambda v, n: _prompt(v, n, limits), _MISSING),
        "width": (lambda v, n: snap_size(v, n, limits), limits.default_width),
        "height": (lambda v, n: snap_size(v, n, limits), limits.default_height),
        "num_blocks": (lambda v, n: _bounded(v, n, 1, limits.max_blocks), limits.default_blocks),
        "num_denoising_steps": (lambda v, n: _bounded(v, n, 1, limits.max_steps), limits.default_steps),
        "seed": (lambda v, n: _bounded(v, n, 0, limits.max_seed), None),
        "strength": (lambda v, n: _number(v, n, 0.0, 1.0), None),
        "start_frame": (image_of, None),
        "kv_cache_num_frames": (lambda v, n: _bounded(v, n, 1, MAX_KV_CACHE_FRAMES), None),
        "timestep_shift": (lambda v, n: _number(v, n, 0.0, MAX_TIMESTEP_SHIFT), None),
        "interp_steps": (lambda v, n: _bounded(v, n, 1, MAX_INTERP_STEPS), None),
        "keep_first_frame": (_flag, False),
        "webcam_mode": (_flag, False),
        "webcam_fps": (lambda v, n: _bounded(v, n, 1, MAX_WEBCAM_FPS), None),
        "context_noise": (lambda v, n: _number(v, n, 0.0, 1.0), None),
        "interp_blocks": (lambda v, n: _bounded(v, n, -1, MAX_INTERP_STEPS), None),
        "block_on_frame": (_flag, None),
        "request_id": (lambda v, n: _text(v, n, MAX_REQUEST_ID), None),
        "resume_latents": (_latents, None),
        "input_video": (_no_input_video, None),
    }


def _latents(value: Any, name: str) -> bytes:
    if not isinstance(value, bytes) or len(value) > MAX_IMAGE_BYTES:
        raise _Invalid(f"{name} must be bytes (at most {MAX_IMAGE_BYTES // 2**20} MiB)", "bytes_type")
    return value


def _no_input_video(value: Any, name: str) -> None:
    raise _Invalid(f"{name} is a file on Krea's own server; here a video comes in as image messages "
                   "(webcam_mode: true) or as an offline job (a local/krea-offline job with video, or manage.py "
                   "generate_video --input-video)")


def parse_params(message: dict[str, Any], limits: StreamLimits, *, rng: random.Random | None = None) -> StreamParams:
    """The first message of a stream, validated against the stream backend's ``limits``; a
    ``ProtocolError`` lists every field that is wrong, as Krea's server does."""
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, (check, default) in _params_fields(limits).items():
        value = message.get(name)
        if value is None:
            if default is _MISSING:
                errors.append(error_entry((name,), f"{name} is required: a non-empty string", "missing"))
            else:
                values[name] = default
            continue
        try:
            values[name] = check(value, name)
        except _Invalid as exc:
            errors.append(error_entry((name,), str(exc), exc.kind, value))
    if errors:
        raise ProtocolError(errors)
    values.pop("input_video", None)
    if values["seed"] is None:
        values["seed"] = (rng or random.SystemRandom()).randint(0, limits.max_seed - 1)
    return StreamParams(**values)


UPDATE_KEYS = ("prompt", "seed", "action", "image", "strength", "timestamp", "interp_steps", "interpolation_steps")
ACTIONS = ("reset", "stop")


def parse_update(message: dict[str, Any], limits: StreamLimits) -> dict[str, Any]:
    """A message sent while frames flow: a subset of ``prompt`` (+ ``interp_steps``, or Krea's
    other name ``interpolation_steps``), ``seed``, ``reset`` / ``stop`` (from ``action``),
    ``image`` (+ ``strength``, ``timestamp``)."""
    known = [k for k in UPDATE_KEYS if message.get(k) is not None]
    if not known:
        raise ProtocolError([error_entry((), "an update needs one of prompt, seed, action (\"reset\" or \"stop\") "
                                             "or image", "missing")])
    update: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []

    def take(name: str, key: str, check: Callable[[Any, str], Any]) -> None:
        try:
            update[key] = check(message[name], name)
        except _Invalid as exc:
            errors.append(error_entry((name,), str(exc), exc.kind, message[name]))

    if "prompt" in known:
        take("prompt", "prompt", lambda v, n: _prompt(v, n, limits))
        steps = "interp_steps" if "interp_steps" in known else "interpolation_steps"
        if steps in known:
            take(steps, "interp_steps", lambda v, n: _bounded(v, n, 1, MAX_INTERP_STEPS))
    elif "interp_steps" in known or "interpolation_steps" in known:
        errors.append(error_entry(("interp_steps",), "interp_steps goes with a prompt update"))
    if "seed" in known:
        take("seed", "seed", lambda v, n: _bounded(v, n, 0, limits.max_seed))
    if "action" in known:
        action = message["action"]
        if action in ACTIONS:
            update[action] = True
        else:
            errors.append(error_entry(("action",), "action must be \"reset\" or \"stop\"", "literal_error", action))
    if "image" in known:
        take("image", "image", image_of)
        if "strength" in known:
            take("strength", "strength", lambda v, n: _number(v, n, 0.0, 1.0))
        if "timestamp" in known:
            take("timestamp", "timestamp", lambda v, n: _number(v, n, 0.0, 1e15))
    elif "strength" in known and not update and not errors:
        errors.append(error_entry(("strength",), "strength goes with an image update"))
    if not update and not errors:  # only keys that go with others (timestamp, ...)
        errors.append(error_entry((), "an update needs one of prompt, seed, action (\"reset\" or \"stop\") "
                                      "or image", "missing"))
    if errors:
        raise ProtocolError(errors)
    return update


def blocks_started(frames: int, limits: StreamLimits) -> int:
    """Blocks a stream has begun sending after ``frames`` frames: an update sent now applies
    from the block with this index (the next one to start)."""
    if frames <= 0:
        return 0
    return limits.blocks_for_frames(frames)
