"""What the studio reads from and writes into a video file (PyAV): duration, a thumbnail of
the first frame, and the generation's parameters in the MP4's own metadata."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from typing import Any

import av

logger = logging.getLogger(__name__)

THUMBNAIL_WIDTH = 320


@dataclass(frozen=True)
class VideoFacts:
    duration_s: float | None
    thumbnail_jpeg: bytes | None


def probe(content: bytes) -> VideoFacts:
    """Duration and a JPEG of the first frame; ``None`` for what the file does not yield."""
    try:
        with av.open(io.BytesIO(content)) as container:
            stream = container.streams.video[0]
            duration = None
            if container.duration:
                duration = container.duration / av.time_base
            elif stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            frame = next(container.decode(stream), None)
            thumbnail = None
            if frame is not None:
                image = frame.to_image()
                image.thumbnail((THUMBNAIL_WIDTH, THUMBNAIL_WIDTH))
                out = io.BytesIO()
                image.convert("RGB").save(out, "JPEG", quality=85)
                thumbnail = out.getvalue()
            return VideoFacts(round(duration, 3) if duration else None, thumbnail)
    except (av.FFmpegError, IndexError, StopIteration, ValueError) as exc:
        logger.warning("cannot read the video (%s): no thumbnail or duration", type(exc).__name__)
        return VideoFacts(None, None)


def with_metadata(content: bytes, parameters: dict[str, Any]) -> bytes:
    """The same MP4 (streams copied, not re-encoded) with ``parameters`` as its comment tag."""
    try:
        source = av.open(io.BytesIO(content))
        out = io.BytesIO()
        target = av.open(out, "w", format="mp4")
        target.metadata["comment"] = json.dumps(parameters, separators=(",", ":"), default=str)
        mapping = {}
        for stream in source.streams:
            if stream.type in ("video", "audio"):
                mapping[stream.index] = target.add_stream_from_template(stream)
        for packet in source.demux():
            if packet.stream.index in mapping and packet.dts is not None:
                packet.stream = mapping[packet.stream.index]
                target.mux(packet)
        target.close()
        source.close()
        return out.getvalue()
    except (av.FFmpegError, ValueError) as exc:
        logger.warning("cannot write metadata into the video (%s): stored as received", type(exc).__name__)
        return content


def read_metadata(content: bytes) -> dict[str, Any]:
    """The parameters ``with_metadata`` wrote, or ``{}``."""
    try:
        with av.open(io.BytesIO(content)) as container:
            return json.loads(container.metadata.get("comment", "{}"))
    except (av.FFmpegError, ValueError):
        return {}
