"""The causal Wan 2.1 DiT of Krea Realtime Video 14B (Self-Forcing), in pure PyTorch.

Layout (as Wan 2.1 T2V): Conv3d patch embedding (1, 2, 2) -> tokens; sinusoidal timestep
embedding -> ``time_embedding`` MLP -> ``time_projection`` to 6 x dim AdaLN modulation; text
embedding MLP; N blocks of [AdaLN -> self-attention (fused QKV, RMSNorm on q and k, 3D RoPE)
-> gate] + [LayerNorm (cross-attn norm) -> cross-attention to the text] + [AdaLN -> FFN
(GELU tanh) -> gate]; head (AdaLN, linear) and unpatchify.

Causality: the video is made block by block (3 latent frames). A block's tokens attend to
themselves and to a rolling KV cache of the ``kv_cache_num_frames`` latent frames before it
(a local window); the timestep is per frame, RoPE frame positions are absolute (the block's
start frame is the offset). After a block is denoised, the clean block is run once more at
t = 0 with ``commit=True``: that pass writes the block's K/V into the cache (KV recomputation)
and the cache drops its oldest frames beyond the window.

The cache is preallocated (:class:`KVCache`): per layer one K and one V buffer of
``(cache frames + block frames) x tokens per frame`` tokens. Cached frames sit at the front in
time order and the block being run is written right after them, so attention reads one
contiguous slice and nothing grows with ``torch.cat``.

:meth:`CausalWanDiT.forward_reference` is the non-streamed path: the whole sequence at once
with a block-causal local-window mask (and the same bias on earlier frames); tests check that
streaming equals it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .attention import attention
from .config import DiTConfig

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


# --------------------------------------------------------------------------- KV cache


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


@dataclass
class TextContext:
    """Text embedded once per prompt (or blend) and its per-layer cross-attention K/V."""

    embedding: torch.Tensor  # [B, text_len, dim]
    kv: list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class _Step:
    """What every layer needs for one forward."""

    frames: int
    cos: torch.Tensor
    sin: torch.Tensor
    cache: KVCache | None = None
    mask: torch.Tensor | None = None
    num_cached_tokens: int = 0
    bias: float = 1.0
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

    def forward(self, x: torch.Tensor, step: _Step, layer: int) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        shape = (b, n, self.num_heads, self.head_dim)
        q = apply_rope(self.norm_q(q).view(shape), step.cos, step.sin)
        k = apply_rope(self.norm_k(k).view(shape), step.cos, step.sin)
        v = v.reshape(shape)
        if step.cache is not None:
            k, v, cached = step.cache.write(layer, k, v)
            out = attention(q, k, v, num_cached_tokens=cached, bias_for_cached_tokens=step.bias,
                            backend=step.backend)
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

    def forward(self, x: torch.Tensor, e0: torch.Tensor, step: _Step, layer: int,
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


class CausalWanDiT(nn.Module):
    """The causal Wan 2.1 DiT; see the module docstring."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        self.patch_embedding = nn.Conv3d(config.in_channels, dim, kernel_size=config.patch_size,
                                         stride=config.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(config.text_dim, dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(config.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.num_layers))
        self.head = Head(config)
        self.attention_backend: str | None = None  # None: resolve per device
        self._rope_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    # ---- inputs
    def prepare_context(self, text: torch.Tensor | TextContext) -> TextContext:
        """Embed UMT5 output ``[B, len, text_dim]`` (zero-padded to text_len, as Wan does) and
        compute every layer's cross-attention K/V once; reuse it for all steps of a block."""
        if isinstance(text, TextContext):
            return text
        cfg = self.config
        param = self.text_embedding[0].weight
        text = text.to(device=param.device, dtype=param.dtype)
        if text.shape[1] < cfg.text_len:
            text = torch.cat([text, text.new_zeros(text.shape[0], cfg.text_len - text.shape[1], text.shape[2])], 1)
        emb = self.text_embedding(text[:, : cfg.text_len])
        return TextContext(emb, [blk.cross_attn.context_kv(emb) for blk in self.blocks])

    def _time(self, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``timesteps [B, F]`` -> (e ``[B, F, dim]``, e0 ``[B, F, 6, dim]``), float32."""
        b, f = timesteps.shape
        dt = self.time_embedding[0].weight.dtype
        e = self.time_embedding(sinusoidal_embedding_1d(self.config.freq_dim, timesteps.flatten()).to(dt))
        e0 = self.time_projection(e).float().view(b, f, 6, self.config.dim)
        return e.float().view(b, f, self.config.dim), e0

    def _patchify(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        x = self.patch_embedding(x.to(self.patch_embedding.weight.dtype))
        _, _, f, h, w = x.shape
        return x.flatten(2).transpose(1, 2), (f, h, w)

    def _unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        f, h, w = grid
        pt, ph, pw = self.config.patch_size
        c = self.config.out_channels
        b = x.shape[0]
        x = x.view(b, f, h, w, pt, ph, pw, c)
        x = torch.einsum("bfhwpqrc->bcfphqwr", x)
        return x.reshape(b, c, f * pt, h * ph, w * pw)

    def _backend(self, device: torch.device) -> str | None:
        return self.attention_backend if device.type == "cuda" else None

    def _run(self, tokens, grid, timesteps, context: TextContext, step: _Step):
        e, e0 = self._time(timesteps)
        x = tokens
        for i, blk in enumerate(self.blocks):
            x = blk(x, e0, step, i, context.kv[i])
        return self._unpatchify(self.head(x, e, step.frames), grid)

    def _rope(self, start_frame: int, frames: int, h: int, w: int, device: torch.device):
        """RoPE cos/sin of a block, kept for the few passes (steps + recompute) of that block."""
        key = (start_frame, frames, h, w, str(device))
        cached = self._rope_cache.get(key)
        if cached is None:
            positions = torch.arange(start_frame, start_frame + frames, device=device)
            cached = rope_angles(positions, h, w, self.config.head_dim, self.config.rope_theta)
            if len(self._rope_cache) >= 4:
                self._rope_cache.pop(next(iter(self._rope_cache)))
            self._rope_cache[key] = cached
        return cached

    # ---- streaming
    def new_cache(self, batch: int, latent_height: int, latent_width: int, kv_cache_num_frames: int,
                  frames_per_block: int, device=None, dtype=None) -> KVCache:
        p = self.config.patch_size
        param = self.patch_embedding.weight
        return KVCache(self.config.num_layers, batch, kv_cache_num_frames, frames_per_block,
                       (latent_height // p[1]) * (latent_width // p[2]), self.config.num_heads,
                       self.config.head_dim, device or param.device, dtype or param.dtype)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor | float, context: torch.Tensor | TextContext,
                cache: KVCache, start_frame: int | None = None, commit: bool = False,
                kv_cache_attention_bias: float = 1.0) -> torch.Tensor:
        """Run one block ``x [B, 16, F, h, w]`` at ``timestep`` (scalar, ``[B]`` or ``[B, F]``)
        against the cache; returns the flow prediction. ``start_frame`` (absolute index of the
        block's first frame, for RoPE) defaults to the frame after the cache. ``commit=True``
        (the t = 0 recomputation pass) keeps the block's K/V in the cache."""
        if start_frame is None:
            start_frame = cache.end_frame
        elif cache.cached_frames and start_frame != cache.end_frame:
            raise ValueError(f"block starts at frame {start_frame} but the cache ends at {cache.end_frame}")
        context = self.prepare_context(context)
        tokens, grid = self._patchify(x)
        f, h, w = grid
        if h * w != cache.tokens_per_frame:
            raise ValueError("the cache was made for another latent size")
        b = x.shape[0]
        timesteps = torch.as_tensor(timestep, dtype=torch.float32, device=x.device)
        timesteps = timesteps.reshape(-1, 1).expand(b, f) if timesteps.dim() < 2 else timesteps
        cos, sin = self._rope(start_frame, f, h, w, x.device)
        step = _Step(f, cos, sin, cache=cache, bias=kv_cache_attention_bias, backend=self._backend(x.device))
        if not cache.cached_frames:
            cache.start_frame = start_frame
        out = self._run(tokens, grid, timesteps, context, step)
        if commit:
            cache.commit(f)
        return out

    # ---- reference (non-streamed) path
    def forward_reference(self, clean: torch.Tensor, context: torch.Tensor | TextContext, *,
                          frames_per_block: int, kv_cache_num_frames: int,
                          noisy: torch.Tensor | None = None, noisy_timesteps: torch.Tensor | None = None,
                          clean_timesteps: torch.Tensor | None = None,
                          kv_cache_attention_bias: float = 1.0, start_frame: int = 0
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The whole sequence at once, block-causal with the local window.

        ``clean [B, 16, F, h, w]`` is the context sequence (what the recomputation passes
        see, at ``clean_timesteps`` = 0 by default). ``noisy`` (same shape) holds, per block,
        the input of one denoising step at ``noisy_timesteps [B, F]``: its block attends to
        itself and to the clean frames of the window before it, exactly as a streamed step
        attends to the KV cache. Returns (prediction on clean, prediction on noisy)."""
        context = self.prepare_context(context)
        b, _, nf, _, _ = clean.shape
        dev = clean.device
        if clean_timesteps is None:
            clean_timesteps = torch.zeros(b, nf, device=dev)
        frame_idx = torch.arange(nf, device=dev)
        block_start = (frame_idx // frames_per_block) * frames_per_block
        lo = (block_start - kv_cache_num_frames).clamp(min=0)
        hi = torch.clamp(block_start + frames_per_block, max=nf)
        # frame-level masks: rows are query frames, columns key frames
        kf = frame_idx[None, :]
        allowed_cc = (kf >= lo[:, None]) & (kf < hi[:, None])
        cached_cc = allowed_cc & (kf < block_start[:, None])
        log_bias = math.log(kv_cache_attention_bias)
        tokens_c, grid = self._patchify(clean)
        tpf = grid[1] * grid[2]
        if noisy is None:
            allowed, cached = allowed_cc, cached_cc
            tokens, timesteps, positions = tokens_c, clean_timesteps, frame_idx
        else:
            tokens_n, _ = self._patchify(noisy)
            allowed_nc = (kf >= lo[:, None]) & (kf < block_start[:, None])
            allowed_nn = block_start[:, None] == block_start[None, :]
            no = torch.zeros_like(allowed_cc)
            allowed = torch.cat([torch.cat([allowed_cc, no], 1), torch.cat([allowed_nc, allowed_nn], 1)], 0)
            cached = torch.cat([torch.cat([cached_cc, no], 1), torch.cat([allowed_nc, no], 1)], 0)
            tokens = torch.cat([tokens_c, tokens_n], 1)
            timesteps = torch.cat([clean_timesteps, noisy_timesteps.to(clean_timesteps)], 1)
            positions = torch.cat([frame_idx, frame_idx])
        dtype = tokens.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=dev)
        mask = mask.masked_fill(cached, log_bias).masked_fill(~allowed, float("-inf"))
        mask = mask.repeat_interleave(tpf, 0).repeat_interleave(tpf, 1)
        cos, sin = rope_angles(positions + start_frame, grid[1], grid[2], self.config.head_dim,
                               self.config.rope_theta)
        total_frames = positions.numel()
        step = _Step(total_frames, cos, sin, mask=mask, backend=None)
        out = self._run(tokens, (total_frames, grid[1], grid[2]), timesteps, context, step)
        if noisy is None:
            return out, None
        return out[:, :, :nf], out[:, :, nf:]


# --------------------------------------------------------------------------- checkpoints

_PREFIXES = ("model.", "generator.model.", "generator.", "module.", "_fsdp_wrapped_module.",
             "diffusion_model.", "_orig_mod.")
_QKV = re.compile(r"^blocks\.(\d+)\.self_attn\.([qkv])\.(weight|bias)$")


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def to_original_state_dict(model: CausalWanDiT) -> dict[str, torch.Tensor]:
    """The model's weights in the original Wan / Krea key layout (q, k, v separate)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        m = re.match(r"^blocks\.(\d+)\.self_attn\.qkv\.(weight|bias)$", key)
        if m:
            for name, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                out[f"blocks.{m.group(1)}.self_attn.{name}.{m.group(2)}"] = part.clone()
        else:
            out[key] = value.clone()
    return out


@torch.no_grad()
def load_original_state_dict(model: CausalWanDiT, mapping: Mapping[str, torch.Tensor],
                             strict: bool = True) -> dict[str, list[str]]:
    """Copy weights in the original Wan 2.1 / Krea layout (``blocks.{i}.self_attn.q/k/v``,
    ``norm_q``, ``cross_attn.*``, ``ffn.0/2``, ``modulation``, ``norm3``, ``patch_embedding``,
    ``text_embedding.0/2``, ``time_embedding.0/2``, ``time_projection.1``, ``head.head``,
    ``head.modulation``) into the model; q/k/v are concatenated into the fused QKV.

    ``mapping`` may be lazy (a memory-mapped checkpoint): each tensor is read once and copied
    into the existing parameter (dtype and device converted). Common wrapper prefixes
    (``model.``, ``generator.``, ...) are stripped. Returns ``{"missing", "unexpected"}``;
    with ``strict`` either being non-empty raises."""
    own = model.state_dict()
    pending: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    loaded: set[str] = set()
    unexpected: list[str] = []
    for raw in mapping:
        key = _strip(raw)
        m = _QKV.match(key)
        if m:
            group = pending.setdefault((m.group(1), m.group(3)), {})
            group[m.group(2)] = mapping[raw]
            if len(group) == 3:
                target = f"blocks.{m.group(1)}.self_attn.qkv.{m.group(3)}"
                own[target].copy_(torch.cat([group["q"], group["k"], group["v"]], 0))
                loaded.add(target)
                del pending[(m.group(1), m.group(3))]
            continue
        if key not in own:
            unexpected.append(raw)
            continue
        tensor = mapping[raw]
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise ValueError(f"{raw}: shape {tuple(tensor.shape)} != {tuple(own[key].shape)}")
        own[key].copy_(tensor)
        loaded.add(key)
    unexpected += [f"blocks.{i}.self_attn.{{q,k,v}}.{kind} (incomplete)" for i, kind in pending]
    missing = [k for k in own if k not in loaded]
    if strict and (missing or unexpected):
        raise KeyError(f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
                       f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}")
    return {"missing": missing, "unexpected": unexpected}


def build_dit(config: DiTConfig, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
              seed: int | None = 0) -> CausalWanDiT:
    """A DiT with deterministic random weights (``seed``) built directly on ``device`` in
    ``dtype`` (the 14B model is never materialised in float32 first). The global RNG is left
    untouched. ``seed=None``: built on ``meta`` and given uninitialised storage on ``device``
    (fast), for :func:`load_original_state_dict` to fill."""
    if seed is None:
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device("meta"):
                model = CausalWanDiT(config)
        finally:
            torch.set_default_dtype(previous)
        return model.to_empty(device=device).eval().requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                model = CausalWanDiT(config)
        finally:
            torch.set_default_dtype(previous)
    return model.eval().requires_grad_(False)
