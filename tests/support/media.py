"""Reading back the MP4s the studio writes (frame count, size and frame rate, from PyAV), and
writing the videos tests upload."""

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


def mp4_of(frames, fps: int) -> bytes:
    """An H.264 MP4 of uint8 frames ``[n, H, W, 3]`` at ``fps``."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def frames_of(source: bytes) -> list:
    """Every frame of a video as uint8 ``[H, W, 3]`` arrays."""
    with av.open(io.BytesIO(source)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(container.streams.video[0])]
