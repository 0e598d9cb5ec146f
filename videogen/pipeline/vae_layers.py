"""Layers the Wan 2.1 VAE's encoder and decoder share, and their streaming cache (no Django).

As in Wan-Video/Wan2.1 ``wan/modules/vae.py``: every 3D convolution is causal in time
(:class:`CausalConv3d`, padded on the past side only), norms are ``RMS_norm``, the middle of
each half has one single-head per-frame :class:`AttentionBlock`. Module names mirror Wan's so
its checkpoint keys load unchanged.

Streaming. Wan runs its VAE a chunk at a time and keeps, for every causal conv, the last
``CACHE_T = 2`` frames of that conv's input (``feat_cache``). Here that cache is a
:class:`ConvCache` (one slot per causal conv, visited in the same order every pass). A causal
conv over ``cat(cache, chunk)`` is exactly the conv over the whole sequence, so a chunk of any
length gives the frames the one-shot pass would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "CACHE_T",
    "AttentionBlock",
    "CausalConv3d",
    "ConvCache",
    "RMS_norm",
    "ResidualBlock",
    "Upsample",
    "cached_conv",
    "last_frames",
]

CACHE_T = 2


@dataclass
class ConvCache:
    """Streaming state of one VAE half: the last ``CACHE_T`` input frames of each causal conv.

    ``feats[i]`` is the cached input of causal-conv slot ``i`` (``None``: no history yet, the
    conv pads with zeros); ``started`` whether the stream's first frame has been through (Wan
    treats that frame apart: no temporal up/down-sampling).
    """

    feats: list[torch.Tensor | None] = field(default_factory=list)
    started: bool = False
    _idx: int = 0

    def reset(self) -> None:
        self.feats.clear()
        self.started = False
        self._idx = 0

    def begin(self) -> None:
        self._idx = 0

    def next_slot(self) -> int:
        idx = self._idx
        self._idx += 1
        if idx == len(self.feats):
            self.feats.append(None)
        return idx

    def nbytes(self) -> int:
        """Bytes held by the cached frames."""
        return sum(t.numel() * t.element_size() for t in self.feats if t is not None)


class CausalConv3d(nn.Conv3d):
    """A Conv3d padded only on the past side of time (Wan's ``CausalConv3d``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._padding = (
            self.padding[2], self.padding[2], self.padding[1], self.padding[1],
            2 * self.padding[0], 0,
        )  # fmt: skip
        self.padding = (0, 0, 0)

    def forward(self, x: torch.Tensor, cache_x: torch.Tensor | None = None) -> torch.Tensor:
        # Same result as Wan's cat(cache) + F.pad(causal) + conv, with one copy instead of three:
        # only time is padded by hand (history, then zeros); space is padded by the conv.
        t_pad = self._padding[4]
        padding = (0, self._padding[2], self._padding[0])
        if t_pad > 0 and cache_x is None and x.shape[2] == 1 and t_pad == self.kernel_size[0] - 1:
            # One frame with no history (a stream's first frame, the anchor re-encode): the
            # zero frames add nothing, so only the kernel's last time tap is run (3x less work).
            return self._conv(x, self.weight[:, :, -1:], padding)
        if t_pad > 0:
            parts = [x]
            if cache_x is not None:
                parts.insert(0, cache_x.to(x.device, x.dtype))
                t_pad = max(t_pad - cache_x.shape[2], 0)
            if t_pad > 0:
                zeros = x.new_zeros(x.shape[0], x.shape[1], t_pad, x.shape[3], x.shape[4])
                if x.is_contiguous(memory_format=torch.channels_last_3d):
                    zeros = zeros.contiguous(memory_format=torch.channels_last_3d)
                parts.insert(0, zeros)
            x = torch.cat(parts, dim=2)
        return self._conv(x, self.weight, padding)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int, int]) -> torch.Tensor:
        if _use_mkldnn(x):
            # PyTorch sends small-channel conv3d to the slow reference kernel on the CPU
            # (its mkldnn heuristic looks at N*C*T*H); oneDNN is 5-10x faster there
            return torch.mkldnn_convolution(x, weight, self.bias, padding, self.stride, self.dilation,
                                            self.groups)
        return F.conv3d(x, weight, self.bias, self.stride, padding, self.dilation, self.groups)


def _use_mkldnn(x: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and not torch.is_grad_enabled()
    )


def last_frames(prev: torch.Tensor | None, x: torch.Tensor, keep: int = CACHE_T) -> torch.Tensor:
    """The last ``keep`` frames of ``cat(prev, x)`` along time (fewer at the stream's start), copied."""
    if prev is None or x.shape[2] >= keep:
        return x[:, :, -keep:].clone()
    missing = keep - x.shape[2]
    return torch.cat([prev[:, :, -missing:].to(x.device, x.dtype), x], dim=2)


def cached_conv(conv: CausalConv3d, x: torch.Tensor, cache: ConvCache | None) -> torch.Tensor:
    """Run ``conv`` on ``x`` continuing the stream in ``cache`` (Wan's feat_cache protocol)."""
    if cache is None:
        return conv(x)
    idx = cache.next_slot()
    prev = cache.feats[idx]
    out = conv(x, prev)
    cache.feats[idx] = last_frames(prev, x)
    return out


class RMS_norm(nn.Module):  # noqa: N801 - Wan's name, kept for the checkpoint layout
    def __init__(self, dim: int, channel_first: bool = True, images: bool = True, bias: bool = False):
        super().__init__()
        broadcastable_dims = (1, 1) if images else (1, 1, 1)
        shape = (dim, *broadcastable_dims) if channel_first else (dim,)
        self.channel_first = channel_first
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.normalize(x, dim) * sqrt(dim) * gamma, as in Wan, in three passes over x (a norm, two
        # products) instead of six: the full-resolution layers are memory-bound on a CPU
        dim = 1 if self.channel_first else -1
        inverse = torch.linalg.vector_norm(x, dim=dim, keepdim=True).clamp_min_(1e-12).reciprocal_()
        x = (x * inverse).mul_(self.gamma * self.scale)
        return x if self.bias is None else x + self.bias


class Upsample(nn.Upsample):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # nearest-exact in float (bf16 is not supported everywhere), as Wan does
        return super().forward(x.float()).type_as(x)


class ResidualBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = out_dim
        # the SiLUs work in place: each follows a norm whose output nothing else reads
        self.residual = nn.Sequential(
            RMS_norm(in_dim, images=False),
            nn.SiLU(inplace=True),
            CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMS_norm(out_dim, images=False),
            nn.SiLU(inplace=True),
            nn.Dropout(dropout),
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: ConvCache | None = None, first: bool = True) -> torch.Tensor:
        h = self.shortcut(x)
        for layer in self.residual:
            x = cached_conv(layer, x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention within each frame (no attention across time)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.norm = RMS_norm(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        nn.init.zeros_(self.proj.weight)

    def forward(self, x: torch.Tensor, cache: ConvCache | None = None, first: bool = True) -> torch.Tensor:
        identity = x
        b, c, t, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        x = self.norm(x)
        q, k, v = (
            self.to_qkv(x).reshape(b * t, 1, c * 3, -1).permute(0, 1, 3, 2).contiguous().chunk(3, dim=-1)
        )
        x = F.scaled_dot_product_attention(q, k, v)
        x = x.squeeze(1).permute(0, 2, 1).reshape(b * t, c, h, w)
        x = self.proj(x)
        x = x.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        return x + identity
