"""What the Realtime page shows: the realtime backends, and the stream's inputs as the catalog
describes them, kept within what the relay itself accepts (``videogen.realtime.protocol``).

The page talks only to the studio's ``/ws/realtime/`` (docs/realtime.md); no provider token
or key ever reaches it. Its script is ``static/studio/realtime.js``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from model_control import backends
from model_control.catalog import catalog, realtime_blocks
from videogen.realtime import protocol
from videogen.realtime.consumer import MODELS
from videogen.realtime.upstreams import UPSTREAMS

PAGE_BLOCKS = (10, 50)  # the page's range (issue 11); the relay itself takes 1-50
PLAYBACK_FPS = {"default": 8, "minimum": 1, "maximum": 30}
FRAME_TIMEOUT_S = 10  # no frame for this long while streaming: the page ends the stream
BUFFER_FRAMES = 64  # decoded frames waiting to be shown at most (the oldest go first)
SIZE_STEP = 8
BACKEND_NOTES = {
    "local": "Our own Krea pipeline on this studio's GPU worker (or its tiny CPU demo).",
    "fal": "fal.ai's Krea WAN 14B, relayed by the studio: the key stays on the server.",
}


def _clamp(value: int, low: int, high: int) -> int:
    return min(max(value, low), high)


def _backend(key: str) -> dict[str, Any]:
    described = backends.describe(catalog().require(MODELS[key]))
    upstream = UPSTREAMS[key]
    return {"key": key, "model": described["id"], "title": described["title"],
            "description": BACKEND_NOTES.get(key) or described["description"],
            "configured": described["configured"], "missing": described["missing"],
            "size_multiple": upstream.size_multiple, "takes_images": upstream.takes_images,
            "inputs": {i["name"]: i for i in described["inputs"]}}


def _inputs(inputs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The form's fields from one model's catalog inputs (by name), within the relay's limits."""
    prompt = inputs["prompt"]
    size = inputs["resolution"]
    width, height = (int(v) for v in str(size.get("default") or "832x480").split("x"))
    frames = inputs["num_frames"]
    low_blocks = realtime_blocks(frames.get("minimum") or protocol.FIRST_BLOCK_FRAMES)
    high_blocks = realtime_blocks(frames["maximum"]) if frames.get("maximum") else protocol.MAX_BLOCKS
    block_range = (max(PAGE_BLOCKS[0], low_blocks), min(PAGE_BLOCKS[1], protocol.MAX_BLOCKS, high_blocks))
    default_blocks = frames.get("default")
    default_blocks = realtime_blocks(default_blocks) if default_blocks else settings.STUDIO_REALTIME_DEFAULT_BLOCKS
    steps, seed = inputs["steps"], inputs["seed"]
    fields = {
        "prompt": {"label": prompt["label"], "help": prompt.get("help", ""), "required": True,
                   "maxlength": protocol.MAX_PROMPT},
        "width": {"label": "Width", "default": width, "minimum": protocol.MIN_SIZE, "maximum": protocol.MAX_SIZE,
                  "step": SIZE_STEP},
        "height": {"label": "Height", "default": height, "minimum": protocol.MIN_SIZE,
                   "maximum": protocol.MAX_SIZE, "step": SIZE_STEP},
        "size_help": size.get("help", ""),
        "blocks": {"label": "Blocks", "minimum": block_range[0], "maximum": block_range[1],
                   "default": _clamp(default_blocks, *block_range),
                   "help": f"{frames.get('help', '')} A block is {protocol.BLOCK_FRAMES} frames (the first "
                           f"{protocol.FIRST_BLOCK_FRAMES}), at 16 fps.".strip()},
        "steps": {"label": steps["label"], "help": steps.get("help", ""),
                  "minimum": max(1, steps.get("minimum") or 1),
                  "maximum": min(protocol.MAX_STEPS, steps.get("maximum") or protocol.MAX_STEPS),
                  "default": steps.get("default") or 4},
        "seed": {"label": seed["label"], "help": seed.get("help", ""), "minimum": max(0, seed.get("minimum") or 0),
                 "maximum": min(protocol.MAX_SEED, seed.get("maximum") or protocol.MAX_SEED)},
        "fps": {"label": "Playback FPS", **PLAYBACK_FPS,
                "help": "Frames shown per second; frames that arrive faster wait in the buffer."},
    }
    if "image" in inputs:
        image, strength = inputs["image"], inputs.get("strength") or {}
        fields["start_frame"] = {"label": image["label"], "help": image.get("help", "")}
        fields["strength"] = {"label": strength.get("label", "Strength"), "help": strength.get("help", ""),
                              "minimum": strength.get("minimum", 0.0), "maximum": strength.get("maximum", 1.0),
                              "default": strength.get("default", 1.0)}
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
    choices = [_backend(key) for key in MODELS]
    runnable = [b["key"] for b in choices if b["configured"]]
    selected = next((k for k in (wanted, reuse.get("backend"), settings.STUDIO_REALTIME_BACKEND, *runnable)
                     if k in runnable), None)
    chosen = next((b for b in choices if b["key"] == selected), choices[0])
    fields = _inputs(chosen["inputs"])
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
