"""The client's side of fal's Krea WAN-14B realtime protocol, validated (no Django here).

A client sends binary msgpack maps: first the stream's parameters, then, while frames flow,
updates (``{prompt}``, ``{seed}``, ``{action: "reset"}``, ``{image, strength, timestamp}``).
Anything else is a :class:`ProtocolError` whose text goes back as ``{"error": ...}``; the
socket then waits for a corrected message. Unknown keys are ignored, as fal's server does.

The numbers (sizes, blocks, steps, seeds, prompt length) are the stream backend's
(``StreamLimits``): each is defined once, by the backend that has it.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import asdict, dataclass
from typing import Any

import msgpack

from model_control.backends import StreamLimits

MAX_IMAGE_BYTES = 10 * 2**20
MAX_MESSAGE_BYTES = MAX_IMAGE_BYTES + 2**16


class ProtocolError(ValueError):
    """A client message the studio refuses; the text names the field and what is allowed."""


def decode(text: str | None, data: bytes | None) -> dict[str, Any]:
    """One client message as a map; text frames, non-msgpack and non-maps are refused."""
    if data is None:
        raise ProtocolError("messages are binary msgpack maps, not text frames")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"a message may be at most {MAX_MESSAGE_BYTES // 2**20} MiB")
    try:
        message = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several types (ExtraData, FormatError, ValueError...)
        raise ProtocolError(f"not a msgpack message ({type(exc).__name__})") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"a message must be a msgpack map, got {type(message).__name__}")
    return message


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value != int(value):
        raise ProtocolError(f"{name} must be an integer")
    return int(value)


def _bounded(message: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = message.get(name)
    if value is None:
        return default
    number = _integer(value, name)
    if not low <= number <= high:
        raise ProtocolError(f"{name} must be between {low} and {high}, got {number}")
    return number


def _number(message: dict[str, Any], name: str, default: float | None, low: float, high: float) -> float | None:
    value = message.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ProtocolError(f"{name} must be a number between {low:g} and {high:g}")
    return float(value)


def snap_size(value: Any, name: str, limits: StreamLimits) -> int:
    """A width or height as the nearest multiple of the backend's size multiple, within its range."""
    multiple = limits.size_multiple
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(f"{name} must be a number of pixels ({limits.min_size}-{limits.max_size}, "
                            f"multiples of {multiple})")
    snapped = int(math.floor(value / multiple + 0.5)) * multiple
    low = -(-limits.min_size // multiple) * multiple
    return min(max(snapped, low), limits.max_size // multiple * multiple)


def prompt_of(message: dict[str, Any], limits: StreamLimits) -> str:
    prompt = message.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ProtocolError("prompt is required: a non-empty string")
    if len(prompt) > limits.max_prompt:
        raise ProtocolError(f"prompt must be at most {limits.max_prompt} characters, got {len(prompt)}")
    return prompt.strip()


def jpeg_of(value: Any, name: str) -> bytes:
    """JPEG bytes (a msgpack bin), checked by decoding its header."""
    if not isinstance(value, bytes):
        raise ProtocolError(f"{name} must be JPEG bytes (a msgpack bin)")
    if len(value) > MAX_IMAGE_BYTES:
        raise ProtocolError(f"{name} may be at most {MAX_IMAGE_BYTES // 2**20} MiB")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(value)) as image:
            if image.format != "JPEG":
                raise ProtocolError(f"{name} must be a JPEG, got {image.format}")
            if image.width * image.height > 4096 * 4096:
                raise ProtocolError(f"{name} is too large ({image.width}x{image.height})")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ProtocolError(f"{name} is not a readable JPEG ({type(exc).__name__})") from None
    return value


@dataclass(frozen=True)
class StreamParams:
    """A stream's parameters after validation (sizes normalized, seed chosen)."""

    prompt: str
    width: int = 832
    height: int = 480
    num_blocks: int = 10
    num_denoising_steps: int = 4
    seed: int = 0
    strength: float = 1.0
    start_frame: bytes | None = None
    kv_cache_num_frames: int | None = None
    timestep_shift: float | None = None

    def public(self) -> dict[str, Any]:
        """JSON-safe (the start frame is summarised, not copied)."""
        out = {k: v for k, v in asdict(self).items() if v is not None and k != "start_frame"}
        if self.start_frame is not None:
            out["start_frame_bytes"] = len(self.start_frame)
        return out

    def wire(self) -> dict[str, Any]:
        """The msgpack map fal's endpoint takes (only what was set or defaulted)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def denoising_steps(self) -> tuple[int, ...]:
        """The nominal timesteps of ``num_denoising_steps`` steps, evenly spaced from 1000
        (4 -> 1000, 750, 500, 250), as a timeline records them."""
        count = self.num_denoising_steps
        return tuple(round(1000 * (count - i) / count) for i in range(count))


def parse_params(message: dict[str, Any], limits: StreamLimits, *, rng: random.Random | None = None) -> StreamParams:
    """The first message of a stream, validated against the stream backend's ``limits``."""
    prompt = prompt_of(message, limits)
    width = snap_size(message.get("width", limits.default_width), "width", limits)
    height = snap_size(message.get("height", limits.default_height), "height", limits)
    seed = _bounded(message, "seed", -1, 0, limits.max_seed)
    if seed < 0:
        seed = (rng or random.SystemRandom()).randint(0, limits.max_seed)
    start_frame = message.get("start_frame")
    return StreamParams(
        prompt=prompt, width=width, height=height,
        num_blocks=_bounded(message, "num_blocks", limits.default_blocks, 1, limits.max_blocks),
        num_denoising_steps=_bounded(message, "num_denoising_steps", limits.default_steps, 1, limits.max_steps),
        seed=seed,
        strength=_number(message, "strength", 1.0, 0.0, 1.0),
        start_frame=None if start_frame is None else jpeg_of(start_frame, "start_frame"),
        kv_cache_num_frames=_bounded(message, "kv_cache_num_frames", 0, 1, 21) or None,
        timestep_shift=_number(message, "timestep_shift", None, 0.0, 100.0),
    )


UPDATE_KEYS = ("prompt", "seed", "action", "image", "strength", "timestamp")


def parse_update(message: dict[str, Any], limits: StreamLimits) -> dict[str, Any]:
    """A message sent while frames flow: a subset of ``prompt``, ``seed``, ``reset`` (from
    ``action: "reset"``), ``image`` (+ ``strength``, ``timestamp``)."""
    known = [k for k in UPDATE_KEYS if message.get(k) is not None]
    if not known:
        raise ProtocolError("an update needs one of prompt, seed, action (\"reset\") or image")
    update: dict[str, Any] = {}
    if "prompt" in known:
        update["prompt"] = prompt_of(message, limits)
    if "seed" in known:
        update["seed"] = _bounded(message, "seed", 0, 0, limits.max_seed)
    if "action" in known:
        if message["action"] != "reset":
            raise ProtocolError("action must be \"reset\"")
        update["reset"] = True
    if "image" in known:
        update["image"] = jpeg_of(message["image"], "image")
        strength = _number(message, "strength", None, 0.0, 1.0)
        if strength is not None:
            update["strength"] = strength
        timestamp = _number(message, "timestamp", None, 0.0, 1e15)
        if timestamp is not None:
            update["timestamp"] = timestamp
    elif "strength" in known and len(known) == 1:
        raise ProtocolError("strength goes with an image update")
    return update


def blocks_started(frames: int, limits: StreamLimits) -> int:
    """Blocks a stream has begun sending after ``frames`` frames: an update sent now applies
    from the block with this index (the next one to start)."""
    if frames <= 0:
        return 0
    return limits.blocks_for_frames(frames)
