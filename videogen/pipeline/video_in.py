"""Video into the pipeline: images and videos as pixel tensors, and the live input buffer.

Images (a start frame, a webcam frame, the frames of an input video) arrive as encoded bytes
(JPEG, PNG, WebP: whatever Pillow reads), PIL images, uint8 arrays ``[H, W, 3]`` or float
tensors ``[3, H, W]`` in [-1, 1]. :func:`to_pixels` makes them the session's size the way
Krea's demo does it: centre-cropped to the output's aspect ratio (Krea's client crops before it
sends), then resized bicubically as Krea's server does (``F.interpolate(..., mode="bicubic")``,
no antialiasing), in [-1, 1].

:class:`InputFrames` is the live stream (webcam mode): any thread pushes, the generation thread
takes a block's worth. The buffer is bounded: a producer faster than the blocks loses its
oldest frames and never blocks. A block takes every frame that arrived since the last one and
resamples them to the count it needs (Krea's ``resample_array``: indices
``round(linspace(0, n - 1, count))``), 9 for a stream's first block and 12 after.
"""

from __future__ import annotations

import io
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["InputFrames", "InputTimeout", "VideoFrames", "resample_indices", "to_pixels", "video_length"]


class InputTimeout(RuntimeError):
    """No input frame arrived in time for a block (webcam mode)."""


def resample_indices(available: int, count: int) -> list[int]:
    """Which of ``available`` frames make ``count`` evenly spread ones (Krea's resample_array)."""
    if available < 1:
        raise ValueError("no frames to resample")
    if available == count:
        return list(range(count))
    return [int(i) for i in np.round(np.linspace(0, available - 1, count)).astype(int)]


def _as_tensor(image: Any) -> torch.Tensor:
    """Any supported image -> float32 ``[3, H, W]`` in [-1, 1] at its own size."""
    if isinstance(image, torch.Tensor):
        if image.dtype == torch.uint8:  # [H, W, 3] like the arrays
            return image.permute(2, 0, 1).float().div(127.5).sub(1.0)
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"an image tensor must be [3, H, W] in [-1, 1], got {tuple(image.shape)}")
        return image.float()
    if isinstance(image, bytes | bytearray | memoryview):
        from PIL import Image

        with Image.open(io.BytesIO(bytes(image))) as opened:
            image = opened.convert("RGB")
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.array(image.convert("RGB"))  # a writable copy for torch
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"an image array must be uint8 [H, W, 3], got {array.dtype} {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div(127.5).sub(1.0)


def to_pixels(image: Any, width: int, height: int) -> torch.Tensor:
    """``image`` -> float32 ``[3, height, width]`` in [-1, 1]: centre-cropped to the aspect
    ratio, then bicubic as Krea's server resizes (see the module docstring)."""
    x = _as_tensor(image)
    _, h, w = x.shape
    if (h, w) == (height, width):
        return x
    if w * height > h * width:  # wider than the output: crop the sides
        crop = max(1, round(h * width / height))
        x = x[:, :, (w - crop) // 2:(w - crop) // 2 + crop]
    elif w * height < h * width:  # taller: crop top and bottom
        crop = max(1, round(w * height / width))
        x = x[:, (h - crop) // 2:(h - crop) // 2 + crop]
    return F.interpolate(x[None], size=(height, width), mode="bicubic", align_corners=False)[0]


def video_length(video: Any) -> int:
    """Frames in an input video (an array ``[n, H, W, 3]``, a tensor, or a list of images)."""
    return int(video.shape[0]) if hasattr(video, "shape") else len(video)


class VideoFrames:
    """An input video read a block at a time (its frames converted only when needed).

    ``take(start, count)`` -> ``[3, count, H, W]`` in [-1, 1]; frames past the end are missing,
    so a caller asks only for what :attr:`length` allows."""

    def __init__(self, video: Any, width: int, height: int):
        self.video = video
        self.width, self.height = width, height
        self.length = video_length(video)

    def take(self, start: int, count: int) -> torch.Tensor:
        if start + count > self.length:
            raise ValueError(f"frames {start}..{start + count} asked of a {self.length}-frame video")
        frames = [to_pixels(self.video[i], self.width, self.height) for i in range(start, start + count)]
        return torch.stack(frames, dim=1)


class InputFrames:
    """The live input stream of one session: bounded, thread-safe, never blocking the producer.

    ``push`` (any thread) converts and queues a frame, dropping the oldest past ``capacity``;
    ``take`` (the generation thread) waits for at least one new frame, then returns all of them
    resampled to ``count``. When none comes within ``timeout_s`` the last frame taken is held
    (the stream goes on); before any frame ever came, :class:`InputTimeout` is raised."""

    def __init__(self, width: int, height: int, capacity: int = 48):
        self.width, self.height = width, height
        self._frames: deque[torch.Tensor] = deque(maxlen=capacity)
        self._last: torch.Tensor | None = None
        self._cond = threading.Condition()
        self.pushed = 0
        self.dropped = 0

    def push(self, image: Any) -> None:
        frame = to_pixels(image, self.width, self.height)  # converted here, on the pusher's thread
        with self._cond:
            if len(self._frames) == self._frames.maxlen:
                self.dropped += 1
            self._frames.append(frame)
            self.pushed += 1
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._frames.clear()
            self._last = None

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)

    def take(self, count: int, timeout_s: float, stopped: Callable[[], bool]) -> torch.Tensor | None:
        """``[3, count, H, W]``, or ``None`` when ``stopped()`` became true while waiting."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._frames:
                if stopped():
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    if self._last is None:
                        raise InputTimeout(f"no input frame arrived within {timeout_s:g} s")
                    return self._last[:, None].expand(-1, count, -1, -1).clone()
                self._cond.wait(min(left, 0.05))
            frames: Sequence[torch.Tensor] = list(self._frames)
            self._frames.clear()
            self._last = frames[-1]
        return torch.stack([frames[i] for i in resample_indices(len(frames), count)], dim=1)
