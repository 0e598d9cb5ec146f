"""videogen.gallery.mp4: frames -> a playable MP4, incrementally (no database)."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from videogen.gallery import media
from videogen.gallery.mp4 import CODECS, Mp4Writer, available_codec, encode_mp4


def gradient(n: int, width: int = 64, height: int = 48) -> np.ndarray:
    """Smooth moving colour ramps (compress well, so decoded pixels stay close)."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        frames[i, ..., 0] = (x * 255 // max(width - 1, 1) + 4 * i) % 256
        frames[i, ..., 1] = y * 255 // max(height - 1, 1)
        frames[i, ..., 2] = 128
    return frames


def decode(content: bytes) -> tuple[list[np.ndarray], av.video.stream.VideoStream, dict]:
    with av.open(io.BytesIO(content)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, stream, dict(codec=stream.codec_context.name, pix_fmt=stream.codec_context.pix_fmt,
                                    rate=stream.average_rate, duration=container.duration / av.time_base)


def test_blocks_added_one_by_one_make_one_playable_h264_mp4_at_16_fps(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    source = gradient(33)
    writer = Mp4Writer(metadata={"prompt": "a fox", "seed": 3})
    for part in (source[:9], source[9:21], source[21:]):  # a stream's first block is 9 frames, then 12
        writer.add(part)
    assert writer.frames == 33 and writer.duration_s == pytest.approx(33 / 16)
    assert len(list(tmp_path.iterdir())) == 1  # encoded as it came, into a temporary file
    content = writer.finish()
    assert content[4:8] == b"ftyp" and list(tmp_path.iterdir()) == []
    assert content.index(b"moov") < content.index(b"mdat")  # faststart: playable while downloading
    frames, stream, facts = decode(content)
    assert len(frames) == 33 and frames[0].shape == (48, 64, 3)
    assert facts["codec"] == "h264" and facts["pix_fmt"] == "yuv420p" and facts["rate"] == 16
    assert facts["duration"] == pytest.approx(33 / 16, abs=0.07)
    assert np.abs(frames[20].astype(int) - source[20].astype(int)).mean() < 6  # the same picture, lossy
    assert media.read_metadata(content) == {"prompt": "a fox", "seed": 3}
    assert media.probe(content).thumbnail_jpeg[:3] == b"\xff\xd8\xff"


def test_odd_sizes_are_cropped_to_even_and_a_single_frame_is_accepted():
    writer = Mp4Writer()
    writer.add(gradient(1, 65, 49)[0])  # [H, W, 3]
    writer.add(gradient(2, 65, 49))
    frames, _, _ = decode(writer.finish())
    assert len(frames) == 3 and frames[0].shape == (48, 64, 3)


def test_a_path_gets_the_same_file(tmp_path):
    out = tmp_path / "clip.mp4"
    writer = Mp4Writer(path=out, fps=8, metadata={"replaced": True})
    writer.add(gradient(30))
    content = writer.finish(metadata={"timeline": {"prompts": [{"startTime": 0, "endTime": 1}]}})
    assert out.read_bytes() == content
    assert decode(content)[2]["rate"] == 8
    assert media.read_metadata(content) == {"timeline": {"prompts": [{"startTime": 0, "endTime": 1}]}}
    assert len(decode(content)[0]) == 30 and content.index(b"moov") < content.index(b"mdat")
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no staging file left


def test_metadata_given_at_the_end_of_a_long_recording_is_kept():
    writer = Mp4Writer(metadata={"first": 1})
    for _ in range(5):
        writer.add(gradient(12))  # packets are muxed (the header written) long before the end
    content = writer.finish(metadata={"timeline": "final"})
    assert media.read_metadata(content) == {"timeline": "final"}
    assert len(decode(content)[0]) == 60


def test_bad_input_is_refused_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    discarded = Mp4Writer()
    discarded.add(gradient(2))
    discarded.close()
    assert list(tmp_path.iterdir()) == []
    writer = Mp4Writer()
    with pytest.raises(ValueError, match="no frames"):
        writer.finish()
    with pytest.raises(ValueError, match="uint8"):
        writer.add(gradient(2).astype(np.float32))
    with pytest.raises(ValueError, match=r"\[n, H, W, 3\]"):
        writer.add(np.zeros((2, 48, 64), np.uint8))
    writer.add(gradient(2))
    with pytest.raises(ValueError, match="64x48"):
        writer.add(gradient(2, 32, 32))
    writer.finish()
    with pytest.raises(RuntimeError, match="finished"):
        writer.add(gradient(1))
    with pytest.raises(ValueError, match="fps"):
        Mp4Writer(fps=0)


def test_codec_choice_follows_what_pyav_has():
    assert available_codec() in CODECS
    with pytest.raises(RuntimeError, match="none of the video encoders"):
        available_codec(("no-such-encoder",))
    content = encode_mp4(gradient(4), fps=16)
    assert len(decode(content)[0]) == 4


def top_level_boxes(content: bytes) -> list[str]:
    """The MP4's top-level box types, in file order (ISO BMFF: 32-bit size, 4-char type)."""
    boxes, offset = [], 0
    while offset + 8 <= len(content):
        size = int.from_bytes(content[offset:offset + 4], "big")
        kind = content[offset + 4:offset + 8].decode("latin-1")
        if size == 1:  # a 64-bit size follows the type
            size = int.from_bytes(content[offset + 8:offset + 16], "big")
        elif size == 0:  # the box runs to the end of the file
            size = len(content) - offset
        assert size >= 8, f"a malformed box {kind!r} at {offset}"
        boxes.append(kind)
        offset += size
    assert offset == len(content)
    return boxes


def test_a_stored_video_keeps_faststart_with_its_metadata_tag():
    # storage.save_video stores media.with_metadata(content, parameters): the re-mux that writes
    # the tag must keep the index (moov) in front of the media data (mdat).
    content = encode_mp4(gradient(20), metadata={"first": 1})
    assert top_level_boxes(content).index("moov") < top_level_boxes(content).index("mdat")
    stored = media.with_metadata(content, {"prompt": "a fox", "seed": 7})
    boxes = top_level_boxes(stored)
    assert boxes[0] == "ftyp" and "moov" in boxes and "mdat" in boxes
    assert boxes.index("moov") < boxes.index("mdat"), boxes
    assert media.read_metadata(stored) == {"prompt": "a fox", "seed": 7}
    assert len(decode(stored)[0]) == 20
