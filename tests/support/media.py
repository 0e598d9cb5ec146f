"""Reading back the MP4s the studio writes: frame count, size and frame rate, from PyAV."""

from __future__ import annotations

import io
from pathlib import Path

import av


def facts(source: bytes | str | Path) -> tuple[int, int, int, float]:
    """(frames, width, height, frames per second) of an MP4 given as its bytes or its path."""
    with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return count, stream.codec_context.width, stream.codec_context.height, float(stream.average_rate)


def decoded(source: bytes | str | Path) -> tuple[int, int, int]:
    """(frames, width, height) of an MP4 given as its bytes or its path."""
    return facts(source)[:3]
