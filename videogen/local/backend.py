"""The local Krea pipeline as a backend: offline jobs on a GPU worker, and realtime streams.

Registered from ``videogen``'s ``AppConfig.ready`` (the model_control registry never imports
videogen). Its numbers come from the pipeline itself: the size multiple (the VAE's 8 x the
DiT's patch of 2), the frames of a block, the default size, the steps; the offline job's
ranges from ``videogen.local.offline``. docs/pipeline.md.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from model_control.backends import StreamBackend, StreamLimits, WorkerBackend
from model_control.backends.port import GeneratedVideo, Progress, realtime_params
from model_control.catalog import REALTIME, TEXT_TO_VIDEO, VideoModel, free
from model_control.errors import (
    ProviderError,
    ProviderFailed,
    ProviderOutOfMemory,
    ProviderRejected,
    ProviderUnavailable,
)
from model_control.inputs import Param
from videogen.local import offline
from videogen.pipeline.config import KREA_14B_CONFIG

logger = logging.getLogger(__name__)

NAME = "local"
WEIGHTS_DIR = "krea-realtime-video"
# Sizes the local pipeline takes as a job (multiples of 16; Krea's 832x480 first).
RESOLUTIONS = ("832x480", "480x832", "576x320", "320x576", "640x368", "368x640", "320x192", "192x320")
DEMO_NOTE = ("demo: tiny random model on CPU; install weights with `manage.py download_models` and run a GPU "
             "worker for real video")


def _offline_check(values: dict[str, Any]) -> dict[str, str]:
    """An offline job's rules across fields: ``strength`` is how far from the video."""
    if "strength" in values and "video" not in values:
        return {"strength": "goes with a video to restyle (video); without one there is nothing to keep"}
    return {}


def _weights_present() -> bool:
    weights = settings.MODELS_DIR / WEIGHTS_DIR
    return weights.is_dir() and any(weights.glob("*.safetensors"))


def stream_limits() -> StreamLimits:
    """What a realtime session on the local pipeline accepts, from the pipeline's config."""
    config = KREA_14B_CONFIG
    first, later = offline.frames_per_block(config)
    return StreamLimits(size_multiple=config.spatial_factor, default_width=config.width,
                        default_height=config.height, max_steps=offline.MAX_STEPS,
                        default_steps=len(config.denoising_steps), first_block_frames=first, block_frames=later,
                        takes_images=True,
                        max_blocks=settings.STUDIO_REALTIME_MAX_BLOCKS,
                        default_blocks=settings.STUDIO_REALTIME_DEFAULT_BLOCKS)


class LocalBackend(WorkerBackend, StreamBackend):
    name = NAME
    title = "Local Krea realtime pipeline"
    key = NAME
    model_id = "local/krea-realtime"
    description = "Our own Krea pipeline on this studio's GPU worker (or its tiny CPU demo)."
    queue = "gpu"
    lease_s = 120.0
    records_at_source = True  # the GPU worker records what it makes
    paid = False  # your own GPU

    @property
    def limits(self) -> StreamLimits:
        return stream_limits()

    def models(self) -> list[VideoModel]:
        config = KREA_14B_CONFIG
        first, later = offline.frames_per_block(config)
        most_frames = offline.frames_for_blocks(offline.MAX_BLOCKS, config)
        default_frames = offline.frames_for_blocks(offline.DEFAULT_BLOCKS, config)
        return [
            VideoModel(self.model_id, "Krea realtime (local GPU)", NAME, REALTIME, realtime_params(self.limits),
                       backend_title=self.title, endpoint="local", price=free,
                       description="Our own PyTorch pipeline in a Celery GPU worker."),
            VideoModel(
                "local/krea-offline", "Krea realtime 14B, offline (local GPU)", NAME, TEXT_TO_VIDEO,
                (Param("prompt", "prompt", "text", required=True, maximum=offline.MAX_PROMPT),
                 Param("resolution", "resolution", "choice", default=f"{config.width}x{config.height}",
                       choices=RESOLUTIONS, label="Size",
                       choice_labels=tuple(size.replace("x", " x ") for size in RESOLUTIONS),
                       help=f"Width x height in pixels; Krea is trained at {config.width} x {config.height}."),
                 Param("num_frames", "num_frames", "int", default=default_frames, minimum=first, maximum=most_frames,
                       help=f"How many frames to make at {offline.DEFAULT_FPS} fps ({default_frames} is about "
                            f"{default_frames // offline.DEFAULT_FPS} s); they are made {later} at a time."),
                 Param("seed", "seed", "int", default=0, minimum=0, maximum=offline.MAX_SEED),
                 Param("steps", "steps", "int", default=len(config.denoising_steps), minimum=1,
                       maximum=offline.MAX_STEPS,
                       help="Denoising steps per block; Krea is distilled for 4."),
                 Param("video", "input_video", "video", label="Video to restyle",
                       help=f"Optional: a video whose motion the result follows (video to video, read at "
                            f"{offline.INPUT_FPS} fps; MP4, MOV or WebM). Its length bounds the frames: without "
                            "Frames, as many as it gives."),
                 Param("strength", "strength", "float", minimum=0.0, maximum=1.0,
                       help=f"With a video: how far the result may move away from it, 0-1 (1 keeps nothing of "
                            f"it; default {config.input_strength:g}).")),
                backend_title=self.title, endpoint="local", price=free,
                description="The local Krea pipeline run to the end on a GPU worker (a 16 fps MP4), from a prompt "
                            "or restyling a video you upload; without a GPU and weights, its tiny random-weights "
                            "configuration (patterns, not video).",
                typical_wait=(10, 90), check=_offline_check),
        ]

    def missing(self) -> str | None:
        """It can run once it has real weights in ``MODELS_DIR/krea-realtime-video`` or its tiny
        demo configuration (always built in)."""
        if _weights_present():
            return None
        from videogen.pipeline.config import TINY_CONFIG

        if TINY_CONFIG is not None:
            return None
        return (f"no weights in {settings.MODELS_DIR / WEIGHTS_DIR} (python manage.py download_models) and no tiny "
                "demo configuration")

    def demo(self) -> str | None:
        """``DEMO_NOTE`` while what runs here is the tiny random-weights model: what this process
        holds once it has loaded the pipeline, else what it would load (``STUDIO_PIPELINE=tiny``,
        or no Krea weights in MODELS_DIR). Cheap: no torch, a directory listing."""
        from videogen.local.host import host

        loaded = host.loaded
        if loaded is not None:
            return DEMO_NOTE if loaded.random_weights else None
        return DEMO_NOTE if settings.STUDIO_PIPELINE == "tiny" or not _weights_present() else None

    # --- offline jobs (queue gpu) ---------------------------------------------------------------

    def prepare(self) -> None:
        from videogen.local.host import host

        try:
            host.get()
        except Exception as exc:  # noqa: BLE001 - missing weights, no CUDA, out of memory: the job says which
            logger.exception("the local pipeline cannot load")
            raise ProviderUnavailable(f"The local pipeline cannot run on this worker: {exc}", provider=NAME) from None

    def run(self, model: VideoModel, values: dict[str, Any], *, progress: Progress) -> GeneratedVideo | None:
        from videogen.local.host import host, is_out_of_memory

        loaded = host.get()
        video = values.get("video")
        # With a video and no frame count asked for, the video's length decides.
        defaults = {p.name: p.default for p in model.params
                    if p.default is not None and not (video is not None and p.name == "num_frames")}
        values = {**defaults, **values}
        try:
            width, height = (int(side) for side in str(values["resolution"]).split("x"))
            plan = offline.plan(offline.OfflineRequest(
                prompt=values.get("prompt"), width=width, height=height, num_frames=values.get("num_frames"),
                seed=values["seed"], steps=values["steps"], input_video=video.data if video is not None else None,
                strength=values.get("strength")), loaded.session.config)
        except (offline.OfflineError, KeyError, ValueError) as exc:
            raise ProviderRejected(f"The local pipeline cannot make this video: {exc}", provider=NAME) from None

        interrupted: list[BaseException] = []

        def on_block(done: int, total: int, block) -> bool:
            log = f"block {done}/{total}: {len(block.frames)} frames in {block.timings.get('total', 0.0):.0f} ms"
            try:
                return progress(done, total, log)
            except Exception as exc:  # the caller's (a deleted job): stop here, raise it below
                interrupted.append(exc)
                return False

        failure: ProviderError | None = None
        try:
            with host.running(f"job for {model.id}"):
                result = offline.generate(loaded.session, plan, on_block=on_block)
        except Exception as exc:  # noqa: BLE001 - e.g. CUDA out of memory: the job fails saying so
            if is_out_of_memory(exc):
                failure = ProviderOutOfMemory(f"The GPU ran out of memory making a {width}x{height} video; a "
                                              "smaller size needs less.", provider=NAME)
            else:
                logger.exception("an offline job failed in the pipeline")
                failure = ProviderFailed(f"The local pipeline failed: {type(exc).__name__}: {exc}", provider=NAME)
        if failure is not None:  # outside the except block: its traceback no longer holds the tensors
            if isinstance(failure, ProviderOutOfMemory):
                host.recover_from_out_of_memory()
            raise failure
        if interrupted:
            raise interrupted[0]
        if result.stopped:
            return None
        stats = result.stats()
        fields = {**{k: v for k, v in plan.parameters().items() if not isinstance(v, list)},
                  "denoising_steps": ",".join(str(s) for s in plan.denoising_steps), "pipeline": loaded.name,
                  "random_weights": loaded.random_weights, "device": loaded.device, "attention": loaded.attention,
                  "generation_fps": stats["fps"], "ttff_s": stats["ttff_s"], "block_ms_p50": stats["block_ms_p50"],
                  "block_ms_p90": stats["block_ms_p90"]}
        return GeneratedVideo(result.content, "video/mp4", model.id, NAME, None, fields)

    # --- realtime streams -------------------------------------------------------------------------

    async def capacity(self) -> int | None:
        """GPU workers that can take sessions now (each streams one at a time): 1 in the
        embedded mode (its gpu thread), else the census's count (1 when it cannot tell: the
        session then waits in the queue)."""
        if settings.STUDIO_EMBEDDED:
            return 1
        from asgiref.sync import sync_to_async

        from runtime.workers import census

        found = await sync_to_async(census, thread_sensitive=False)()
        if found.error:
            return 1
        return len(found.consuming(self.queue))

    def open(self, listener: Any, session: Any, params: Any):
        from videogen.local.stream import LocalStream

        return LocalStream(listener, session, params)
