"""Offline video to video through videogen.local.offline: an input video (frames, or an MP4's
bytes read at 16 fps) bounds the blocks and shapes the frames; the MP4 says so."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support.media import mp4_of
from videogen.local import offline
from videogen.local.offline import OfflineError, OfflineRequest

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def session():
    from videogen.pipeline import build_tiny_pipeline

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield build_tiny_pipeline("cpu")
    torch.set_num_threads(previous)


def _video(n: int, seed: int = 0, h: int = 64, w: int = 64) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, h, w, 3)) * 255).astype(np.uint8)


def test_frames_per_block_follow_the_config(session):
    cfg = session.config
    assert offline.frames_per_block(cfg) == (6, 12) and offline.input_frames_per_block(cfg) == (9, 12)
    assert [offline.blocks_of_video(n, cfg) for n in (8, 9, 20, 21, 33)] == [0, 1, 1, 2, 3]


def test_an_input_video_bounds_the_blocks_and_shapes_the_frames(session):
    video = _video(9 + 12 + 3)
    p = offline.plan(OfflineRequest(prompt="a city", input_video=video, width=64, height=64), session.config)
    assert (p.blocks, p.num_frames, p.strength) == (2, 18, 0.8)
    assert p.parameters()["input_video_frames"] == 24 and p.parameters()["strength"] == 0.8
    seen, other_seen = [], []
    result = offline.generate(session, p, on_block=lambda done, total, block: seen.append(block.latents))
    assert result.frames == 18 and result.blocks == 2 and result.content
    reverse = offline.plan(OfflineRequest(prompt="a city", input_video=video[::-1].copy(), width=64, height=64),
                           session.config)
    offline.generate(session, reverse, on_block=lambda done, total, block: other_seen.append(block.latents))
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(seen, other_seen, strict=True))
    with pytest.raises(OfflineError, match="blocks must be from 1 to 2"):
        offline.plan(OfflineRequest(prompt="a", input_video=video, blocks=3, width=64, height=64), session.config)
    with pytest.raises(OfflineError, match="at least 9 frames"):
        offline.plan(OfflineRequest(prompt="a", input_video=video[:5], width=64, height=64), session.config)
    with pytest.raises(OfflineError, match="strength goes with an input video"):
        offline.plan(OfflineRequest(prompt="a", strength=0.5), session.config)


def test_an_mp4_is_read_at_16_fps():
    frames = _video(32, h=48, w=64)
    read = offline.read_video(mp4_of(frames, fps=32))  # one second at 32 fps
    assert read.shape[0] in (16, 17) and read.shape[1:] == (48, 64, 3)
    with pytest.raises(OfflineError, match="cannot be read"):
        offline.read_video(b"not a video")


def test_a_file_is_read_in_bounded_memory_at_the_output_size():
    frames = _video(48, h=96, w=128)  # 3 s at 16 fps, 4:3
    read = offline.read_video(mp4_of(frames, fps=16), size=(64, 32), max_frames=21)
    assert read.shape == (21, 32, 64, 3) and read.dtype == np.uint8  # cut at 21, centre-cropped to 2:1
    whole = offline.read_video(mp4_of(frames, fps=16))
    assert whole.shape == (48, 96, 128, 3)
    from videogen.pipeline.video_in import to_pixels

    # The pipeline's own resize of the full frame, kept as uint8: rounded, bicubic's overshoot clipped.
    expected = to_pixels(whole[5], 64, 32).add(1).mul(127.5).clamp(0, 255)
    assert (torch.from_numpy(read[5]).permute(2, 0, 1).float() - expected).abs().max() <= 0.51
