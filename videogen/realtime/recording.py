"""Every realtime session is recorded server side: an MP4 at 16 fps (PyAV) in the owner's
gallery, with the timeline of its prompt changes so the same seed and timeline can be
regenerated offline (``manage.py generate_video --timeline``).

Encoding runs on a thread of its own, fed by an unbounded queue: the stream never waits for
the encoder, and no frame of the recording is lost (a session is at most 50 blocks, so the
queue stays bounded by the session itself).
"""

from __future__ import annotations

import io
import logging
import queue
import threading
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

RECORDING_FPS = 16
_END = object()


class Recording:
    """Frames in (uint8 RGB arrays or JPEG bytes), one MP4 out."""

    def __init__(self, fps: int = RECORDING_FPS, name: str = "recording") -> None:
        self.fps = fps
        self.frames = 0
        self.size: tuple[int, int] | None = None  # (width, height) of the first frame
        self.error: str | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._result: bytes | None = None
        self._thread = threading.Thread(target=self._run, name=f"record-{name}", daemon=True)
        self._thread.start()

    def add_frames(self, frames: np.ndarray) -> None:
        """``uint8 [n, H, W, 3]`` frames."""
        self._queue.put(frames)

    def add_jpeg(self, data: bytes) -> None:
        self._queue.put(data)

    def finish(self, timeout: float | None = 120) -> bytes | None:
        """The MP4 (None when no frame was recorded or encoding failed; ``error`` says why)."""
        self._queue.put(_END)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.error = f"the recording did not finish within {timeout} s"
            return None
        return self._result

    def _frames_of(self, item: Any) -> np.ndarray:
        if isinstance(item, bytes):
            from PIL import Image

            with Image.open(io.BytesIO(item)) as image:
                image = image.convert("RGB")
                if self.size is not None and image.size != self.size:
                    image = image.resize(self.size)
                return np.asarray(image)[None]
        return item

    def _run(self) -> None:
        from videogen.gallery.mp4 import Mp4Writer

        writer = None
        while True:
            item = self._queue.get()
            if item is _END:
                break
            if self.error:
                continue  # drain, so producers never block on a dead encoder
            try:
                frames = self._frames_of(item)
                if writer is None:
                    self.size = (frames.shape[2], frames.shape[1])
                    writer = Mp4Writer(fps=self.fps)
                writer.add(frames)
                self.frames += frames.shape[0]
            except Exception as exc:  # a bad frame ends the recording, never the stream
                logger.exception("recording failed")
                self.error = f"{type(exc).__name__}: {exc}"
        if writer is not None and not self.error:
            try:
                self._result = writer.finish()
            except Exception as exc:
                logger.exception("finishing the recording failed")
                self.error = f"{type(exc).__name__}: {exc}"


def save(session, content: bytes | None, timeline: dict[str, Any] | None, frames: int):
    """The recording of ``session`` as a ``Video`` in its owner's gallery (None without frames)."""
    from videogen.gallery import store as storage

    if not content:
        return None
    params = session.params
    parameters = {
        "kind": "realtime", "backend": session.backend, "model": session.model_id, "session": str(session.id),
        "prompt": params.get("prompt"), "width": params.get("width"), "height": params.get("height"),
        "seed": params.get("seed"), "num_blocks": params.get("num_blocks"),
        "num_denoising_steps": params.get("num_denoising_steps"), "frames": frames, "fps": RECORDING_FPS,
        "timeline": timeline,
    }
    return storage.save_video(session.owner_id, f"realtime-{storage.slug(session.backend)}-{str(session.id)[:8]}",
                              content, parameters)


def described(video, frames: int) -> dict[str, Any]:
    """What the session's socket tells its client about the recording."""
    from django.urls import reverse

    return {"frames": frames, "video": str(video.id) if video else None,
            "url": reverse("video-file", args=[video.id, "file"]) if video else None}
