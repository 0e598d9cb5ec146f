"""The GPU side of a local realtime session: the pipeline loop behind ``/ws/realtime/``.

Runs as the Celery task ``videogen.gpu.run_realtime_session`` on queue ``gpu`` (one session
at a time per GPU worker process), or on the embedded mode's one gpu thread. It claims the
session (``queued -> streaming``), generates block after block on the process's warm
pipeline, publishes each frame as JPEG to the session's group, applies the control messages
that arrived meanwhile between two blocks, and records the session. It stops after the
session's blocks, on a ``stop`` from the socket, or when the socket has been silent for
``SOCKET_SILENT_S`` (its web process died): never more than one block after the client left.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import queue
import socket
import threading
import time
from typing import Any

import numpy as np

from videogen.realtime import recording, sessions
from videogen.realtime.link import ProducerLink

logger = logging.getLogger(__name__)

JPEG_QUALITY = 90
SOCKET_SILENT_S = 15.0
HEARTBEAT_S = 5.0


def encode_jpeg(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """One ``uint8 [H, W, 3]`` frame as JPEG bytes (Pillow, on the CPU)."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(frame).save(out, "JPEG", quality=quality)
    return out.getvalue()


@functools.cache
def gpu_jpeg_encoder():
    """torchvision's nvJPEG encoder when this process has CUDA and torchvision, else None."""
    try:
        import torch
        from torchvision.io import encode_jpeg as encode
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    logger.info("JPEG frames are encoded on the GPU (torchvision, nvJPEG)")
    return encode


_gpu_jpeg_failed = False


def encode_block(frames: np.ndarray, pixels=None) -> list[bytes]:
    """A block's frames as JPEG bytes: on the GPU when they are there and torchvision can
    (``pixels``: uint8 [n, 3, H, W] on CUDA), else with Pillow from the CPU copy."""
    global _gpu_jpeg_failed
    on_gpu = pixels is not None and getattr(pixels, "is_cuda", False) and not _gpu_jpeg_failed
    encode = gpu_jpeg_encoder() if on_gpu else None
    if encode is not None:
        try:
            return [bytes(data.cpu().numpy()) for data in encode(list(pixels), quality=JPEG_QUALITY)]
        except RuntimeError:  # an nvJPEG that cannot take CUDA tensors: Pillow from now on
            logger.exception("GPU JPEG encoding failed; using Pillow")
            _gpu_jpeg_failed = True
    return [encode_jpeg(frame) for frame in frames]


class FramePublisher:
    """Encodes blocks to JPEG and publishes their frames on a thread of its own, so the
    next block is generated while this one is encoded and sent."""

    def __init__(self, link: ProducerLink) -> None:
        self.link = link
        self.published = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="rt-frames", daemon=True)
        self._thread.start()

    def put(self, frames: np.ndarray, pixels=None) -> None:
        self._queue.put((frames, pixels))

    def finish(self, timeout: float = 60) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            for jpeg in encode_block(*item):
                self.link.publish({"type": "rt.frame", "jpeg": jpeg, "index": self.published, "t": time.time()})
                self.published += 1


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _generation_params(params: dict[str, Any]):
    from videogen.pipeline import GenerationParams
    from videogen.realtime.protocol import StreamParams

    stream = StreamParams(**{k: v for k, v in params.items() if k in StreamParams.__dataclass_fields__})
    return GenerationParams(prompt=stream.prompt, width=stream.width, height=stream.height, seed=stream.seed,
                            num_blocks=stream.num_blocks, denoising_steps=stream.denoising_steps())


def run_session(session_id: str, *, link: ProducerLink | None = None) -> None:
    """Claim and stream one session to the end (see the module docstring)."""
    from videogen.local.host import PipelineUnavailable, host

    session = sessions.claim(session_id, worker_name())
    if session is None:
        logger.info("realtime session %s is not waiting any more (cancelled or taken)", session_id)
        return
    link = link or ProducerLink(session_id)
    try:
        if host.loaded is None:
            link.publish({"type": "rt.loading"})
        try:
            loaded = host.get()
        except PipelineUnavailable as exc:
            _end_with_error(link, session_id, str(exc))
            return
        with host.running(f"realtime {session_id}"):
            _stream(session, loaded, link)
    except Exception as exc:
        logger.exception("realtime session %s failed", session_id)
        _end_with_error(link, session_id, f"the local pipeline failed: {type(exc).__name__}: {exc}")
    finally:
        link.close()


def _end_with_error(link: ProducerLink, session_id: str, message: str) -> None:
    sessions.finish(session_id, frames=0, timeline=None, video=None, error=message)
    link.publish({"type": "rt.error", "error": message, "fatal": True})


def _stream(session, loaded, link: ProducerLink) -> None:
    from videogen.local.host import host, is_out_of_memory

    pipeline = loaded.session
    params = _generation_params(session.params)
    session_id = str(session.id)
    link.publish({"type": "rt.started", "width": params.width, "height": params.height, "seed": params.seed,
                  "num_blocks": params.num_blocks, "num_denoising_steps": len(params.denoising_steps),
                  "model": loaded.name, "random_weights": loaded.random_weights})
    publisher = FramePublisher(link)
    record = recording.Recording(name=session_id[:8])
    frames, error, out_of_memory = 0, "", False
    last_beat = time.monotonic()
    link.last_control = time.monotonic()
    try:
        for block in pipeline.start(params):
            publisher.put(block.frames, block.pixels)
            record.add_frames(block.frames)
            frames += block.frames.shape[0]
            if _apply_controls(pipeline, link.drain()):
                pipeline.stop()
            elif time.monotonic() - link.last_control > SOCKET_SILENT_S:
                logger.warning("realtime session %s: its socket is silent, stopping", session_id)
                pipeline.stop()
            if time.monotonic() - last_beat > HEARTBEAT_S:
                sessions.heartbeat(session_id, frames=frames)
                last_beat = time.monotonic()
    except Exception as exc:
        out_of_memory = is_out_of_memory(exc)
        if out_of_memory:
            logger.warning("realtime session %s ran out of GPU memory after %d frames", session_id, frames)
            error = (f"the GPU ran out of memory generating {params.width}x{params.height}, so the session "
                     f"ended after {frames} frames; a smaller size needs less")
        else:
            logger.exception("realtime session %s failed after %d frames", session_id, frames)
            error = f"the local pipeline failed: {type(exc).__name__}: {exc}"
    finally:
        pipeline.stop()
        publisher.finish()
    if out_of_memory:  # outside the except block: its traceback no longer holds the tensors
        host.recover_from_out_of_memory()
    content = record.finish()
    if record.error:
        logger.warning("realtime session %s: recording failed: %s", session_id, record.error)
    timeline = pipeline.timeline.to_dict() if pipeline.timeline is not None else None
    video = recording.save(session, content, timeline, record.frames)
    sessions.finish(session_id, frames=frames, timeline=timeline, video=video, error=error)
    recorded = recording.described(video, frames)
    if error:
        link.publish({"type": "rt.error", "error": error, "fatal": True, **recorded})
    else:
        link.publish({"type": "rt.completed", **recorded})


def _apply_controls(pipeline, controls: list[dict[str, Any]]) -> bool:
    """Hand updates to the pipeline (they take effect from the next block); True on ``stop``."""
    stop = False
    for control in controls:
        op = control.get("op")
        if op == "stop":
            stop = True
        elif op == "update":
            update = control.get("update") or {}
            pipeline.update(prompt=update.get("prompt"), seed=update.get("seed"), reset=bool(update.get("reset")))
    return stop
