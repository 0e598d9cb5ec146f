"""Prompt timelines: what a session generated, block by block, recorded, replayed, and read and
written in Daydream Scope's timeline JSON. docs/realtime.md, "Timelines (Daydream Scope)".

A :class:`Timeline` keeps times as **block indices** (one block = 3 latent frames = 12 pixel
frames, 9 for a stream's first block and the first after a reset), so a replay is exact. Two
JSON forms carry it:

- **Scope's timeline** (what Scope exports; :meth:`Timeline.to_scope_dict`)::

    {"prompts": [{"startTime": 0, "endTime": 4.3125,
                  "prompts": [{"text": "a red fox", "weight": 100}],
                  "transitionSteps": 4, "temporalInterpolationMethod": "linear"}],
     "settings": {"pipelineId": "krea-realtime-video", "resolution": {"height": 480, "width": 832},
                  "seed": 42, "denoisingSteps": [1000, 750], "kvCacheAttentionBias": 0.3, ...},
     "version": "2.1", "exportedAt": "2026-01-01T00:00:00.000Z"}

  Times are **seconds** of playback. They map onto blocks at the recording rate
  (:data:`TIMELINE_FPS`, 16 fps): block ``b`` starts at its first frame / 16, and a time is
  read as the nearest block boundary. How many frames a block makes is the timeline's
  ``block_frames`` (first block of a stream, every later one): (9, 12) unless the recorder or
  the reader says otherwise. A field Studio cannot honour is named in ``Timeline.warnings``,
  never dropped silently.
- **Studio's block-index form** (:meth:`Timeline.to_dict`: what sessions record and MP4 tags
  carry): the same shape with integer block times, ``"timeUnit": "blocks"`` and
  ``"blockFrames": [9, 12]``.

Seed changes and resets have no place in Scope's format; both forms keep them in an extra
``"events"`` list (``{"block": 5, "seed": 7}`` in blocks, ``{"time": 3.5625, "seed": 7}`` in
seconds), which Scope ignores.

Telling the forms apart (:func:`time_unit`): ``timeUnit`` when present; else seconds when the
file has ``exportedAt`` or ``settings.pipelineId`` (Scope's exporter has always written
``exportedAt``; Studio's older exporter never wrote either) or any fractional time; else blocks
(Studio's older files: integer times and neither field).

This module imports plain Python only (no torch, no Django, nothing else of this package), so
reading and writing timelines costs nothing; ``replay`` drives whatever session it is given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TIMELINE_VERSION = "2.0"  # Studio's block-index form
SCOPE_TIMELINE_VERSION = "2.1"  # the last timeline version Scope wrote (2.1 added inputMode)
SCOPE_PIPELINE_ID = "krea-realtime-video"  # Scope's id of the pipeline Studio runs
# The recording rate of videogen/realtime/recording.py (a test keeps them equal; importing it
# would pull Django in here), and the block sizes of a timeline that does not give its own
# (9 for a stream's first block, 12 after: what every recording made before timelines carried
# blockFrames had).
TIMELINE_FPS = 16
FIRST_BLOCK_FRAMES = 9
BLOCK_FRAMES = 12
DEFAULT_BLOCK_FRAMES = (FIRST_BLOCK_FRAMES, BLOCK_FRAMES)
MAX_SECONDS = 3600.0  # far beyond any session; bounds the seconds -> blocks walk
# Scope's blend length for an entry that gives none (its Krea default_temporal_interpolation_steps).
DEFAULT_TRANSITION_STEPS = 4
# The cached-token attention bias of a recording whose timeline does not say: what Studio's
# pipeline used when its timelines did not record it (and Scope's default).
DEFAULT_KV_CACHE_ATTENTION_BIAS = 0.3
DEFAULT_DENOISING_STEPS = (1000, 750, 500, 250)
# Keys of a Scope timeline entry that only describe Scope's UI (colour, selection, live box).
_UI_KEYS = {"id", "text", "color", "isLive"}

WeightedPrompts = list[tuple[str, float]]


def normalize_prompts(prompt: str | Sequence[Any]) -> WeightedPrompts:
    """``"text"``, ``[("text", w), ...]`` or ``[{"text", "weight"}, ...]`` -> [(text, weight)]."""
    if isinstance(prompt, str):
        return [(prompt, 1.0)]
    out: WeightedPrompts = []
    for item in prompt:
        if isinstance(item, str):
            out.append((item, 1.0))
        elif isinstance(item, dict):
            out.append((str(item["text"]), float(item.get("weight", 1.0))))
        else:
            text, weight = item
            out.append((str(text), float(weight)))
    if not out:
        raise ValueError("at least one prompt is needed")
    if any(w < 0 or math.isnan(w) for _, w in out):
        raise ValueError("prompt weights must not be negative")
    if sum(w for _, w in out) <= 0:
        raise ValueError("prompt weights must add up to more than 0")
    return out


def prompt_label(prompts: WeightedPrompts) -> str:
    """One line for a (weighted) prompt, as blocks and logs show it."""
    if len(prompts) == 1:
        return prompts[0][0]
    return " | ".join(f"{t} ({w:g})" for t, w in prompts)


@dataclass(frozen=True)
class BlockClock:
    """Where blocks fall in a recording at ``fps``: a stream's first block, and the first after
    each reset, has ``first`` frames; every other block ``later``."""

    resets: frozenset[int] = frozenset()
    fps: int = TIMELINE_FPS
    first: int = FIRST_BLOCK_FRAMES
    later: int = BLOCK_FRAMES

    def frames_of(self, block: int) -> int:
        """Pixel frames block ``block`` makes."""
        return self.first if block == 0 or block in self.resets else self.later

    def frame(self, block: int) -> int:
        """The frame where block ``block`` starts (= frames before it)."""
        return sum(self.frames_of(b) for b in range(block))

    def seconds(self, block: int) -> float:
        """Seconds from the start of the recording to block ``block``'s first frame."""
        return self.frame(block) / self.fps

    def block_at(self, seconds: float) -> int:
        """The block boundary nearest to ``seconds`` (a tie goes to the later block)."""
        target = seconds * self.fps
        block, start = 0, 0
        while True:
            end = start + self.frames_of(block)
            if end > target:
                return block if target - start < end - target else block + 1
            block, start = block + 1, end


@dataclass
class PromptSpan:
    """A prompt from block ``start`` to ``end`` (exclusive; None while recording), blended in over
    ``transition_steps`` blocks (None or 1: a cut)."""

    start: int
    end: int | None
    prompts: WeightedPrompts
    transition_steps: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "startTime": self.start,
            "endTime": self.end if self.end is not None else self.start + 1,
            "prompts": [{"text": t, "weight": w} for t, w in self.prompts],
        }
        if self.transition_steps is not None:
            d["transitionSteps"] = self.transition_steps
        return d


@dataclass
class SecondsSpan:
    """One entry of a Scope timeline as read: seconds, prompts and how Scope blends it in.

    ``label`` names it in warnings ("prompt 2").
    """

    label: str
    start: float
    end: float
    prompts: WeightedPrompts
    transition_steps: int
    temporal_method: str = "linear"


@dataclass
class ScopeSettings:
    """Scope's settings read into what Studio's pipeline takes (``params``: extra
    ``GenerationParams`` fields, by name)."""

    width: int = 832
    height: int = 480
    seed: int = 0
    denoising_steps: list[int] = field(default_factory=lambda: list(DEFAULT_DENOISING_STEPS))
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Timeline:
    """Prompt spans, seed/reset events and settings of one stream, in block indices."""

    width: int
    height: int
    seed: int
    denoising_steps: list[int]
    spans: list[PromptSpan] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    blocks: int = 0  # blocks recorded so far
    # Extra GenerationParams fields a replay passes to session.start (kv_cache_attention_bias).
    params: dict[str, Any] = field(default_factory=dict)
    # Pixel frames of (a stream's first block, every later block): maps blocks onto seconds.
    block_frames: tuple[int, int] = DEFAULT_BLOCK_FRAMES
    # What reading a file could not honour, one sentence each (never written out).
    warnings: list[str] = field(default_factory=list, compare=False)

    # ---- recording
    def record_prompt(self, block: int, prompts: str | Sequence[Any], transition_steps: int | None = None) -> None:
        prompts = normalize_prompts(prompts)
        if self.spans and self.spans[-1].start == block:
            self.spans[-1].prompts = prompts
            self.spans[-1].transition_steps = transition_steps
            return
        if self.spans:
            self.spans[-1].end = block
        self.spans.append(PromptSpan(block, None, prompts, transition_steps))

    def record_event(self, block: int, **event: Any) -> None:
        self.events.append({"block": block, **event})

    def record_block(self, index: int) -> None:
        self.blocks = max(self.blocks, index + 1)

    # ---- reading
    def spans_starting(self, block: int) -> list[PromptSpan]:
        return [s for s in self.spans if s.start == block]

    def events_at(self, block: int) -> list[dict[str, Any]]:
        return [e for e in self.events if e["block"] == block]

    @property
    def num_blocks(self) -> int:
        ends = [s.end for s in self.spans if s.end is not None]
        return max([self.blocks, *ends, *(s.start + 1 for s in self.spans)], default=0)

    def clock(self, fps: int = TIMELINE_FPS) -> BlockClock:
        """This timeline's blocks in time (a reset starts a stream: its block is a first block)."""
        return BlockClock(frozenset(e["block"] for e in self.events if e.get("reset")), fps, *self.block_frames)

    # ---- Studio's block-index form
    def to_dict(self) -> dict[str, Any]:
        """Studio's block-index form (what sessions record); :meth:`to_scope_dict` for Scope."""
        spans = [s.to_dict() for s in self.spans]
        if spans and self.spans[-1].end is None:
            spans[-1]["endTime"] = max(self.num_blocks, self.spans[-1].start + 1)
        settings: dict[str, Any] = {
            "resolution": {"height": self.height, "width": self.width},
            "seed": self.seed,
            "denoisingSteps": list(self.denoising_steps),
        }
        if "kv_cache_attention_bias" in self.params:
            settings["kvCacheAttentionBias"] = self.params["kv_cache_attention_bias"]
        d: dict[str, Any] = {"prompts": spans, "settings": settings, "version": TIMELINE_VERSION,
                             "timeUnit": "blocks", "blockFrames": list(self.block_frames)}
        if self.events:
            d["events"] = [dict(e) for e in self.events]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any], block_frames: tuple[int, int] | None = None) -> Timeline:
        """Either form (see :func:`time_unit`); ``ValueError`` when it is neither. What a Scope
        file asks for that Studio cannot do is listed in the result's ``warnings``.
        ``block_frames``: the frames per block of the pipeline that will replay a seconds file
        (default (9, 12)); a block file keeps its own."""
        if not isinstance(data, dict):
            raise ValueError("a timeline is a JSON object")
        if not isinstance(data.get("prompts"), list):
            raise ValueError("a timeline needs a 'prompts' list")
        if time_unit(data) == "seconds":
            return _from_scope(data, read_block_frames(block_frames or DEFAULT_BLOCK_FRAMES, "block_frames"))
        return _from_blocks(data)

    @classmethod
    def from_json(cls, text: str) -> Timeline:
        return cls.from_dict(json.loads(text))

    # ---- Scope's timeline, in seconds
    def to_scope_dict(self, *, exported_at: str | None = None) -> dict[str, Any]:
        """Scope's timeline JSON: times in seconds at the recording rate (16 fps), every
        transition written out (Scope's default would otherwise blend over 4 chunks), and the
        settings Scope's importer reads. ``exported_at``: ISO time (default: now)."""
        clock = self.clock()
        entries = []
        for span, end in zip(self.spans, self._span_ends(), strict=True):
            if end <= span.start:
                continue  # Scope skips zero-length boxes too
            entries.append({
                "startTime": clock.seconds(span.start),
                "endTime": clock.seconds(end),
                "prompts": [{"text": t, "weight": w} for t, w in span.prompts],
                "transitionSteps": span.transition_steps if (span.transition_steps or 0) > 1 else 0,
                "temporalInterpolationMethod": "linear",  # Studio blends linearly
            })
        data: dict[str, Any] = {
            "prompts": entries,
            "settings": {
                "pipelineId": SCOPE_PIPELINE_ID,
                "inputMode": "text",
                "resolution": {"height": self.height, "width": self.width},
                "seed": self.seed,
                "denoisingSteps": list(self.denoising_steps),
                "manageCache": True,
                "quantization": None,
                "kvCacheAttentionBias": self.params.get("kv_cache_attention_bias", DEFAULT_KV_CACHE_ATTENTION_BIAS),
                "loras": [],
            },
            "version": SCOPE_TIMELINE_VERSION,
            "exportedAt": exported_at or iso_now(),
            "timeUnit": "seconds",
            "blockFrames": list(self.block_frames),  # Studio's: its blocks back exactly (Scope ignores it)
        }
        if self.events:
            data["events"] = [{"time": clock.seconds(e["block"]), **{k: v for k, v in e.items() if k != "block"}}
                              for e in self.events]
        return data

    def _span_ends(self) -> list[int]:
        """Each span's end block: the next span's start, the last one's the timeline's length."""
        if not self.spans:
            return []
        return [*(s.start for s in self.spans[1:]), max(self.num_blocks, self.spans[-1].start + 1)]

    # ---- replay
    def replay(self, session: Any, num_blocks: int | None = None, **params: Any) -> Iterator[Any]:
        """Drive ``session`` (a ``PipelineSession``) through the timeline; yields its blocks.
        ``params``: more ``GenerationParams`` fields, over the timeline's own. Same weights +
        same timeline -> identical frames."""
        if not self.spans or self.spans[0].start != 0:
            raise ValueError("a timeline needs a prompt starting at block 0")
        total = num_blocks if num_blocks is not None else self.num_blocks
        first = self.spans[0]
        # A dict, not GenerationParams: session.start takes either, and this module stays free
        # of session.py (which imports it) and of torch.
        stream = session.start({"prompt": first.prompts, "width": self.width, "height": self.height,
                                "seed": self.seed, "denoising_steps": tuple(self.denoising_steps),
                                "num_blocks": total, **self.params, **params})
        for block in range(total):
            for ev in self.events_at(block):
                session.update(seed=ev.get("seed"), reset=bool(ev.get("reset", False)))
            if block:
                for span in self.spans_starting(block):
                    session.update(prompt=span.prompts, blend_blocks=span.transition_steps or 1)
            try:
                yield next(stream)
            except StopIteration:
                return


def iso_now() -> str:
    """UTC now as Scope writes ``exportedAt``: ``2026-01-01T00:00:00.000Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def time_unit(data: dict[str, Any]) -> str:
    """``"seconds"`` (Scope's timelines, Studio's exports for Scope) or ``"blocks"`` (Studio's
    recordings, older Studio files). See the module docstring for the rule."""
    unit = data.get("timeUnit")
    if unit is not None:
        if unit not in ("seconds", "blocks"):
            raise ValueError(f"timeUnit must be 'seconds' or 'blocks', got {unit!r}")
        return unit
    settings = data.get("settings")
    if "exportedAt" in data or (isinstance(settings, dict) and "pipelineId" in settings):
        return "seconds"
    for item in data["prompts"]:
        if not isinstance(item, dict):
            raise ValueError("each timeline prompt is a JSON object")
        for key in ("startTime", "endTime"):
            value = item.get(key)
            if isinstance(value, float) and not value.is_integer():
                return "seconds"
    return "blocks"


# ---- reading Studio's block-index form

def _from_blocks(data: dict[str, Any]) -> Timeline:
    warnings: list[str] = []
    settings = read_timeline_settings(data.get("settings"), warnings)
    tl = Timeline(settings.width, settings.height, settings.seed, settings.denoising_steps,
                  params=settings.params, warnings=warnings,
                  block_frames=read_block_frames(data.get("blockFrames", DEFAULT_BLOCK_FRAMES), "blockFrames"))
    for item in sorted(data["prompts"], key=lambda p: p["startTime"]):
        start, end = item["startTime"], item.get("endTime")
        if int(start) != start or (end is not None and int(end) != end):
            raise ValueError("timeline times are block indices (integers) in a file with \"timeUnit\": \"blocks\"")
        ts = item.get("transitionSteps")
        tl.spans.append(PromptSpan(int(start), None if end is None else int(end),
                                   normalize_prompts(item["prompts"]), None if ts is None else int(ts)))
    tl.events = [dict(e) for e in data.get("events", [])]
    tl.blocks = tl.num_blocks
    return tl


# ---- reading Scope's timeline (seconds)

_TOP_LEVEL = {"prompts", "settings", "version", "exportedAt", "timeUnit", "events", "blockFrames"}
_SPAN_KEYS = {"startTime", "endTime", "prompts", "transitionSteps", "temporalInterpolationMethod"} | _UI_KEYS


def read_block_frames(value: Any, name: str) -> tuple[int, int]:
    """``[first, later]``: pixel frames of a stream's first block and of every later one."""
    if (not isinstance(value, list | tuple) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
        raise ValueError(f"{name} must be [frames of a stream's first block, of every later block], got {value!r}")
    return int(value[0]), int(value[1])


def _from_scope(data: dict[str, Any], block_frames: tuple[int, int]) -> Timeline:
    warnings: list[str] = []
    for key in sorted(set(data) - _TOP_LEVEL):
        warnings.append(f"{key}: not part of a Scope timeline Studio knows; ignored")
    settings = read_timeline_settings(data.get("settings"), warnings)
    spans = []
    for i, item in enumerate(data["prompts"], 1):
        if not isinstance(item, dict):
            raise ValueError(f"prompt {i} is not a JSON object")
        for key in sorted(set(item) - _SPAN_KEYS):
            warnings.append(f"prompt {i}: {key} is not a timeline field Studio knows; ignored")
        spans.append(SecondsSpan(
            f"prompt {i}", read_seconds(item.get("startTime"), f"prompt {i} startTime"),
            read_seconds(item.get("endTime"), f"prompt {i} endTime"), scope_prompts(item, f"prompt {i}"),
            steps_or_default(item.get("transitionSteps"), f"prompt {i} transitionSteps", DEFAULT_TRANSITION_STEPS),
            method_or_default(item.get("temporalInterpolationMethod"), f"prompt {i} temporalInterpolationMethod",
                              "linear")))
    if "blockFrames" in data:  # Studio's own export: the recording's blocks, whoever replays it
        block_frames = read_block_frames(data["blockFrames"], "blockFrames")
    return timeline_from_seconds(spans, settings, events_in_seconds(data.get("events")), warnings,
                                 block_frames=block_frames)


def read_seconds(value: Any, name: str) -> float:
    """A time in seconds from a file: a number from 0 to :data:`MAX_SECONDS`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not 0 <= value <= MAX_SECONDS:
        raise ValueError(f"{name} must be from 0 to {MAX_SECONDS:g} seconds, got {value}")
    return float(value)


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer() or value < 0:
        raise ValueError(f"{name} must be a whole number from 0, got {value!r}")
    return int(value)


def steps_or_default(value: Any, name: str, default: int) -> int:
    """A transition length in blocks (Scope's ``num_steps``: generation calls); None: ``default``."""
    return default if value is None else _count(value, name)


def method_or_default(value: Any, name: str, default: str) -> str:
    """``"linear"`` or ``"slerp"``; None: ``default``."""
    if value is None:
        return default
    if value not in ("linear", "slerp"):
        raise ValueError(f"{name} must be 'linear' or 'slerp', got {value!r}")
    return value


def scope_prompts(item: dict[str, Any], name: str, key: str = "prompts") -> WeightedPrompts:
    """An entry's weighted prompts; without any, its ``text`` (as Scope's importer falls back)."""
    raw = item.get(key)
    if raw:
        if not isinstance(raw, list) or not all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in raw):
            raise ValueError(f"{name} {key} must be a list of {{\"text\", \"weight\"}} objects")
        for p in raw:
            weight = p.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ValueError(f"{name}: a prompt weight must be a number, got {weight!r}")
        return normalize_prompts(raw)
    text = item.get("text")
    if isinstance(text, str) and text.strip():
        return [(text, 1.0)]
    raise ValueError(f"{name} has no prompt text")


def events_in_seconds(raw: Any) -> list[dict[str, Any]]:
    """Studio's ``events`` of a seconds file: ``{"time", "seed"}`` / ``{"time", "reset": true}``."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise ValueError("events must be a list of objects")
    out = []
    for i, event in enumerate(raw, 1):
        entry = {k: v for k, v in event.items() if k != "time"}
        entry["time"] = read_seconds(event.get("time"), f"event {i} time")
        if "seed" in entry:
            entry["seed"] = _count(entry["seed"], f"event {i} seed")
        out.append(entry)
    return out


def timeline_from_seconds(spans: list[SecondsSpan], settings: ScopeSettings, events: list[dict[str, Any]],
                          warnings: list[str], interpolation_method: str = "linear",
                          block_frames: tuple[int, int] = DEFAULT_BLOCK_FRAMES) -> Timeline:
    """Scope's spans (seconds) -> a block-index :class:`Timeline`, as Scope would play them.

    Scope plays the first entry whose [start, end] holds the playhead and keeps the last prompt
    through gaps, so: entries are sorted by start; one that starts before the previous ends
    starts at that end; one that is then empty never plays. The first prompt plays from 0 s
    (Scope submits it on import). ``interpolation_method``: how Scope mixes an entry's
    weighted prompts (Studio mixes linearly). ``warnings`` gets what Studio cannot honour.
    ``block_frames``: frames per block of the pipeline that replays it.
    """
    tl = Timeline(settings.width, settings.height, settings.seed, list(settings.denoising_steps),
                  params=dict(settings.params), warnings=warnings, block_frames=block_frames)
    ordered_events = sorted(events, key=lambda e: e["time"])
    resets: set[int] = set()
    for event in ordered_events:
        if event.get("reset"):  # a reset shortens its block, so later times depend on it
            resets.add(BlockClock(frozenset(resets), TIMELINE_FPS, *block_frames).block_at(event["time"]))
    clock = BlockClock(frozenset(resets), TIMELINE_FPS, *block_frames)
    tl.events = [{"block": clock.block_at(e["time"]), **{k: v for k, v in e.items() if k != "time"}}
                 for e in ordered_events]
    labels: list[str] = []  # the label of each recorded span, for warnings
    slerped: list[str] = []
    previous_end = 0.0
    for span in sorted(spans, key=lambda s: s.start):
        if span.end <= span.start:
            warnings.append(f"{span.label} has no length ({span.start:g} s); skipped, as Scope does")
            continue
        start = span.start
        if labels and start < previous_end:
            if span.end <= previous_end:
                warnings.append(f"{span.label} ({span.start:g}-{span.end:g} s) lies inside an earlier prompt, "
                                "so Scope never plays it; skipped")
                continue
            start = previous_end
            warnings.append(f"{span.label} overlaps the prompt before it; it starts at {start:g} s, "
                            "where Scope switches to it")
        block = clock.block_at(start) if labels else 0
        if labels and block == tl.spans[-1].start:
            warnings.append(f"{labels[-1]} is shorter than half a block at {TIMELINE_FPS} fps and gives way "
                            f"to {span.label}")
            labels.pop()
        transition = span.transition_steps if span.transition_steps > 1 else None
        if transition and span.temporal_method == "slerp":
            slerped.append(span.label)
        if len(span.prompts) > 1 and interpolation_method == "slerp":
            warnings.append(f"{span.label}: its weighted prompts are mixed linearly (Scope's "
                            "interpolation_method is 'slerp')")
        tl.record_prompt(block, span.prompts, transition)
        labels.append(span.label)
        previous_end = span.end
    if not tl.spans:
        raise ValueError("the timeline has no prompt to play")
    if slerped:
        warnings.append(f"temporalInterpolationMethod 'slerp' ({', '.join(slerped)}): Studio blends "
                        "prompt changes linearly")
    tl.spans[-1].end = max(clock.block_at(previous_end), tl.spans[-1].start + 1)
    tl.blocks = tl.spans[-1].end
    return tl


# ---- Scope's settings

# Scope's timeline settings (camelCase) -> its pipeline parameters (snake_case), as its own
# frontend maps them (its PARAM_MAPPINGS; docs/pipeline.md); resolution and seed added.
_SETTING_PARAMS = {
    "inputMode": "input_mode",
    "seed": "base_seed",
    "denoisingSteps": "denoising_step_list",
    "noiseScale": "noise_scale",
    "noiseController": "noise_controller",
    "manageCache": "manage_cache",
    "quantization": "quantization",
    "kvCacheAttentionBias": "kv_cache_attention_bias",
    "loras": "loras",
    "loraMergeStrategy": "lora_merge_strategy",
    "vaceEnabled": "vace_enabled",
    "vaceContextScale": "vace_context_scale",
    "vaceUseInputVideo": "vace_use_input_video",
}


def read_timeline_settings(settings: Any, warnings: list[str]) -> ScopeSettings:
    """A timeline's ``settings`` (Scope's or Studio's) -> :class:`ScopeSettings`; warnings
    appended for what Studio cannot honour; ``ValueError`` for values no pipeline takes."""
    if settings is None:
        return ScopeSettings()
    if not isinstance(settings, dict):
        raise ValueError("settings must be a JSON object")
    params: dict[str, tuple[str, Any]] = {}
    for key, value in settings.items():
        name = f"settings.{key}"
        if key == "pipelineId":
            check_pipeline_id(value, name, warnings)
        elif key == "resolution":
            if not isinstance(value, dict):
                raise ValueError(f"{name} must be {{\"height\", \"width\"}}")
            for side in ("height", "width"):
                if side in value:
                    params[side] = (f"{name}.{side}", value[side])
        elif key == "schemaFieldOverrides" and isinstance(value, dict):
            for sub, sub_value in value.items():
                params.setdefault(sub, (f"{name}.{sub}", sub_value))
        else:
            params[_SETTING_PARAMS.get(key, key)] = (name, value)
    return read_scope_params(params, warnings)


def check_pipeline_id(value: Any, name: str, warnings: list[str]) -> None:
    """Studio plays every timeline on its Krea pipeline; another pipeline's is named."""
    if value != SCOPE_PIPELINE_ID:
        warnings.append(f"{name} is {value!r}: Studio plays it on its Krea Realtime Video pipeline "
                        f"({SCOPE_PIPELINE_ID!r})")


def _inert(value: Any) -> bool:
    """A value that switches nothing on (a setting left at off/empty is trivially honoured)."""
    return value is None or value is False or value == [] or value == {} or value == ""


def read_scope_params(params: dict[str, tuple[str, Any]], warnings: list[str]) -> ScopeSettings:
    """Scope's pipeline parameters (snake_case, each with the name to show) -> settings.

    Honoured: ``height``/``width``, ``base_seed``, ``denoising_step_list``,
    ``kv_cache_attention_bias`` (a ``GenerationParams`` field), ``manage_cache`` (it resets
    the cache when parameters change mid-stream; a replay changes none), ``input_mode`` "text",
    and ``noise_scale``/``noise_controller``, which act on input video only, in Scope too.
    Everything else that would switch something on is named in a warning.
    """
    out = ScopeSettings()
    values = {key: value for key, (_, value) in params.items()}
    names = {key: name for key, (name, _) in params.items()}
    for side in ("width", "height"):
        if side in values:
            setattr(out, side, _positive_int(values[side], names[side]))
    if "base_seed" in values:
        out.seed = _count(values["base_seed"], names["base_seed"])
    if "denoising_step_list" in values:
        steps = values["denoising_step_list"]
        if not isinstance(steps, list) or not steps or not all(
                isinstance(s, int | float) and not isinstance(s, bool) for s in steps):
            raise ValueError(f"{names['denoising_step_list']} must be a list of timesteps, got {steps!r}")
        out.denoising_steps = [round(s) for s in steps]
    if "kv_cache_attention_bias" in values:
        bias = values["kv_cache_attention_bias"]
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not 0.01 <= bias <= 1.0:
            raise ValueError(f"{names['kv_cache_attention_bias']} must be a number from 0.01 to 1, got {bias!r}")
        out.params["kv_cache_attention_bias"] = float(bias)
    video = values.get("input_mode") == "video"
    if video:
        warnings.append(f"{names['input_mode']} is 'video': a timeline brings no input video, so Studio "
                        "generates from text (noise and VACE settings have nothing to act on)")
    elif values.get("input_mode") not in (None, "text"):
        warnings.append(f"{names['input_mode']} {values['input_mode']!r} is not a mode Studio knows; "
                        "generated from text")
    if not _inert(values.get("quantization")):
        warnings.append(f"{names['quantization']} is {values['quantization']!r}: Studio runs the weights its "
                        "pipeline loaded (STUDIO_PIPELINE), whatever a timeline says")
    loras = values.get("loras")
    if not _inert(loras):
        listed = ", ".join(str(lora.get("path") or lora.get("filename") or lora) if isinstance(lora, dict)
                           else str(lora) for lora in (loras if isinstance(loras, list) else [loras]))
        warnings.append(f"{names['loras']} ({listed}): Studio's pipeline has no LoRAs; generated without them")
    if not isinstance(values.get("manage_cache", True), bool):
        warnings.append(f"{names['manage_cache']} is not true or false; ignored")
    vace_on = not _inert(values.get("vace_enabled"))
    honoured = {"width", "height", "base_seed", "denoising_step_list", "kv_cache_attention_bias",
                "input_mode", "quantization", "loras", "manage_cache", "noise_scale", "noise_controller",
                "lora_merge_strategy"}  # the merge strategy only says how LoRAs (named above) merge
    for key in sorted(set(values) - honoured):
        value = values[key]
        if _inert(value) or (key.startswith("vace_") and key != "vace_enabled" and not vace_on):
            continue  # off, or a setting of a feature that is off
        if key == "vae_type" and value == "wan":
            continue  # Studio decodes with the full Wan VAE
        warnings.append(f"{names[key]} = {json.dumps(value)}: Studio has no such setting; ignored")
    return out


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer() or value <= 0:
        raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    return int(value)
