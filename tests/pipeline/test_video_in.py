"""Video into the session: the live input (Krea's webcam mode), start frames, input videos,
resuming from latents; the image conversion and the bounded input buffer."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
import torch

from videogen.pipeline.video_in import InputFrames, InputTimeout, resample_indices, to_pixels

from .fakes import HEIGHT, WIDTH, make_session, params

pytestmark = pytest.mark.timeout(120)


def _image(seed: int, h: int = HEIGHT, w: int = WIDTH) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def _jpeg(array: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", quality=95)
    return out.getvalue()


# ---- images


def test_images_of_every_kind_become_pixels_in_minus_one_to_one():
    array = _image(0)
    expected = torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(to_pixels(array, WIDTH, HEIGHT), expected)
    from PIL import Image

    torch.testing.assert_close(to_pixels(Image.fromarray(array), WIDTH, HEIGHT), expected)
    torch.testing.assert_close(to_pixels(expected, WIDTH, HEIGHT), expected)
    smooth = np.repeat(np.linspace(0, 255, WIDTH, dtype=np.uint8)[None, :, None], HEIGHT, 0).repeat(3, 2)
    decoded = to_pixels(_jpeg(smooth), WIDTH, HEIGHT)
    assert decoded.shape == (3, HEIGHT, WIDTH)
    assert (decoded - to_pixels(smooth, WIDTH, HEIGHT)).abs().mean() < 0.02
    with pytest.raises(ValueError):
        to_pixels(np.zeros((4, 4), np.uint8), WIDTH, HEIGHT)


def test_other_aspect_ratios_are_centre_cropped_then_resized():
    """As Krea's client does before it sends: a 4:3 webcam into a 2:1 stream loses its top and
    bottom, not its shape."""
    tall = np.zeros((120, 160, 3), np.uint8)
    tall[:20] = 255  # a white band at the top: cropped away
    tall[40:80, 60:100] = 255  # a square in the middle: kept, still square
    out = to_pixels(tall, 64, 32)
    assert out.shape == (3, 32, 64)
    assert out[:, :3].max() < -0.9  # the band is gone
    middle = (out[0] > 0).float()
    rows, cols = middle.any(1).sum().item(), middle.any(0).sum().item()
    assert abs(rows - 16) <= 2 and abs(cols - 16) <= 2


def test_resampling_is_kreas():
    assert resample_indices(12, 12) == list(range(12))
    assert resample_indices(24, 12) == [0, 2, 4, 6, 8, 10, 13, 15, 17, 19, 21, 23]
    assert resample_indices(3, 9) == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # numpy rounds half to even
    assert resample_indices(1, 12) == [0] * 12


# ---- the live input buffer


def test_a_fast_producer_loses_its_oldest_frames_and_never_waits():
    frames = InputFrames(8, 8, capacity=5)
    t0 = time.perf_counter()
    for i in range(20):
        frames.push(np.full((8, 8, 3), i * 10, np.uint8))
    assert time.perf_counter() - t0 < 1.0
    assert len(frames) == 5 and frames.dropped == 15 and frames.pushed == 20
    got = frames.take(5, timeout_s=1.0, stopped=lambda: False)
    assert got.shape == (3, 5, 8, 8)
    values = [round((v + 1) * 127.5) for v in got[0, :, 0, 0].tolist()]
    assert values == [150, 160, 170, 180, 190]  # the newest five


def test_take_waits_for_a_frame_from_another_thread():
    frames = InputFrames(8, 8)
    threading.Timer(0.2, lambda: frames.push(np.zeros((8, 8, 3), np.uint8))).start()
    t0 = time.perf_counter()
    got = frames.take(12, timeout_s=5.0, stopped=lambda: False)
    assert 0.1 < time.perf_counter() - t0 < 3.0 and got.shape == (3, 12, 8, 8)


def test_without_new_frames_the_last_one_is_held_and_without_any_it_times_out():
    frames = InputFrames(8, 8)
    with pytest.raises(InputTimeout):
        frames.take(9, timeout_s=0.1, stopped=lambda: False)
    frames.push(np.full((8, 8, 3), 255, np.uint8))
    frames.take(9, timeout_s=0.1, stopped=lambda: False)
    held = frames.take(12, timeout_s=0.1, stopped=lambda: False)
    assert held.shape == (3, 12, 8, 8) and torch.all(held == 1.0)
    assert frames.take(12, timeout_s=5.0, stopped=lambda: True) is None


# ---- the session: webcam mode


def _webcam(strength: float, seeds: list[int], blocks: int = 2, prompt_seed: int = 0):
    s = make_session()
    counts = []
    real = s.encoder.encode_block

    def spy(pixels):
        counts.append(pixels.shape[2])
        return real(pixels)

    s.encoder.encode_block = spy
    stream = s.start(params(num_blocks=blocks, seed=prompt_seed, video_input=True, strength=strength))
    out = []
    for b in range(blocks):
        for seed in seeds:
            s.push_frame(_image(seed + 100 * b))
        out.append(next(stream))
    return s, out, counts


def test_webcam_frames_shape_the_video_and_are_encoded_9_then_12():
    _, a, counts = _webcam(0.6, [1, 2, 3])
    _, b, _ = _webcam(0.6, [4, 5, 6])
    assert counts == [9, 12]  # resampled from the 3 frames that arrived
    assert [blk.frames.shape[0] for blk in a] == [6, 12]
    assert not np.array_equal(a[0].frames, b[0].frames) and not np.array_equal(a[1].frames, b[1].frames)
    _, again, _ = _webcam(0.6, [1, 2, 3])
    assert torch.equal(again[1].latents, a[1].latents)


def test_full_strength_ignores_the_input_as_krea_does():
    _, webcam, _ = _webcam(1.0, [1, 2, 3])
    text = list(make_session().start(params(num_blocks=2)))
    for w, t in zip(webcam, text, strict=True):
        assert torch.equal(w.latents, t.latents)
        # the decode is the same math; oneDNN may sum in another order (+-1 after rounding)
        assert np.abs(w.frames.astype(int) - t.frames.astype(int)).max() <= 1


def test_strength_from_an_image_message_applies_from_the_next_block():
    s = make_session()
    stream = s.start(params(num_blocks=2, video_input=True, strength=0.9))
    s.push_frame(_image(1))
    next(stream)
    first = s.schedule.timesteps[0]
    s.push_frame(_image(2), strength=0.5)
    next(stream)
    assert s.strength == 0.5 and s.schedule.timesteps[0] < first


def test_a_producer_thread_faster_than_the_blocks_never_stalls_the_stream():
    s = make_session()
    stream = s.start(params(num_blocks=3, video_input=True, strength=0.7))
    done = threading.Event()

    def produce():
        i = 0
        while not done.is_set():
            s.push_frame(_image(i % 7))
            i += 1

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        blocks = list(stream)
    finally:
        done.set()
        thread.join(5)
    assert [b.frames.shape[0] for b in blocks] == [6, 12, 12]
    assert s._input.dropped > 0


def test_stop_while_waiting_for_input_ends_the_stream():
    s = make_session()
    stream = s.start(params(video_input=True))
    threading.Timer(0.3, s.stop).start()
    assert list(stream) == [] and not s.running


def test_push_frame_needs_a_video_input_stream():
    s = make_session()
    s.start(params(num_blocks=1))
    with pytest.raises(RuntimeError, match="video_input"):
        s.push_frame(_image(0))


# ---- start frame, input video, resume


def test_the_start_frame_seeds_the_stream():
    a = next(make_session().start(params(num_blocks=1, start_frame=_image(1))))
    b = next(make_session().start(params(num_blocks=1, start_frame=_jpeg(_image(2)))))
    plain = next(make_session().start(params(num_blocks=1)))
    assert a.start_frame == 3  # after the start frame's 3 latent frames
    assert not np.array_equal(a.frames, b.frames) and not np.array_equal(a.frames, plain.frames)


def test_an_input_video_is_restyled_block_by_block_until_it_ends():
    video = np.stack([_image(i) for i in range(9 + 12 + 5)])  # 2 blocks' worth and a bit
    s = make_session()
    blocks = list(s.start(params(input_video=video, strength=0.6)))
    assert [b.frames.shape[0] for b in blocks] == [6, 12]
    other = list(make_session().start(params(input_video=video[::-1].copy(), strength=0.6)))
    assert not np.array_equal(blocks[1].frames, other[1].frames)
    full = list(make_session().start(params(input_video=video, strength=1.0)))
    text = list(make_session().start(params(num_blocks=2)))
    assert torch.equal(full[1].latents, text[1].latents)  # strength 1: the input is all noise


def test_resume_latents_continue_a_stream():
    a = make_session()
    first = list(a.start(params(num_blocks=4, seed=3)))
    resume = a.resume_latents()
    assert resume.shape == (1, 16, 3, HEIGHT // 8, WIDTH // 8) and resume.device.type == "cpu"
    torch.testing.assert_close(resume[:, :, 1:], first[-1].latents[:, :, 1:])  # the latest latents
    b = make_session()
    rebuilt = []
    real = b.dit.recompute_cache
    b.dit.recompute_cache = lambda clean, *rest: (rebuilt.append(clean.clone()), real(clean, *rest))[1]
    cont = list(b.start(params(num_blocks=2, seed=4, resume_latents=resume.numpy())))
    torch.testing.assert_close(rebuilt[0], resume)  # the next block rebuilt from exactly these
    assert [blk.start_frame for blk in cont] == [3, 6]
    c = list(make_session().start(params(num_blocks=1, seed=4, resume_latents=resume * 0.5)))
    assert not np.array_equal(cont[0].frames, c[0].frames)
    with pytest.raises(ValueError, match="resume_latents"):
        make_session().start(params(resume_latents=torch.zeros(1, 16, 3, 2, 2)))
