"""Offline generation on the local Krea pipeline: a prompt or a timeline -> an MP4 and its numbers.

Shared by ``manage.py generate_video`` and the GPU worker's ``videogen.gpu.generate_offline``
task; both take the process's pipeline from ``videogen.local.host`` (loaded once, kept
warm), so a worker and the command load it the same way.

::

    plan = offline.plan(OfflineRequest(prompt="a fox", blocks=4, steps=4), session.config)
    result = offline.generate(session, plan, on_block=lambda done, total, block: True)
    result.content   # MP4 bytes, 16 fps, parameters + timeline in its comment tag
    result.stats()   # fps, per-block ms p50/p90, time to first frame, ...

A block is 3 latent frames: 12 pixel frames, 6 for a stream's first (Krea decodes 9 and drops
3; ``frames_per_block`` reads it from the config). ``num_frames`` asks for an exact count (enough
blocks are made and the last is cut); ``blocks`` for whole blocks. ``steps`` (1-8) model calls
per block: Krea's schedule for that many (the timeline records them as evenly spaced nominal
steps, 4 -> [1000, 750, 500, 250]).

Video to video: ``input_video`` (a file's path or bytes, or frames ``uint8 [n, H, W, 3]``) is
read at 16 fps, restyled block by block (9 frames for the first block, 12 after) at
``strength`` (default 0.8: 1.0 keeps nothing of it, lower keeps more); it bounds the blocks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from videogen.gallery.mp4 import DEFAULT_FPS, Mp4Writer

MAX_STEPS = 8
MAX_BLOCKS = 200  # 2,397 frames, 2.5 minutes at 16 fps
DEFAULT_BLOCKS = 7  # 81 frames, about 5 s
MIN_SIDE, MAX_SIDE = 64, 2048
MAX_SEED = 2**32 - 1
MAX_PROMPT = 4000


class OfflineError(ValueError):
    """A request the pipeline cannot run; the message says what to change."""


def denoising_steps(count: int) -> tuple[int, ...]:
    """``count`` timesteps evenly spaced down from 1000: 4 -> (1000, 750, 500, 250)."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_STEPS:
        raise OfflineError(f"steps must be an integer from 1 to {MAX_STEPS}, got {count!r}")
    return tuple(round(1000 * (count - i) / count) for i in range(count))


def frames_per_block(config) -> tuple[int, int]:
    """(pixel frames of a stream's first block, of every later block): (6, 12) for Krea."""
    if hasattr(config, "frames_per_block_out"):
        return config.frames_per_block_out()
    later = config.vae_temporal_factor * config.frames_per_block
    return later - config.vae_temporal_factor + 1, later


def input_frames_per_block(config) -> tuple[int, int]:
    """(input video frames the first block reads, every later block): (9, 12) for Krea."""
    later = config.vae_temporal_factor * config.frames_per_block
    return later - config.vae_temporal_factor + 1, later


def input_frames_for_blocks(blocks: int, config) -> int:
    """Input video frames ``blocks`` blocks read: 9 + 12 x (blocks - 1) for Krea."""
    first, later = input_frames_per_block(config)
    return first + later * (blocks - 1)


def blocks_of_video(frames: int, config) -> int:
    """Whole blocks an input video of ``frames`` frames gives (0 when it is too short)."""
    first, later = input_frames_per_block(config)
    return 0 if frames < first else 1 + (frames - first) // later


INPUT_FPS = 16  # Krea reads input videos at 16 fps (v2v.py's ffmpeg fps=16)


def read_video(source: Any, fps: int = INPUT_FPS, *, size: tuple[int, int] | None = None,
               max_frames: int | None = None) -> Any:
    """An input video as uint8 frames ``[n, H, W, 3]``: frames given as they are, or a file
    (a path, or its bytes) decoded with PyAV and resampled to ``fps`` by presentation time
    (each tick takes the last frame shown by then).

    A file is read in bounded memory: only the frames picked are kept, at most ``max_frames``
    of them (the rest is not decoded), each made ``size`` (width, height) as it is read, the
    pipeline's way (centre crop to the aspect ratio, bicubic; ``videogen.pipeline.video_in``).
    """
    import numpy as np

    if hasattr(source, "shape") or (isinstance(source, list) and source and hasattr(source[0], "shape")):
        frames = np.asarray(source)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise OfflineError(f"input video frames must be uint8 [n, H, W, 3], got {frames.dtype} {frames.shape}")
        return frames[:max_frames] if max_frames is not None else frames
    import io

    import av

    def keep(frame: Any) -> Any:
        array = frame.to_ndarray(format="rgb24")
        if size is None or array.shape[:2] == (size[1], size[0]):
            return array
        from videogen.pipeline.video_in import to_pixels

        pixels = to_pixels(array, size[0], size[1])  # [3, H, W] in [-1, 1]
        return pixels.add(1.0).mul(127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()

    limit = max_frames if max_frames is not None else float("inf")
    picks: list[Any] = []
    start = last_time = None
    last = last_kept = None  # the latest decoded frame, and its picked array once converted
    try:
        with av.open(io.BytesIO(source) if isinstance(source, bytes | bytearray) else str(source)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                t = float(frame.time or 0.0)
                if start is None:
                    start = t
                # Ticks before this frame shows take the one before it.
                while last is not None and len(picks) < limit and start + len(picks) / fps + 1e-6 < t:
                    last_kept = keep(last) if last_kept is None else last_kept
                    picks.append(last_kept)
                if len(picks) >= limit:
                    break
                last, last_kept, last_time = frame, None, t
            else:
                # The ticks up to the last frame's time take it.
                if last is not None:
                    count = max(1, int((last_time - start) * fps) + 1)
                    while len(picks) < min(count, limit):
                        last_kept = keep(last) if last_kept is None else last_kept
                        picks.append(last_kept)
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise OfflineError(f"the input video cannot be read ({type(exc).__name__}: {exc})") from None
    if not picks:
        raise OfflineError("the input video has no frames")
    return np.stack(picks)


def blocks_for_frames(num_frames: int, config) -> int:
    """The fewest blocks that give ``num_frames`` pixel frames."""
    first, later = frames_per_block(config)
    return 1 if num_frames <= first else 1 + math.ceil((num_frames - first) / later)


def frames_for_blocks(blocks: int, config) -> int:
    first, later = frames_per_block(config)
    return first + later * (blocks - 1)


@dataclass
class OfflineRequest:
    """What to make; ``None`` means the default (or, with a timeline, the timeline's own setting)."""

    prompt: str | None = None
    timeline: Any = None  # a videogen.pipeline.Timeline or its dict (Daydream Scope's JSON)
    width: int | None = None
    height: int | None = None
    blocks: int | None = None
    num_frames: int | None = None
    seed: int | None = None
    steps: int | None = None
    input_video: Any = None  # video to video: a file's path or bytes, or uint8 frames [n, H, W, 3]
    strength: float | None = None  # with input_video: 1.0 keeps nothing of it (default 0.8)


@dataclass
class Plan:
    """A validated request: everything ``generate`` needs, defaults filled in."""

    timeline: Any  # videogen.pipeline.Timeline, the settings below applied
    width: int
    height: int
    blocks: int
    seed: int
    denoising_steps: tuple[int, ...]
    num_frames: int  # frames written (the last block is cut to it)
    source: str  # "prompt" | "timeline"
    fps: int = DEFAULT_FPS
    input_video: Any = None  # uint8 frames [n, H, W, 3] (video to video), else None
    strength: float | None = None

    def parameters(self) -> dict[str, Any]:
        out = {"source": self.source, "width": self.width, "height": self.height, "blocks": self.blocks,
               "num_frames": self.num_frames, "seed": self.seed, "steps": len(self.denoising_steps),
               "denoising_steps": list(self.denoising_steps), "fps": self.fps}
        if self.input_video is not None:
            out.update(input_video_frames=len(self.input_video), strength=self.strength)
        return out

    def session_params(self) -> dict[str, Any]:
        """What ``generate`` adds to the timeline's replay (video in)."""
        if self.input_video is None:
            return {}
        return {"input_video": self.input_video, "strength": self.strength}


def _int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OfflineError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise OfflineError(f"{name} must be from {low} to {high}, got {value}")
    return value


def check_size(width: int, height: int, multiple: int = 16) -> None:
    """Both sides multiples of ``multiple`` (16: the VAE's 8 x the DiT's patch 2) in range."""
    for name, side in (("width", width), ("height", height)):
        _int(name, side, MIN_SIDE, MAX_SIDE)
    if width % multiple or height % multiple:
        raise OfflineError(
            f"width and height must be multiples of {multiple} (the VAE's 8 x the DiT's patch of 2), "
            f"e.g. 832x480 or 576x320; got {width}x{height}"
            + (f" (nearest: {round(width / multiple) * multiple}x{round(height / multiple) * multiple})"
               if width >= multiple and height >= multiple else ""))


def plan(request: OfflineRequest, config) -> Plan:
    """Validate ``request`` for a pipeline of ``config`` (a ``PipelineConfig``); ``OfflineError`` if bad."""
    from videogen.pipeline import Timeline

    if (request.prompt is None) == (request.timeline is None):
        raise OfflineError("give either a prompt or a timeline (not both)")
    if request.blocks is not None and request.num_frames is not None:
        raise OfflineError("give either blocks or num_frames (not both)")
    if request.timeline is not None:
        source = "timeline"
        timeline = request.timeline
        if isinstance(timeline, dict):
            try:
                timeline = Timeline.from_dict(timeline)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise OfflineError(f"not a Daydream Scope timeline ({type(exc).__name__}: {exc})") from None
        elif isinstance(timeline, Timeline):
            timeline = Timeline.from_dict(timeline.to_dict())  # a copy: the settings below change it
        else:
            raise OfflineError("the timeline must be a Timeline or its JSON object")
        if not timeline.spans or timeline.spans[0].start != 0:
            raise OfflineError("the timeline needs a prompt starting at block 0 (startTime 0)")
        default_blocks = timeline.num_blocks or DEFAULT_BLOCKS
    else:
        source = "prompt"
        if not isinstance(request.prompt, str) or not request.prompt.strip():
            raise OfflineError("the prompt must be a non-empty string")
        if len(request.prompt) > MAX_PROMPT:
            raise OfflineError(f"the prompt must be at most {MAX_PROMPT} characters")
        timeline = None
        default_blocks = DEFAULT_BLOCKS
    width = request.width if request.width is not None else (timeline.width if timeline else config.width)
    height = request.height if request.height is not None else (timeline.height if timeline else config.height)
    check_size(width, height, config.spatial_factor)
    seed = request.seed if request.seed is not None else (timeline.seed if timeline else 0)
    seed = _int("seed", seed, 0, MAX_SEED)
    if request.steps is not None:
        steps = denoising_steps(request.steps)
    elif timeline is not None:
        steps = tuple(int(s) for s in timeline.denoising_steps)
        if not 1 <= len(steps) <= MAX_STEPS or any(not 0 < s <= 1000 for s in steps):
            raise OfflineError(f"the timeline's denoisingSteps must be 1-{MAX_STEPS} timesteps in (0, 1000], "
                               f"got {list(steps)}")
    else:
        steps = tuple(int(s) for s in config.denoising_steps)
    video, strength, most = None, None, MAX_BLOCKS
    if request.input_video is not None:
        video = read_video(request.input_video, size=(width, height),
                           max_frames=input_frames_for_blocks(MAX_BLOCKS, config))
        most = min(MAX_BLOCKS, blocks_of_video(len(video), config))
        if most < 1:
            raise OfflineError(f"the input video needs at least {input_frames_per_block(config)[0]} frames at "
                               f"{INPUT_FPS} fps, it has {len(video)}")
        strength = request.strength if request.strength is not None else config.input_strength
        if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0 <= strength <= 1:
            raise OfflineError(f"strength must be a number from 0 to 1, got {strength!r}")
        strength = float(strength)
        if request.blocks is None and request.num_frames is None:
            default_blocks = most
    elif request.strength is not None:
        raise OfflineError("strength goes with an input video")
    if request.num_frames is not None:
        num_frames = _int("num_frames", request.num_frames, 1, frames_for_blocks(most, config))
        blocks = blocks_for_frames(num_frames, config)
    else:
        blocks = _int("blocks", request.blocks if request.blocks is not None else default_blocks, 1, most)
        num_frames = None
    if timeline is None:
        timeline = Timeline(width, height, seed, list(steps))
        timeline.record_prompt(0, request.prompt.strip())
        timeline.blocks = blocks
    else:
        timeline.width, timeline.height, timeline.seed = width, height, seed
        timeline.denoising_steps = list(steps)
    if num_frames is None:
        num_frames = _frames_of(timeline, blocks, config)
    return Plan(timeline, width, height, blocks, seed, steps, num_frames, source, input_video=video,
                strength=strength)


def _frames_of(timeline, blocks: int, config) -> int:
    """Pixel frames ``blocks`` blocks of ``timeline`` make (a reset starts a first block again)."""
    first, later = frames_per_block(config)
    resets = {e["block"] for e in timeline.events if e.get("reset") and 0 < e["block"] < blocks}
    return sum(first if b == 0 or b in resets else later for b in range(blocks))


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0-100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


@dataclass
class OfflineResult:
    content: bytes | None  # None when stopped before the end
    frames: int
    blocks: int
    block_ms: list[float]  # each block's pipeline time (text + DiT steps + recompute + VAE)
    ttff_s: float  # from the start to the first block's frames
    wall_s: float  # the whole run, encoding included
    encode_ms: float
    stages_ms: dict[str, float]  # mean per block: text, dit_step, recompute, vae
    stopped: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0

    def stats(self) -> dict[str, Any]:
        ms = self.block_ms or [0.0]
        return {"frames": self.frames, "blocks": self.blocks, "fps": round(self.fps, 2),
                "ttff_s": round(self.ttff_s, 3), "wall_s": round(self.wall_s, 3),
                "block_ms_p50": round(percentile(ms, 50), 1), "block_ms_p90": round(percentile(ms, 90), 1),
                "block_ms_max": round(max(ms), 1), "encode_ms": round(self.encode_ms, 1),
                **{f"{k}_ms": round(v, 1) for k, v in self.stages_ms.items()}}


OnBlock = Callable[[int, int, Any], "bool | None"]


def generate(session, plan: Plan, *, on_block: OnBlock | None = None,
             metadata: dict[str, Any] | None = None) -> OfflineResult:
    """Run ``plan`` on ``session`` (a ``PipelineSession``), encoding each block as it lands.

    ``on_block(blocks_done, blocks_total, block)`` runs after every block; returning ``False``
    stops the run there (a cancel): the result then has ``stopped=True`` and no content.
    ``metadata`` is added to the MP4's comment tag next to the parameters and the timeline.
    """
    # The tag as planned; finish() re-muxes only if the session's recorded timeline differs.
    writer = Mp4Writer(fps=plan.fps, metadata={**(metadata or {}), **plan.parameters(),
                                               "timeline": plan.timeline.to_dict()})
    block_ms: list[float] = []
    stages: dict[str, float] = {"text": 0.0, "dit_step": 0.0, "recompute": 0.0, "vae": 0.0}
    written = blocks = 0
    encode_s = 0.0
    ttff = None
    stopped = False
    start = time.perf_counter()
    stream = plan.timeline.replay(session, num_blocks=plan.blocks, **plan.session_params())
    try:
        for block in stream:
            if ttff is None:
                ttff = time.perf_counter() - start
            blocks += 1
            block_ms.append(block.timings.get("total", 0.0))
            for key in stages:
                stages[key] += block.timings.get(key, 0.0)
            frames = block.frames[: plan.num_frames - written]
            t0 = time.perf_counter()
            writer.add(frames)
            encode_s += time.perf_counter() - t0
            written += len(frames)
            if on_block is not None and on_block(blocks, plan.blocks, block) is False:
                stopped = blocks < plan.blocks
                break
        timeline = session.timeline.to_dict() if session.timeline is not None else plan.timeline.to_dict()
        content = None
        if not stopped:
            t0 = time.perf_counter()
            content = writer.finish(metadata={**(metadata or {}), **plan.parameters(), "timeline": timeline})
            encode_s += time.perf_counter() - t0
    finally:
        stream.close()
        session.stop()  # nothing runs on after an early stop or an error
        writer.close()
    wall = time.perf_counter() - start
    return OfflineResult(content, written, blocks, block_ms, ttff or 0.0, wall, encode_s * 1000,
                         {k: v / max(blocks, 1) for k, v in stages.items()}, stopped=stopped)
