"""Every realtime session is recorded server side: an MP4 at 16 fps (PyAV) in the owner's
gallery, with the timeline of its prompt changes so the same seed and timeline can be
regenerated offline (``manage.py generate_video --timeline``).

Encoding runs on a thread of its own, fed by an unbounded queue: the stream never waits for
the encoder, and no frame of the recording is lost. The encoder writes a fragmented MP4 (a
fragment a second, videogen/gallery/mp4.py) to a local file, and every ``PART_INTERVAL_S``
copies what it added since the last copy to storage as the next *part*
(``realtime/<session>/<n>.part``, through Django's storage API: MEDIA_ROOT or the bucket the
web processes share). The parts, joined, are the recording so far; whatever ends a session
(its producer, its socket, the sweep of ``videogen.local.tasks``) can save them as a video,
so a GPU worker killed mid-session still leaves what it made in the gallery
(``sessions.salvage_recording``). Parts always hold whole fragments: they are copied on the
encoder's own thread, between two of its writes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

RECORDING_FPS = 16
PART_INTERVAL_S = 2.0  # seconds between two parts in storage: what a crash can lose, at most
_END = object()


def parts_folder(session_id: Any) -> str:
    """The storage folder of a session's parts."""
    return f"realtime/{uuid.UUID(str(session_id)).hex}"


class Recording:
    """Frames in (uint8 RGB arrays or JPEG bytes), one MP4 out; with ``parts`` (a storage
    folder, :func:`parts_folder`) also copied to storage as it grows."""

    def __init__(self, fps: int = RECORDING_FPS, name: str = "recording", parts: str | None = None) -> None:
        self.fps = fps
        self.parts = parts
        self.parts_saved = 0
        self.frames = 0
        self.size: tuple[int, int] | None = None  # (width, height) of the first frame
        self.error: str | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._result: bytes | None = None
        self._dir = tempfile.mkdtemp(prefix="studio-recording-")
        self._path = os.path.join(self._dir, "recording.mp4")
        self._copied = 0  # bytes of the local file already in parts
        self._last_part = time.monotonic()
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

    def _save_part(self) -> None:
        """What the encoder added since the last part, as the next part in storage."""
        from django.core.files.base import ContentFile
        from django.core.files.storage import default_storage

        self._last_part = time.monotonic()
        try:
            size = os.path.getsize(self._path)
        except FileNotFoundError:  # nothing written yet (the encoder holds its first frames)
            return
        if size <= self._copied:
            return
        with open(self._path, "rb") as source:
            source.seek(self._copied)
            data = source.read(size - self._copied)
        try:
            default_storage.save(f"{self.parts}/{self.parts_saved:06d}.part", ContentFile(data))
        except Exception:  # storage away for a moment: the next part carries these bytes too
            logger.exception("saving a part of recording %s failed", self.parts)
            return
        self._copied = size
        self.parts_saved += 1

    def _run(self) -> None:
        from videogen.gallery.mp4 import Mp4Writer

        writer = None
        try:
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
                        writer = Mp4Writer(fps=self.fps, path=self._path, fragmented=True)
                    writer.add(frames)
                    self.frames += frames.shape[0]
                except Exception as exc:  # a bad frame ends the recording, never the stream
                    logger.exception("recording failed")
                    self.error = f"{type(exc).__name__}: {exc}"
                if self.parts and not self.error and time.monotonic() - self._last_part >= PART_INTERVAL_S:
                    self._save_part()
            if writer is not None and not self.error:
                try:
                    self._result = writer.finish()
                except Exception as exc:
                    logger.exception("finishing the recording failed")
                    self.error = f"{type(exc).__name__}: {exc}"
        finally:
            if writer is not None:
                writer.close()
            shutil.rmtree(self._dir, ignore_errors=True)


def salvage(session_id: Any) -> tuple[bytes | None, int]:
    """The recording a session's parts hold (a plain MP4 and its frames), cut at the last
    whole frame; ``(None, 0)`` when there are no parts or no frame in them."""
    from django.core.files.storage import default_storage

    from videogen.gallery.mp4 import playable_copy

    folder = parts_folder(session_id)
    try:
        names = sorted(name for name in default_storage.listdir(folder)[1] if name.endswith(".part"))
    except (FileNotFoundError, NotADirectoryError):
        return None, 0
    if not names:
        return None, 0
    handle, path = tempfile.mkstemp(prefix="studio-salvage-", suffix=".mp4")
    try:
        with os.fdopen(handle, "wb") as joined:
            for name in names:
                with default_storage.open(f"{folder}/{name}", "rb") as part:
                    shutil.copyfileobj(part, joined)
        return playable_copy(path, check=True)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def delete_parts(session_id: Any) -> None:
    """Remove a session's parts (its recording is saved, or there is nothing to save)."""
    from django.core.files.storage import default_storage

    folder = parts_folder(session_id)
    try:
        names = default_storage.listdir(folder)[1]
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            default_storage.delete(f"{folder}/{name}")
    if hasattr(default_storage, "path"):  # a folder on disk (a bucket has none)
        with contextlib.suppress(OSError, NotImplementedError):
            os.rmdir(default_storage.path(folder))


def save(session, content: bytes | None, timeline: dict[str, Any] | None, frames: int, *, partial: bool = False):
    """The recording of ``session`` as a ``Video`` in its owner's gallery (None without frames);
    ``partial``: saved from its parts after the producer died."""
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
    if partial:
        parameters["partial"] = True
    return storage.save_video(session.owner_id, f"realtime-{storage.slug(session.backend)}-{str(session.id)[:8]}",
                              content, parameters)


def described(video, frames: int) -> dict[str, Any]:
    """What the session's socket tells its client about the recording."""
    from django.urls import reverse

    return {"frames": frames, "video": str(video.id) if video else None,
            "url": reverse("video-file", args=[video.id, "file"]) if video else None}
