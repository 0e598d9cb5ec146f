"""The self-attention KV cache of the causal DiT: preallocated, one K and one V buffer per layer.

Frames sit in the buffers oldest first; the block being run is written right after the cached
frames, so attention reads one contiguous slice and nothing grows with ``torch.cat``. Keys are
stored after RoPE. Krea's scheme rebuilds the whole cache before every block
(:meth:`~.dit.CausalWanDiT.recompute_cache`); Self-Forcing's rolls it (:meth:`KVCache.commit`).
"""

from __future__ import annotations

import torch

__all__ = ["KVCache"]



class KVCache:
    """Preallocated rolling self-attention cache for every layer.

    ``k``/``v``: ``[layers, B, (capacity + block) * tokens_per_frame, H, D]``. The first
    ``cached_frames`` frames are the cache (oldest first); the block being run is written
    right after them. ``start_frame`` is the absolute index of the oldest cached frame."""

    def __init__(self, num_layers: int, batch: int, capacity_frames: int, block_frames: int,
                 tokens_per_frame: int, num_heads: int, head_dim: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.capacity_frames = capacity_frames
        self.block_frames = block_frames
        self.tokens_per_frame = tokens_per_frame
        tokens = (capacity_frames + block_frames) * tokens_per_frame
        shape = (num_layers, batch, tokens, num_heads, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.cached_frames = 0
        self.start_frame = 0

    @property
    def end_frame(self) -> int:
        """Absolute index of the frame that comes after the cache."""
        return self.start_frame + self.cached_frames

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

    def reset(self) -> None:
        self.cached_frames = 0
        self.start_frame = 0

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Put the running block's K/V after the cache; returns (keys, values, cached tokens)."""
        n = self.cached_frames * self.tokens_per_frame
        end = n + k.shape[1]
        if end > self.k.shape[2]:
            raise ValueError("block larger than the cache was sized for")
        self.k[layer, :, n:end].copy_(k)
        self.v[layer, :, n:end].copy_(v)
        return self.k[layer, :, :end], self.v[layer, :, :end], n

    def commit(self, frames: int) -> None:
        """Keep the block written by the last pass; drop the oldest frames beyond capacity."""
        total = self.cached_frames + frames
        drop = max(0, total - self.capacity_frames)
        if drop:
            keep = total - drop
            t = self.tokens_per_frame
            if keep:
                src = slice(drop * t, (drop + keep) * t)
                self.k[:, :, : keep * t].copy_(self.k[:, :, src].clone())
                self.v[:, :, : keep * t].copy_(self.v[:, :, src].clone())
            self.start_frame += drop
        self.cached_frames = total - drop


