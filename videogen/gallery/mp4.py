"""Frames -> MP4 bytes, incrementally (PyAV): the one encoder for offline jobs, the
``generate_video`` command and realtime recordings.

::

    writer = Mp4Writer(fps=16, metadata={"prompt": "a fox"})
    for block in session.start(params):
        writer.add(block.frames)          # uint8 [n, H, W, 3] RGB (or one [H, W, 3] frame)
    content = writer.finish()             # the MP4's bytes (H.264, yuv420p, faststart)

- The size is fixed by the first frame (or ``width``/``height``); a later frame of another
  size is a ``ValueError``. yuv420p needs even sides: an odd width or height is cropped by one
  pixel (the pipeline's sizes are multiples of 16, so this never happens there).
- Frames are encoded as they are added into a temporary file (or ``path=``), never held raw,
  so a long recording costs only its compressed size; ``finish()`` moves the index to the
  front (``+faststart``, a browser plays it while it downloads) and returns the bytes.
- The codec is the first of ``CODECS`` that this PyAV build has (``av.codecs_available``):
  libx264 in PyAV's wheels; ``codec=`` forces one.
- ``metadata`` (a dict) goes into the MP4's ``comment`` tag as JSON, where
  ``videogen.gallery.media.read_metadata`` finds it. ``finish(metadata={...})`` replaces it at the
  end (a recording's timeline is only known then): the finished file is re-muxed once with
  the new tag (streams copied, not re-encoded).
- ``fragmented=True`` (with ``path=``) writes a fragmented MP4 (a fragment per second: a
  keyframe each second, every packet flushed to the file): the file is playable up to its last
  whole fragment at any moment, so a process killed mid-stream leaves what it had encoded
  (realtime recordings, videogen/realtime/recording.py). ``finish()`` still returns a plain
  faststart MP4. :func:`playable_copy` turns such a file, cut anywhere, into one.
- Not thread safe: one writer per producer. ``close()`` (or leaving a ``with`` block without
  ``finish()``) discards it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from fractions import Fraction
from typing import Any

import av
import numpy as np

from videogen.gallery import media

DEFAULT_FPS = 16
# Encoder names, in order of preference: H.264 plays everywhere; mpeg4 is the last resort.
CODECS = ("libx264", "h264", "libopenh264", "mpeg4")


def available_codec(preferred: tuple[str, ...] = CODECS) -> str:
    """The first encoder of ``preferred`` this PyAV build can use; ``RuntimeError`` if none."""
    have = av.codecs_available
    for name in preferred:
        if name in have:
            try:
                av.codec.Codec(name, "w")
            except (av.FFmpegError, ValueError):  # listed, but only as a decoder
                continue
            return name
    raise RuntimeError(f"this PyAV build has none of the video encoders {', '.join(preferred)}")


class Mp4Writer:
    """An incremental MP4 encoder: ``add(frames)`` any number of times, then ``finish()``."""

    def __init__(self, width: int | None = None, height: int | None = None, fps: int = DEFAULT_FPS, *,
                 codec: str | None = None, crf: int = 20, metadata: dict[str, Any] | None = None,
                 path: str | os.PathLike | None = None, fragmented: bool = False) -> None:
        if not isinstance(fps, int) or not 1 <= fps <= 240:
            raise ValueError(f"fps must be an integer between 1 and 240, got {fps!r}")
        self.fps = fps
        self.codec = codec or available_codec()
        self.crf = crf
        self.metadata = metadata
        self.path = os.fspath(path) if path is not None else None
        self.fragmented = fragmented
        self.width = self.height = None
        if width is not None or height is not None:
            if not width or not height or width < 2 or height < 2:
                raise ValueError(f"width and height must both be at least 2, got {width}x{height}")
            self.width, self.height = width - width % 2, height - height % 2
        self.frames = 0
        self._source_size: tuple[int, int] | None = None
        self._target: str | None = None  # the file being written (``path`` or a temporary one)
        self._container = None
        self._stream = None
        self._done = False

    # ---- state
    @property
    def duration_s(self) -> float:
        """Seconds of video added so far."""
        return self.frames / self.fps

    def _open(self, width: int, height: int) -> None:
        if self.width is None:
            self.width, self.height = width - width % 2, height - height % 2
        if self.width < 2 or self.height < 2:
            raise ValueError(f"frames must be at least 2x2 pixels, got {width}x{height}")
        if self.path:
            self._target = self.path
        else:  # faststart rewrites the file at the end, which PyAV cannot do in memory
            handle, self._target = tempfile.mkstemp(prefix="studio-", suffix=".mp4")
            os.close(handle)
        # A fragmented file is written as it goes (faststart would rewrite it at the end).
        options = {"movflags": "+frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"} \
            if self.fragmented else {"movflags": "+faststart"}
        self._container = av.open(self._target, "w", format="mp4", options=options)
        self._written_metadata = self.metadata
        if self.metadata is not None:  # before the header is written (the first packet)
            self._container.metadata["comment"] = media.comment(self.metadata)
        stream = self._container.add_stream(self.codec, rate=Fraction(self.fps, 1))
        stream.width, stream.height = self.width, self.height
        stream.pix_fmt = "yuv420p"
        # The muxer may change the stream's time base when it writes the header; frames keep 1/fps.
        self._frame_time_base = Fraction(1, self.fps)
        stream.time_base = self._frame_time_base
        if self.fragmented:  # a keyframe, so a fragment, every second
            stream.codec_context.gop_size = self.fps
        if self.codec in ("libx264", "h264"):
            stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        elif self.codec == "mpeg4":
            stream.bit_rate = 4_000_000
        self._stream = stream

    # ---- writing
    def add(self, frames: np.ndarray) -> None:
        """Encode ``frames``: uint8 RGB ``[n, H, W, 3]`` or one ``[H, W, 3]`` frame."""
        if self._done:
            raise RuntimeError("this Mp4Writer is finished or closed")
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [n, H, W, 3] RGB, got shape {list(frames.shape)}")
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        if not len(frames):
            return
        height, width = frames.shape[1:3]
        if self._container is None:
            self._open(width, height)
            self._source_size = (width, height)
        elif (width, height) != self._source_size:
            raise ValueError(f"every frame must be {self._source_size[0]}x{self._source_size[1]} "
                             f"(the first frame's size), got {width}x{height}")
        frames = frames[:, :self.height, :self.width]
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = self.frames
            video_frame.time_base = self._frame_time_base
            self._container.mux(self._stream.encode(video_frame))
            self.frames += 1

    def finish(self, metadata: dict[str, Any] | None = None) -> bytes:
        """Flush the encoder and close the file; returns the MP4's bytes (also when ``path`` is set).

        ``metadata`` replaces the constructor's (the ``comment`` tag is written now, in the
        MP4's index)."""
        if self._done:
            raise RuntimeError("this Mp4Writer is finished or closed")
        if self._container is None:
            raise ValueError("no frames were added: an MP4 needs at least one")
        if metadata is not None:
            self.metadata = metadata
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            if self.fragmented:  # a plain MP4 for the gallery, the index in front
                return playable_copy(self._target, self.metadata)[0]
            if self.metadata != self._written_metadata:
                media.remux_with_comment(self._target, media.comment(self.metadata))
            with open(self._target, "rb") as handle:
                return handle.read()
        finally:
            self._done = True
            self._remove_temporary()

    def close(self) -> None:
        """Discard an unfinished writer (a ``path`` file is left as far as it got)."""
        if not self._done and self._container is not None:
            with contextlib.suppress(av.FFmpegError, ValueError, OSError):
                self._container.close()
        self._done = True
        self._remove_temporary()

    def _remove_temporary(self) -> None:
        if self._target and not self.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._target)
            self._target = None

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _readable_packets(path: str) -> tuple[int, int]:
    """(packets that demux, index of the last keyframe among them) of the video at ``path``."""
    count, last_key = 0, 0
    with av.open(path) as source:
        try:
            for packet in source.demux(source.streams.video[0]):
                if packet.dts is None or packet.size == 0:
                    continue
                if packet.is_keyframe:
                    last_key = count
                count += 1
        except (av.FFmpegError, EOFError):
            pass
    return count, last_key


def playable_copy(path: str | os.PathLike, metadata: dict[str, Any] | None = None, *,
                  check: bool = False) -> tuple[bytes | None, int]:
    """A plain faststart MP4 of the MP4 at ``path`` (streams copied, not re-encoded) and its
    frame count. A file cut short (a fragmented recording whose writer died) gives the frames
    before the cut; ``check=True`` also decodes its last fragment (from its last keyframe) and
    stops at the first packet that does not decode (a fragment torn in the middle: the cut can
    only be at the end). ``(None, 0)`` when not one frame can be read."""
    path = os.fspath(path)
    try:
        count, check_from = _readable_packets(path)
        source = av.open(path)
    except (av.FFmpegError, OSError, IndexError):
        return None, 0
    handle, staged = tempfile.mkstemp(prefix="studio-copy-", suffix=".mp4")
    os.close(handle)
    frames = 0
    try:
        with source:
            video = source.streams.video[0]
            with av.open(staged, "w", format="mp4", options={"movflags": "+faststart"}) as target:
                if metadata is not None:
                    target.metadata["comment"] = media.comment(metadata)
                stream = target.add_stream_from_template(video)
                decoder = None
                if check:
                    decoder = av.CodecContext.create(video.codec_context.name, "r")
                    decoder.extradata = video.codec_context.extradata
                try:
                    for packet in source.demux(video):
                        if packet.dts is None or packet.size == 0:
                            continue
                        if decoder is not None and frames >= check_from:
                            decoder.decode(packet)
                        packet.stream = stream
                        target.mux(packet)
                        frames += 1
                        if frames == count:
                            break
                except (av.FFmpegError, EOFError):  # the cut: keep what came before it
                    pass
        if not frames:
            return None, 0
        with open(staged, "rb") as copied:
            return copied.read(), frames
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)


def encode_mp4(frames: np.ndarray, fps: int = DEFAULT_FPS, metadata: dict[str, Any] | None = None) -> bytes:
    """All ``frames`` (uint8 ``[n, H, W, 3]``) as one MP4 in memory."""
    writer = Mp4Writer(fps=fps, metadata=metadata)
    writer.add(frames)
    return writer.finish()
