"""What the Realtime page shows: the realtime backends, and the stream's inputs as the catalog
describes them, within what each backend accepts (its ``StreamLimits``).

The page talks only to the studio's ``/ws/realtime/`` (docs/realtime.md); no provider token
or key ever reaches it. Its script is ``static/studio/realtime.js``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from model_control import backends
from model_control.backends import StreamBackend, StreamLimits, catalog

PAGE_BLOCKS = (10, 50)  # the page's range (issue 11); the socket takes up to STUDIO_REALTIME_MAX_BLOCKS
PAGE_DEFAULT_BLOCKS = 20  # the seed app's slider starts here; the socket's own default is the backend's
PLAYBACK_FPS = {"default": 8, "minimum": 1, "maximum": 30}
INPUT_FPS = {"default": 10, "minimum": 1, "maximum": 30}  # drawing or camera pictures sent per second
INPUT_STRENGTH = 0.5  # how far the video may move from those pictures, as the page starts
# A backend running its CPU demo starts at this size: the tiny model streams 24 fps at 576x320
# and 5.9 at 832x480 on a 2-core CPU (docs/pipeline.md), and the page wants 8 or more.
DEMO_SIZE = (576, 320)
FRAME_TIMEOUT_S = 10  # no frame for this long while streaming: the page ends the stream
BUFFER_FRAMES = 64  # decoded frames waiting to be shown at most (the oldest go first)


def _clamp(value: int, low: int, high: int) -> int:
    return min(max(value, low), high)


def _snap(value: int, limits: StreamLimits) -> int:
    """``value`` as a size the backend takes: its multiple, within its range."""
    multiple = limits.size_multiple
    return _clamp(round(value / multiple) * multiple, -(-limits.min_size // multiple) * multiple,
                  limits.max_size // multiple * multiple)


def _backend(stream: StreamBackend) -> dict[str, Any]:
    model = catalog().require(stream.model_id)
    described = backends.describe(model)
    limits = stream.limits
    return {"key": stream.key, "model": described["id"], "title": described["title"],
            "description": stream.description or described["description"],
            "configured": described["configured"], "missing": described["missing"],
            "demo": backends.backend_of(model).demo() if described["configured"] else None,
            "size_multiple": limits.size_multiple, "takes_images": limits.takes_images, "limits": limits,
            "inputs": {i["name"]: i for i in described["inputs"]}}


def _inputs(inputs: dict[str, dict[str, Any]], limits: StreamLimits, demo: bool = False) -> dict[str, dict[str, Any]]:
    """The form's fields from one model's catalog inputs (by name), within its backend's limits
    (``demo``: the backend runs its CPU demo, which starts at ``DEMO_SIZE``)."""
    prompt, size, frames = inputs["prompt"], inputs["resolution"], inputs["num_frames"]
    block_range = (min(PAGE_BLOCKS[0], limits.max_blocks), min(PAGE_BLOCKS[1], limits.max_blocks))
    steps, seed = inputs["steps"], inputs["seed"]
    width, height = (_snap(side, limits) for side in DEMO_SIZE) if demo else (limits.default_width,
                                                                                limits.default_height)
    size_help = size.get("help", "")
    if demo:
        size_help = (f"{size_help} The CPU demo starts at {width} x {height}, small enough to keep up with the "
                     f"playback; {limits.default_width} x {limits.default_height} is Krea's own size.").strip()
    fields = {
        "prompt": {"label": prompt["label"], "help": prompt.get("help", ""), "required": True,
                   "maxlength": limits.max_prompt},
        "width": {"label": "Width", "default": width, "minimum": limits.min_size,
                  "maximum": limits.max_size, "step": limits.size_multiple},
        "height": {"label": "Height", "default": height, "minimum": limits.min_size,
                   "maximum": limits.max_size, "step": limits.size_multiple},
        "size_help": size_help,
        "blocks": {"label": "Blocks", "minimum": block_range[0], "maximum": block_range[1],
                   "default": _clamp(PAGE_DEFAULT_BLOCKS, *block_range),
                   "help": f"{frames.get('help', '')} A block is {limits.block_frames} frames (the first "
                           f"{limits.first_block_frames}), at 16 fps.".strip()},
        "steps": {"label": steps["label"], "help": steps.get("help", ""), "minimum": 1,
                  "maximum": limits.max_steps, "default": limits.default_steps},
        "seed": {"label": seed["label"], "help": seed.get("help", ""), "minimum": 0, "maximum": limits.max_seed},
        "fps": {"label": "Playback FPS", **PLAYBACK_FPS,
                "help": "Frames shown per second; frames that arrive faster wait in the buffer."},
        "input_fps": {"label": "Input FPS", **INPUT_FPS},
    }
    strength = inputs.get("strength") or {}
    low, high = strength.get("minimum", 0.0), strength.get("maximum", 1.0)
    fields["input_strength"] = {"label": "Input strength", "minimum": low, "maximum": high,
                                "default": min(max(INPUT_STRENGTH, low), high)}
    if "image" in inputs:
        image = inputs["image"]
        fields["start_frame"] = {"label": image["label"], "help": image.get("help", "")}
        fields["strength"] = {"label": strength.get("label", "Strength"), "help": strength.get("help", ""),
                              "minimum": low, "maximum": high, "default": strength.get("default", 1.0)}
    return fields


def reuse_values(video) -> dict[str, Any]:
    """The settings of a realtime recording (its ``parameters``), for the form: the prompt it
    started with, size, blocks, steps, seed and backend."""
    parameters = video.parameters if isinstance(video.parameters, dict) else {}
    prompt = parameters.get("prompt")
    timeline = parameters.get("timeline")
    spans = (timeline.get("prompts") or []) if isinstance(timeline, dict) else []
    if spans and isinstance(spans[0], dict) and spans[0].get("prompts"):
        prompt = spans[0]["prompts"][0].get("text", prompt)
    values = {"prompt": prompt if isinstance(prompt, str) else None, "backend": parameters.get("backend")}
    for name, key in (("width", "width"), ("height", "height"), ("blocks", "num_blocks"),
                      ("steps", "num_denoising_steps"), ("seed", "seed")):
        value = parameters.get(key)
        values[name] = value if isinstance(value, int) and not isinstance(value, bool) else None
    return {k: v for k, v in values.items() if v is not None}


def page_context(wanted: str | None = None, reuse: dict[str, Any] | None = None) -> dict[str, Any]:
    """The template's context: the backends (configured first in the relay's order), the one
    chosen (``wanted`` when it can run, else STUDIO_REALTIME_BACKEND, else the first that can),
    the fields (with ``reuse``'s values from a recording, kept within their limits), and what
    the script needs (as ``config``)."""
    reuse = reuse or {}
    choices = [_backend(stream) for stream in backends.stream_backends().values()]
    runnable = [b["key"] for b in choices if b["configured"]]
    selected = next((k for k in (wanted, reuse.get("backend"), settings.STUDIO_REALTIME_BACKEND, *runnable)
                     if k in runnable), None)
    chosen = next((b for b in choices if b["key"] == selected), choices[0])
    fields = _inputs(chosen["inputs"], chosen["limits"], demo=bool(chosen["demo"]))
    for name in ("width", "height", "blocks", "steps", "seed"):
        if name in reuse:
            field = fields[name]
            field["default"] = _clamp(reuse[name], field.get("minimum", reuse[name]), field.get("maximum", reuse[name]))
    fields["prompt"]["default"] = reuse.get("prompt")
    config = {
        "backends": {b["key"]: {"configured": b["configured"], "size_multiple": b["size_multiple"],
                                "takes_images": b["takes_images"], "title": b["title"]} for b in choices},
        "selected": selected, "frame_timeout_s": FRAME_TIMEOUT_S, "buffer_frames": BUFFER_FRAMES,
        "socket_path": "/ws/realtime/", "sessions_path": "/api/realtime/sessions/",
        "gallery_url": "/gallery/?kind=realtime",
        "limits": {name: {k: v for k, v in field.items() if k in ("minimum", "maximum", "default", "step")}
                   for name, field in fields.items() if isinstance(field, dict)},
    }
    return {"backends": choices, "selected": selected, "fields": fields, "config": config,
            "images": any(b["takes_images"] and b["configured"] for b in choices)}
