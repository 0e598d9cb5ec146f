"""The GPU side of a local realtime session: the pipeline loop behind ``/ws/realtime/``.

Runs as the Celery task ``videogen.gpu.run_realtime_session`` on queue ``gpu`` (one session
at a time per GPU worker process), or on the embedded mode's one gpu thread. It claims the
session (``queued -> streaming``), maps its parameters onto the pipeline's
``GenerationParams`` (the start frame from the cache, webcam mode as live video input),
generates block after block on the process's warm pipeline, publishes each frame as JPEG
to the session's bus, and records the session (its parts reach storage as it streams,
videogen/realtime/recording.py). A thread of its own (:class:`Controls`) applies the
socket's control messages as they arrive: updates take effect from the next block, images
go to the pipeline's input buffer (``push_frame``: never on the generating thread, which may
be waiting for them). It stops after the session's blocks, on a ``stop`` from the socket, or
when the socket has been silent for ``SOCKET_SILENT_S`` (its web process died): never more
than one block after the client left.
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
INPUT_TIMEOUT_S = 5.0  # webcam mode: a block waits this long for new images (then holds the last one)
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


def generation_params(params: dict[str, Any], start_frame: bytes | None = None):
    """A session's stored parameters (``StreamParams.public()``) as the pipeline's
    ``GenerationParams``; ``start_frame``: its image bytes (kept out of the row)."""
    from videogen.pipeline import GenerationParams
    from videogen.realtime.protocol import StreamParams

    stream = StreamParams.from_public(params)
    return GenerationParams(prompt=stream.prompt, width=stream.width, height=stream.height, seed=stream.seed,
                            num_blocks=stream.num_blocks, num_denoising_steps=stream.num_denoising_steps,
                            strength=stream.strength, interp_steps=stream.interp_steps,
                            keep_first_frame=stream.keep_first_frame, start_frame=start_frame,
                            video_input=stream.webcam_mode, input_timeout_s=INPUT_TIMEOUT_S)


def ignored(params: dict[str, Any], config) -> list[str]:
    """Krea's parameters a session set that the local pipeline does not follow (it runs its
    own configuration): told to the client in ``started``."""
    out = [name for name, own in (("kv_cache_num_frames", config.kv_cache_num_frames),
                                  ("timestep_shift", config.timestep_shift))
           if params.get(name) is not None and params[name] != own]
    if params.get("context_noise"):
        out.append("context_noise")
    if params.get("interp_blocks") not in (None, -1):
        out.append("interp_blocks")
    if params.get("resume_latents_bytes"):
        out.append("resume_latents")
    return out


class Controls:
    """The socket's control messages, applied to the pipeline as they arrive (a thread)."""

    def __init__(self, pipeline, link: ProducerLink, session_id: str) -> None:
        self.pipeline = pipeline
        self.link = link
        self.session_id = session_id
        self.stopped = False  # the socket said stop
        self.silent = False  # the socket went quiet
        self.images = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rt-controls-{session_id[:8]}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._done.is_set():
            control = self.link.next_control(0.2)
            if control is None:
                if time.monotonic() - self.link.last_control > SOCKET_SILENT_S:
                    logger.warning("realtime session %s: its socket is silent, stopping", self.session_id)
                    self.silent = True
                    self.pipeline.stop()
                    return
                continue
            try:
                self.apply(control)
            except Exception:  # one bad control must not end the session
                logger.exception("realtime session %s: a control message failed", self.session_id)

    def apply(self, control: dict[str, Any]) -> None:
        op = control.get("op")
        if op == "stop":
            self.stopped = True
            self.pipeline.stop()
        elif op == "update":
            update = control.get("update") or {}
            if "image" in update:
                self.images += 1
                self.pipeline.push_frame(update["image"], strength=update.get("strength"))
            if any(update.get(k) is not None for k in ("prompt", "seed", "reset")):
                self.pipeline.update(prompt=update.get("prompt"), seed=update.get("seed"),
                                     reset=bool(update.get("reset")), interp_steps=update.get("interp_steps"))


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
    session = sessions.finish(session_id, frames=0, timeline=None, video=None, error=message)
    link.publish({"type": "rt.error", "error": message, "fatal": True,
                  "end_reason": session.end_reason if session else "error"})


def _stream(session, loaded, link: ProducerLink) -> None:
    from videogen.local.host import host, is_out_of_memory
    from videogen.pipeline.video_in import InputTimeout

    pipeline = loaded.session
    session_id = str(session.id)
    params = generation_params(session.params, sessions.start_frame(session_id))
    link.last_control = time.monotonic()
    blocks = pipeline.start(params)  # validates; the start frame is encoded here
    link.publish({"type": "rt.started", "width": params.width, "height": params.height, "seed": params.seed,
                  "num_blocks": params.num_blocks, "num_denoising_steps": len(pipeline.schedule),
                  "strength": pipeline.strength, "interp_steps": pipeline.interp_steps,
                  "webcam_mode": params.video_input, "start_frame": params.start_frame is not None,
                  "ignored": ignored(session.params, pipeline.config),
                  "model": loaded.name, "random_weights": loaded.random_weights})
    publisher = FramePublisher(link)
    record = recording.Recording(name=session_id[:8], parts=recording.parts_folder(session_id))
    controls = Controls(pipeline, link, session_id)
    frames, error, reason, out_of_memory = 0, "", None, False
    last_beat = time.monotonic()
    try:
        for block in blocks:
            publisher.put(block.frames, block.pixels)
            record.add_frames(block.frames)
            frames += block.frames.shape[0]
            if time.monotonic() - last_beat > HEARTBEAT_S:
                sessions.heartbeat(session_id, frames=frames, timeline=pipeline.timeline.to_dict())
                last_beat = time.monotonic()
    except InputTimeout as exc:
        error, reason = f"{exc}: in webcam mode the stream needs image messages", "timeout"
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
        controls.close()
        pipeline.stop()
        publisher.finish()
    if out_of_memory:  # outside the except block: its traceback no longer holds the tensors
        host.recover_from_out_of_memory()
    if controls.stopped and not error:
        reason = "stopped"
    content = record.finish()
    if record.error:
        logger.warning("realtime session %s: recording failed: %s", session_id, record.error)
    timeline = pipeline.timeline.to_dict() if pipeline.timeline is not None else None
    video = sessions.save_recording(session_id, content, timeline, record.frames)
    finished = sessions.finish(session_id, frames=frames, timeline=timeline, video=video, error=error,
                               reason=reason, saved=video is not None or not content)
    recorded = {**recording.described(video, frames), "end_reason": finished.end_reason if finished else reason}
    if error:
        link.publish({"type": "rt.error", "error": error, "fatal": True, **recorded})
    else:
        link.publish({"type": "rt.completed", **recorded})
