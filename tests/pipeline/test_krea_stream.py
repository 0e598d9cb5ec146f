"""Krea's stream (cache_mode="krea") against a re-implementation of Krea's per-block procedure
written from release_server.py here: no KV cache, one masked full-attention pass per step over
[context; block], the schedule from Krea's formula, the anchor re-encode, the first-block drop.

6 blocks, so the anchor re-encode (from block 2, ``(block - 1) * 3 >= kv_cache_num_frames``) runs
four times; fp32, tiny random weights shared by both sides.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from videogen.pipeline.vae import StreamingVAEDecoder

from .fakes import HEIGHT, WIDTH, make_session, params

pytestmark = pytest.mark.timeout(120)

BLOCKS = 6
FPB = 3  # latent frames per block (num_frame_per_block)


def krea_schedule(steps: int, strength: float = 1.0, shift: float = 5.0) -> tuple[list[float], list[float]]:
    """Krea's get_denoising_schedule over FlowMatchScheduler(shift, sigma_min=0,
    extra_one_step=True) timesteps padded with 0, and the wrapper's nearest-timestep sigma."""
    sigmas = np.linspace(1.0, 0.0, 1001, dtype=np.float32)[:-1]
    sigmas = (shift * sigmas / (1 + (shift - 1) * sigmas)).astype(np.float32)
    timesteps = (sigmas * 1000).astype(np.float32)
    table = np.concatenate([timesteps, np.zeros(1, np.float32)])
    chosen = table[1000 - np.linspace(strength * 1000, 0, steps, dtype=np.float32).astype(np.int64)]
    return [float(t) for t in chosen], [float(sigmas[np.argmin(np.abs(timesteps - t))]) for t in chosen]


def krea_reference(session, prompt: str, seed: int, steps: int, bias: float = 1.0,
                   resume: torch.Tensor | None = None, kv: int = 3) -> list[tuple[torch.Tensor, np.ndarray]]:
    """(latents, uint8 frames) of each block, as GenerationSession.generate_block_internal makes
    them: recompute_kv_cache + get_clean_context_frames, the denoising loop, the decode."""
    dit = session.dit
    text = dit.prepare_context(session.text_encoder.encode([prompt]).float())
    decoder = StreamingVAEDecoder(session.vae.decoder)  # the same weights, a fresh stream
    encoder = session.encoder.encoder
    rnd = torch.Generator().manual_seed(seed)
    timesteps, sigmas = krea_schedule(steps)
    all_latents = resume.clone() if resume is not None else None
    frame_context_cache: deque = deque(maxlen=1 + (kv - 1) * 4)
    out = []
    for block_idx in range(BLOCKS):
        current_start_frame = 0 if all_latents is None else all_latents.shape[2]
        noise = torch.randn(1, 16, FPB, *session.config.latent_size(WIDTH, HEIGHT), generator=rnd)
        if current_start_frame == 0:
            context = None
        else:  # get_clean_context_frames
            clean = all_latents[:, :, :current_start_frame]
            if (block_idx - 1) * FPB < kv:
                context = torch.cat([clean[:, :, :1], clean[:, :, 1:][:, :, -(kv - 1):]], dim=2)
            else:
                anchor = encoder.encode(frame_context_cache[0])  # re-encoded alone: a fresh cache
                context = torch.cat([anchor, clean[:, :, 1:][:, :, -(kv - 1):]], dim=2)
        c = 0 if context is None else context.shape[2]
        assert c == min(current_start_frame, kv)  # model_input_start_frame
        # frame-level masks of one pass over [context; block]: the context block-causal among
        # itself (as recompute_kv_cache's block mask, blocks of 3 from frame 0), the block
        # seeing the context and itself; positions 0..c-1 then c..c+2
        n = c + FPB
        frame_block = torch.arange(c) // FPB
        allowed = torch.zeros(n, n, dtype=torch.bool)
        allowed[:c, :c] = frame_block[None, :] <= frame_block[:, None]
        allowed[c:, :] = True
        weight = torch.ones(n, n)
        weight[c:, 1:c] = bias  # Scope's bias: the steps only, the context's first frame exempt
        positions = torch.arange(n)
        x = noise
        for index, t in enumerate(timesteps):
            seq = x if context is None else torch.cat([context, x], dim=2)
            ts = torch.tensor([[0.0] * c + [t] * FPB])
            with torch.no_grad():
                flow = dit.forward_masked(seq, ts, text, positions, allowed, weight)[:, :, c:]
            x0 = x - sigmas[index] * flow
            if index + 1 < len(timesteps):
                fresh = torch.randn(x.shape, generator=rnd)
                x = (1 - sigmas[index + 1]) * x0 + sigmas[index + 1] * fresh
        latents = x0
        all_latents = latents if all_latents is None else torch.cat([all_latents, latents], dim=2)
        pixels = decoder.decode_block(latents)
        frame_context_cache.extend(pixels[:, :, i:i + 1] for i in range(pixels.shape[2]))
        if block_idx == 0:
            pixels = pixels[:, :, 3:]  # skip the first 3 frames of the first block
        frames = ((pixels[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
        out.append((latents, frames))
    return out


def _compare(blocks, reference) -> float:
    worst = 0.0
    for i, (block, (latents, frames)) in enumerate(zip(blocks, reference, strict=True)):
        diff = (block.latents.float() - latents).abs().max().item()
        worst = max(worst, diff)
        assert diff < 1e-4, f"block {i}: latents differ by {diff:.2e}"
        assert block.frames.shape == frames.shape, f"block {i}"
        assert np.abs(block.frames.astype(int) - frames.astype(int)).max() <= 1, f"block {i}: frames differ"
    return worst


@pytest.mark.parametrize("bias", [1.0, 0.3])
def test_krea_stream_equals_the_release_procedure(bias):
    s = make_session()
    blocks = list(s.start(params(num_blocks=BLOCKS, seed=7, kv_cache_attention_bias=bias)))
    assert [b.frames.shape[0] for b in blocks] == [6, 12, 12, 12, 12, 12]
    reference = krea_reference(s, "a red fox in the snow", seed=7, steps=4, bias=bias)
    worst = _compare(blocks, reference)
    print(f"\nKrea stream vs the release procedure, bias {bias}: max latent difference {worst:.2e}")


def test_krea_stream_with_a_start_frame_equals_the_release_procedure():
    """setup_start_frame: the image 9 times, encoded, as resume latents; block 0 then rebuilds
    its cache from them and runs at positions 3..5."""
    s = make_session()
    image = (np.random.default_rng(3).random((HEIGHT, WIDTH, 3)) * 255).astype(np.uint8)
    blocks = list(s.start(params(num_blocks=BLOCKS, seed=2, start_frame=image, num_denoising_steps=3)))
    pixels = torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1
    resume = s.encoder.encoder.encode(pixels[None, :, None].expand(-1, -1, 9, -1, -1))
    assert resume.shape[2] == 3
    _compare(blocks, krea_reference(s, "a red fox in the snow", seed=2, steps=3, resume=resume))


def test_the_rolling_scheme_is_kept_as_a_setting():
    """cache_mode="rolling": Self-Forcing's rolling cache and warped schedule, the same frame
    counts; a different stream from Krea's."""
    krea = list(make_session().start(params(num_blocks=3, seed=7)))
    s = make_session()
    rolling = list(s.start(params(num_blocks=3, seed=7, cache_mode="rolling")))
    assert s.schedule.timesteps == pytest.approx([1000, 937.5, 833.333, 625], abs=1e-3)
    assert [b.frames.shape[0] for b in rolling] == [6, 12, 12]
    assert s.cache.cached_frames == 3  # the window, rolled by the t = 0 commits
    assert (krea[2].latents - rolling[2].latents).abs().max() > 1e-3
