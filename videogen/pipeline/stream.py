"""How a block is made, for each cache scheme (no Django; the session calls these).

Krea's release (``cache_mode="krea"``, ``release_server.py``), per block ``k`` of a stream
(``frame``: latent frames so far, a resume's included):

1. Context. Block 0 of a fresh stream has none. Otherwise the context is
   ``[anchor, last kv-1 latents]`` (the latents after the stream's first): the anchor is the
   stream's first latent while ``(k - 1) * 3 < kv_cache_num_frames`` (or ``keep_first_frame``),
   later the VAE **re-encode** of the oldest of the last ``1 + (kv - 1) * 4`` decoded pixel
   frames (``get_clean_context_frames``). The context runs once at t = 0 at positions
   0..n-1 under a block-causal mask with no bias, and its K/V are the whole cache
   (``recompute_kv_cache``). The prompt of that pass is the one the previous block ended
   with: Krea's cross-attention cache is reset only after the rebuild, when an interpolation
   moves on.
2. The block is denoised at positions n..n+2 (``n = min(frame, kv)``) in the schedule's steps
   against that cache; no pass follows it.
3. Its latents join the context buffer; its decoded frames the pixel buffer; the first block
   drops its first 3 decoded frames.

Self-Forcing (``cache_mode="rolling"``): absolute positions; after the steps the clean block
runs once more at t = 0 with ``commit=True``, rolling the cache (:func:`denoise_block`).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from .dit import CausalWanDiT, KVCache, TextContext
from .schedule import FlowSchedule

__all__ = ["KreaContext", "denoise_block", "denoise_steps"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def denoise_steps(dit: CausalWanDiT, cache: KVCache, context: TextContext, x: torch.Tensor,
                  schedule: FlowSchedule, generator: torch.Generator, start_frame: int,
                  kv_cache_attention_bias: float = 1.0, timings: dict[str, Any] | None = None) -> torch.Tensor:
    """The schedule's steps on the block input ``x`` against the cache; returns the clean latents.

    Each step predicts x0 (``x - sigma v``) and re-noises it to the next step's sigma with fresh
    noise from ``generator`` (a CPU generator: results do not depend on the device's RNG)."""
    device = x.device
    x0 = x
    steps_ms = []
    for i, t in enumerate(schedule.timesteps):
        t0 = time.perf_counter()
        flow = dit(x, t, context, cache, start_frame, kv_cache_attention_bias=kv_cache_attention_bias)
        fresh = None
        if i + 1 < len(schedule):
            fresh = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(device, x.dtype)
        x0, x = schedule.step(x, flow, i, fresh)
        _sync(device)
        steps_ms.append((time.perf_counter() - t0) * 1000)
    if timings is not None:
        timings["dit_steps"] = steps_ms
        timings["dit_step"] = sum(steps_ms) / len(steps_ms)
    return x0


@torch.no_grad()
def denoise_block(dit: CausalWanDiT, cache: KVCache, context: TextContext, noise: torch.Tensor,
                  schedule: FlowSchedule, generator: torch.Generator, start_frame: int,
                  kv_cache_attention_bias: float = 1.0, timings: dict[str, Any] | None = None) -> torch.Tensor:
    """The rolling scheme's block: the steps, then the clean block re-run at t = 0 (no bias) to
    write its K/V into the rolling cache (Self-Forcing's recomputation). Returns the latents."""
    x0 = denoise_steps(dit, cache, context, noise, schedule, generator, start_frame, kv_cache_attention_bias,
                       timings)
    t0 = time.perf_counter()
    dit(x0, 0.0, context, cache, start_frame, commit=True)
    _sync(noise.device)
    if timings is not None:
        timings["recompute"] = (time.perf_counter() - t0) * 1000
    return x0


@dataclass
class KreaContext:
    """The context buffer of one Krea stream (from its start or reset to the next).

    ``frame``: latent frames so far (Krea's ``current_start_frame``); ``block``: blocks made
    (``block_idx``); ``first``: the stream's first latent ``[B, 16, 1, h, w]``; ``recent``: the
    last ``kv - 1`` latents after it; ``pixels``: the last ``1 + (kv - 1) * 4`` decoded frames
    (each ``[B, 3, 1, H, W]``), whose oldest is re-encoded as the anchor."""

    kv_cache_num_frames: int = 3
    frames_per_block: int = 3
    temporal_factor: int = 4
    frame: int = 0
    block: int = 0
    first: torch.Tensor | None = None
    recent: torch.Tensor | None = None
    pixels: deque = field(default_factory=deque)
    last_anchor: torch.Tensor | None = None  # the anchor the last rebuild used

    def __post_init__(self) -> None:
        self.pixels = deque(maxlen=self.pixel_frames)

    @property
    def pixel_frames(self) -> int:
        """Decoded frames kept for the anchor re-encode: ``1 + (kv - 1) * 4`` (9)."""
        return 1 + (self.kv_cache_num_frames - 1) * self.temporal_factor

    def add_latents(self, latents: torch.Tensor) -> None:
        """Record clean latents ``[B, 16, n, h, w]`` (a block, or resume latents)."""
        self.frame += latents.shape[2]
        if self.first is None:
            self.first = latents[:, :, :1].clone()
            latents = latents[:, :, 1:]
        keep = self.kv_cache_num_frames - 1
        if keep > 0 and latents.shape[2]:
            joined = latents if self.recent is None else torch.cat([self.recent, latents], dim=2)
            self.recent = joined[:, :, -keep:].clone()

    def add_pixels(self, video: torch.Tensor) -> None:
        """Record a block's decoded frames ``[B, 3, n, H, W]`` (before the first block's drop).
        Views, not copies: nothing writes to a decoded block, and a view keeps at most the last
        block or two alive."""
        n = video.shape[2]
        for i in range(max(0, n - self.pixel_frames), n):
            self.pixels.append(video[:, :, i:i + 1])

    @property
    def start_position(self) -> int:
        """RoPE position of the next block: after the context (``min(frame, kv)``)."""
        return min(self.frame, self.kv_cache_num_frames)

    def uses_reencoded_anchor(self, keep_first_frame: bool = False) -> bool:
        """Krea's ``(block_idx - 1) * 3 >= kv_cache_num_frames`` (and not ``keep_first_frame``)."""
        return not keep_first_frame and (self.block - 1) * self.frames_per_block >= self.kv_cache_num_frames

    def context(self, encode_anchor, keep_first_frame: bool = False) -> torch.Tensor | None:
        """``[anchor, last kv-1 latents]`` for the next block's rebuild (``None``: a fresh
        stream's first block). ``encode_anchor(pixels [B, 3, 1, H, W])`` -> ``[B, 16, 1, h, w]``."""
        if self.frame == 0 or self.first is None:
            return None
        if self.uses_reencoded_anchor(keep_first_frame) and self.pixels:
            anchor = encode_anchor(self.pixels[0]).to(self.first.device, self.first.dtype)
        else:
            anchor = self.first
        self.last_anchor = anchor
        parts = [anchor] if self.recent is None or self.kv_cache_num_frames == 1 else [anchor, self.recent]
        return torch.cat(parts, dim=2)
