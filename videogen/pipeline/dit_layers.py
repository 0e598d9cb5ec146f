"""The layers of the causal Wan DiT (dit.py): timestep embedding, 3D RoPE, norms, AdaLN
modulation, self-attention with the KV cache, cross-attention, the transformer block and the head.
Module names follow Wan 2.1's, so its checkpoints map onto them (dit_weights.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .attention import attention
from .config import DiTConfig
from .kv_cache import KVCache

__all__ = [
    "DiTBlock", "Head", "LayerNorm", "RMSNorm", "Step", "TextContext", "apply_rope", "rope_angles", "rope_split",
    "sinusoidal_embedding_1d",
]

# --------------------------------------------------------------------------- helpers


def sinusoidal_embedding_1d(dim: int, position: torch.Tensor) -> torch.Tensor:
    """Wan's timestep embedding: [cos, sin] of position * 10000^(-i/half), float64 inside."""
    half = dim // 2
    dtype = torch.float64 if position.device.type != "mps" else torch.float32
    position = position.to(dtype)
    freqs = torch.pow(10000.0, -torch.arange(half, device=position.device, dtype=dtype).div(half))
    sinusoid = torch.outer(position, freqs)
    return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1).float()


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Rotary pairs for (frame, height, width), as Wan splits head_dim // 2."""
    c = head_dim // 2
    return c - 2 * (c // 3), c // 3, c // 3


def _axis_freqs(pairs: int, theta: float, device) -> torch.Tensor:
    dim = 2 * pairs
    return 1.0 / torch.pow(theta, torch.arange(0, dim, 2, device=device, dtype=torch.float64)[:pairs] / dim)


def rope_angles(
    frame_positions: torch.Tensor, height: int, width: int, head_dim: int, theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin ``[L, head_dim // 2]`` for tokens ordered (frame, h, w).

    ``frame_positions``: absolute frame index of each latent frame (so a block starting at
    frame 9 rotates as frames 9, 10, 11). Computed from positions directly, so there is no
    1024-frame table limit; equal to Wan's table for positions inside it."""
    device = frame_positions.device
    cf, ch, cw = rope_split(head_dim)
    f = frame_positions.to(torch.float64)[:, None] * _axis_freqs(cf, theta, device)  # [F, cf]
    h = torch.arange(height, device=device, dtype=torch.float64)[:, None] * _axis_freqs(ch, theta, device)
    w = torch.arange(width, device=device, dtype=torch.float64)[:, None] * _axis_freqs(cw, theta, device)
    nf = f.shape[0]
    angles = torch.cat([
        f[:, None, None, :].expand(nf, height, width, cf),
        h[None, :, None, :].expand(nf, height, width, ch),
        w[None, None, :, :].expand(nf, height, width, cw),
    ], dim=-1).reshape(nf * height * width, cf + ch + cw)
    return torch.cos(angles).float(), torch.sin(angles).float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (x[2i], x[2i+1]) of ``x [B, L, H, D]`` (Wan's complex layout)."""
    b, n, h, d = x.shape
    xf = x.float().reshape(b, n, h, d // 2, 2)
    xr, xi = xf[..., 0], xf[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    out = torch.stack([xr * c - xi * s, xr * s + xi * c], dim=-1)
    return out.reshape(b, n, h, d).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (as Wan's WanLayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return nn.functional.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, frames: int) -> torch.Tensor:
    """x ``[B, F*T, D]`` * (1 + scale) + shift, with per-frame ``[B, F, D]`` float32 modulation."""
    b, n, d = x.shape
    xf = x.float().view(b, frames, n // frames, d)
    return (xf * (1 + scale[:, :, None]) + shift[:, :, None]).view(b, n, d).to(x.dtype)


def _gate(y: torch.Tensor, gate: torch.Tensor, frames: int) -> torch.Tensor:
    b, n, d = y.shape
    return (y.float().view(b, frames, n // frames, d) * gate[:, :, None]).view(b, n, d).to(y.dtype)


@dataclass
class TextContext:
    """Text embedded once per prompt (or blend) and its per-layer cross-attention K/V."""

    embedding: torch.Tensor  # [B, text_len, dim]
    kv: list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Step:
    """What every layer needs for one forward."""

    frames: int
    cos: torch.Tensor
    sin: torch.Tensor
    cache: KVCache | None = None
    mask: torch.Tensor | None = None  # token-level [Lq, Lk] additive mask (forces SDPA)
    bias: float = 1.0
    bias_exempt_tokens: int = 0  # the first cached tokens the bias leaves alone (the anchor frame)
    backend: str | None = None


# --------------------------------------------------------------------------- modules


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)  # fused q, k, v (the checkpoint's q/k/v concatenated)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def write_kv(self, x: torch.Tensor, step: Step, layer: int) -> None:
        """Only put this layer's K/V of ``x`` in the cache (no attention: nothing reads its output)."""
        b, n, d = x.shape
        _, k, v = self.qkv(x).chunk(3, dim=-1)
        shape = (b, n, self.num_heads, self.head_dim)
        step.cache.write(layer, apply_rope(self.norm_k(k).view(shape), step.cos, step.sin), v.reshape(shape))

    def forward(self, x: torch.Tensor, step: Step, layer: int) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        shape = (b, n, self.num_heads, self.head_dim)
        q = apply_rope(self.norm_q(q).view(shape), step.cos, step.sin)
        k = apply_rope(self.norm_k(k).view(shape), step.cos, step.sin)
        v = v.reshape(shape)
        if step.cache is not None:
            k, v, cached = step.cache.write(layer, k, v)
            if step.mask is not None:
                out = attention(q, k, v, attn_mask=step.mask, backend=step.backend)
            else:
                out = attention(q, k, v, num_cached_tokens=cached, bias_for_cached_tokens=step.bias,
                                unbiased_prefix_tokens=step.bias_exempt_tokens, backend=step.backend)
        else:
            out = attention(q, k, v, attn_mask=step.mask, backend=step.backend)
        return self.o(out.reshape(b, n, d))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, _ = context.shape
        k = self.norm_k(self.k(context)).view(b, n, self.num_heads, self.head_dim)
        v = self.v(context).view(b, n, self.num_heads, self.head_dim)
        return k, v

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], backend: str | None) -> torch.Tensor:
        b, n, d = x.shape
        q = self.norm_q(self.q(x)).view(b, n, self.num_heads, self.head_dim)
        k, v = kv
        if k.shape[0] != b:
            k, v = k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)
        return self.o(attention(q, k, v, backend=backend).reshape(b, n, d))


class DiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        dim = cfg.dim
        self.norm1 = LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps)
        self.norm3 = LayerNorm(dim, cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.qk_norm, cfg.eps)
        self.norm2 = LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def modulated_input(self, x: torch.Tensor, e0: torch.Tensor, frames: int) -> torch.Tensor:
        """The self-attention's input: AdaLN of ``x`` with this block's shift and scale."""
        e = (self.modulation.float()[:, None, :2] + e0[:, :, :2]).unbind(2)
        return _modulate(self.norm1(x), e[0], e[1], frames)

    def forward(self, x: torch.Tensor, e0: torch.Tensor, step: Step, layer: int,
                kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        # e0: [B, F, 6, dim] float32
        e = (self.modulation.float()[:, None] + e0).unbind(2)
        f = step.frames
        y = self.self_attn(_modulate(self.norm1(x), e[0], e[1], f), step, layer)
        x = x + _gate(y, e[2], f)
        x = x + self.cross_attn(self.norm3(x), kv, step.backend)
        y = self.ffn(_modulate(self.norm2(x), e[3], e[4], f))
        return x + _gate(y, e[5], f)


class Head(nn.Module):
    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        out = cfg.out_channels * math.prod(cfg.patch_size)
        self.norm = LayerNorm(cfg.dim, cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, out)
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor, frames: int) -> torch.Tensor:
        # e: [B, F, dim] float32
        shift, scale = (self.modulation.float()[:, None] + e[:, :, None]).unbind(2)
        return self.head(_modulate(self.norm(x), shift, scale, frames))
