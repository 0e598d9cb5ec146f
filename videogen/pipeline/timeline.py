"""Prompt timelines in Daydream Scope's format, recorded from a session and replayable.

Format (``version`` "2.0")::

    {"prompts": [{"startTime": 0, "endTime": 4,
                  "prompts": [{"text": "a red fox", "weight": 1.0}],
                  "transitionSteps": 4}],
     "settings": {"resolution": {"height": 192, "width": 320}, "seed": 0,
                  "denoisingSteps": [1000, 750, 500, 250]},
     "version": "2.0"}

Time unit: **block indices** (one block = 3 latent frames = 12 pixel frames, 9 for the very
first), not seconds, so a replay is exact whatever the frame rate. ``startTime`` is the first
block generated with that prompt as its target, ``endTime`` the block where the next span
starts (exclusive; the last span's ``endTime`` is the number of blocks recorded).
``transitionSteps`` (optional) is how many blocks the change is blended over; absent means a
cut. A span's ``prompts`` hold weighted prompts, blended by weight in text-embedding space.

Seed changes and resets are not part of Scope's format; they are kept in an extra
``"events": [{"block": 5, "seed": 7}, {"block": 9, "reset": true}]`` list, which Scope ignores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

TIMELINE_VERSION = "2.0"

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
    if sum(w for _, w in out) <= 0:
        raise ValueError("prompt weights must add up to more than 0")
    return out


def prompt_label(prompts: WeightedPrompts) -> str:
    if len(prompts) == 1:
        return prompts[0][0]
    return " | ".join(f"{t} ({w:g})" for t, w in prompts)


@dataclass
class PromptSpan:
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
class Timeline:
    width: int
    height: int
    seed: int
    denoising_steps: list[int]
    spans: list[PromptSpan] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    blocks: int = 0  # blocks recorded so far

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

    def to_dict(self) -> dict[str, Any]:
        spans = [s.to_dict() for s in self.spans]
        if spans and self.spans[-1].end is None:
            spans[-1]["endTime"] = max(self.num_blocks, self.spans[-1].start + 1)
        d: dict[str, Any] = {
            "prompts": spans,
            "settings": {
                "resolution": {"height": self.height, "width": self.width},
                "seed": self.seed,
                "denoisingSteps": list(self.denoising_steps),
            },
            "version": TIMELINE_VERSION,
        }
        if self.events:
            d["events"] = [dict(e) for e in self.events]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timeline:
        settings = data.get("settings", {})
        res = settings.get("resolution", {})
        tl = cls(width=int(res.get("width", 832)), height=int(res.get("height", 480)),
                 seed=int(settings.get("seed", 0)),
                 denoising_steps=[int(s) for s in settings.get("denoisingSteps", [1000, 750, 500, 250])])
        for item in sorted(data.get("prompts", []), key=lambda p: p["startTime"]):
            start, end = item["startTime"], item.get("endTime")
            if int(start) != start or (end is not None and int(end) != end):
                raise ValueError("timeline times are block indices (integers)")
            ts = item.get("transitionSteps")
            tl.spans.append(PromptSpan(int(start), None if end is None else int(end),
                                       normalize_prompts(item["prompts"]), None if ts is None else int(ts)))
        tl.events = [dict(e) for e in data.get("events", [])]
        tl.blocks = tl.num_blocks
        return tl

    @classmethod
    def from_json(cls, text: str) -> Timeline:
        return cls.from_dict(json.loads(text))

    # ---- replay
    def replay(self, session, num_blocks: int | None = None, **params: Any) -> Iterator[Any]:
        """Drive ``session`` (a :class:`~videogen.pipeline.session.PipelineSession`) through the
        timeline; yields its blocks. Same weights + same timeline -> identical frames."""
        from .session import GenerationParams

        if not self.spans or self.spans[0].start != 0:
            raise ValueError("a timeline needs a prompt starting at block 0")
        total = num_blocks if num_blocks is not None else self.num_blocks
        first = self.spans[0]
        gp = GenerationParams(prompt=first.prompts, width=self.width, height=self.height, seed=self.seed,
                              denoising_steps=tuple(self.denoising_steps), num_blocks=total, **params)
        stream = session.start(gp)
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
