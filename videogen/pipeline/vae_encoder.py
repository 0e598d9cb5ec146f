"""The Wan 2.1 VAE encoder, causal and streaming, in plain PyTorch (no Django).

Architecture as in Wan-Video/Wan2.1 ``wan/modules/vae.py`` (``Encoder3d`` with dim 96,
dim_mult [1, 2, 4, 4], 2 residual blocks per stage, temporal downsampling
[False, True, True], then the 1x1x1 quant conv ``conv1`` to mean and log-variance). It is the
other half of the same checkpoint as the decoder: ``encoder.*`` and ``conv1.*`` of
``Wan2.1_VAE.pth`` load unchanged (:func:`load_original_state_dict`); diffusers'
``AutoencoderKLWan`` keys (``encoder.conv_in``, ``encoder.down_blocks.{i}``, ``quant_conv``)
are mapped by :func:`diffusers_key_to_original`.

Frames and latents. Wan encodes a video of ``1 + 4k`` frames to ``1 + k`` latent frames: the
stream's first frame alone (no temporal downsampling), then every 4 frames become one latent
frame. Wan and diffusers run it a chunk at a time (1, 4, 4, ...) keeping each causal conv's
last frames (``feat_cache``); here that cache is a :class:`~.vae_layers.ConvCache` and a chunk
of any number of frames (``1 + 4k`` for the first, ``4k`` after) runs in one pass:
``downsample3d``'s stride-2 ``time_conv`` over ``cat(last cached frame, chunk)`` gives exactly
the frames the 4-frame chunks give. So Krea's webcam mode (9 frames for the first block, then
12 streamed) and a one-shot encode of the same frames agree.

Pixels in are ``[B, 3, T, H, W]`` in [-1, 1]; latents out are normalised the way the DiT sees
them, ``(mu - latents_mean) / latents_std`` (Krea's ``VAEEncoderWrapper``); the encoder takes
the distribution's mean (no sampling), as Krea does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn as nn

from .vae import _DIFFUSERS_RESNET, WanVAEConfig
from .vae_layers import (
    AttentionBlock,
    CausalConv3d,
    ConvCache,
    ResidualBlock,
    RMS_norm,
    cached_conv,
)

__all__ = [
    "Downsample",
    "Encoder3d",
    "StreamingVAEEncoder",
    "WanVAEEncoder",
    "diffusers_key_to_original",
    "load_original_state_dict",
    "original_key_map",
]


class Downsample(nn.Module):
    """Encoder-side ``Resample``: ``downsample2d`` (space /2) or ``downsample3d`` (space /2 and
    time /2 by a stride-2 (3, 1, 1) ``time_conv``)."""

    def __init__(self, dim: int, mode: str):
        super().__init__()
        if mode not in ("downsample2d", "downsample3d"):
            raise ValueError(f"encoder Resample mode {mode!r}")
        self.dim = dim
        self.mode = mode
        # Wan pads right and bottom by one before the stride-2 conv (ZeroPad2d((0, 1, 0, 1)))
        self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
        if mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0))

    def forward(self, x: torch.Tensor, cache: ConvCache | None = None, first: bool = True) -> torch.Tensor:
        b, c, t, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        x = self.resample(x)
        x = x.reshape(b, t, c, x.shape[2], x.shape[3]).permute(0, 2, 1, 3, 4)
        if self.mode == "downsample3d":
            x = self._halve_time(x, cache if cache is not None else ConvCache(), first)
        return x

    def _halve_time(self, x: torch.Tensor, cache: ConvCache, first: bool) -> torch.Tensor:
        idx = cache.next_slot()
        if first:
            # The stream's first frame passes through alone and is the next frames' history
            # (Wan caches it and runs no time_conv on it).
            head = x[:, :, :1]
            if x.shape[2] == 1:
                cache.feats[idx] = head.clone()
                return head
            y = self.time_conv(x)  # [f0, f1 .. f4k] -> windows (f0 f1 f2), (f2 f3 f4), ...
            cache.feats[idx] = x[:, :, -1:].clone()
            return torch.cat([head, y], dim=2)
        prev = cache.feats[idx]
        if prev is None:
            raise RuntimeError("encoder cache lost its history: reset the stream")
        y = self.time_conv(torch.cat([prev.to(x.device, x.dtype), x], dim=2))
        cache.feats[idx] = x[:, :, -1:].clone()
        return y


class Encoder3d(nn.Module):
    """Wan's ``Encoder3d`` (module names kept for the checkpoint layout)."""

    def __init__(self, dim: int = 96, z_dim: int = 32, dim_mult: tuple[int, ...] = (1, 2, 4, 4),
                 num_res_blocks: int = 2, temperal_downsample: tuple[bool, ...] = (False, True, True),
                 dropout: float = 0.0):
        super().__init__()
        dims = [dim * u for u in [1, *dim_mult]]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        downsamples: list[nn.Module] = []
        out_dim = dims[0]
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            if num_res_blocks == 0 and in_dim != out_dim:
                raise ValueError("an encoder stage that changes width needs a residual block")
            for _ in range(num_res_blocks):
                downsamples.append(ResidualBlock(in_dim, out_dim, dropout))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                mode = "downsample3d" if temperal_downsample[i] else "downsample2d"
                downsamples.append(Downsample(out_dim, mode))
        self.downsamples = nn.Sequential(*downsamples)
        self.middle = nn.Sequential(
            ResidualBlock(out_dim, out_dim, dropout),
            AttentionBlock(out_dim),
            ResidualBlock(out_dim, out_dim, dropout),
        )
        self.head = nn.Sequential(RMS_norm(out_dim, images=False), nn.SiLU(inplace=True),
                                  CausalConv3d(out_dim, z_dim, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: ConvCache | None = None, first: bool = True) -> torch.Tensor:
        x = cached_conv(self.conv1, x, cache)
        for layer in self.downsamples:
            x = layer(x, cache, first)
        for layer in self.middle:
            x = layer(x, cache, first)
        for layer in self.head:
            x = cached_conv(layer, x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x


class WanVAEEncoder(nn.Module):
    """``Encoder3d`` + ``conv1`` (quant conv, 1x1x1); state-dict keys as in Wan's checkpoint."""

    def __init__(self, config: WanVAEConfig | None = None):
        super().__init__()
        self.config = config = config or WanVAEConfig()
        self.encoder = Encoder3d(config.base_dim, config.z_dim * 2, tuple(config.dim_mult), config.encoder_res_blocks,
                                 tuple(config.temperal_downsample))
        self.conv1 = CausalConv3d(config.z_dim * 2, config.z_dim * 2, 1)
        # activations in channels-last (NDHWC) layout on the CPU: faster small-channel convs
        self.channels_last: bool | None = None
        self.register_buffer("latents_mean", torch.tensor(config.latents_mean, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("latents_std", torch.tensor(config.latents_std, dtype=torch.float32),
                             persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv1.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.conv1.weight.device

    def latent_frames(self, frames: int, *, first: bool = True) -> int:
        """Latent frames made from ``frames`` pixel frames (``1 + 4k`` first, ``4k`` after)."""
        factor = self.config.temporal_factor
        if first:
            if frames < 1 or (frames - 1) % factor:
                raise ValueError(f"a stream's first chunk needs 1 + {factor}k frames, got {frames}")
            return 1 + (frames - 1) // factor
        if frames < factor or frames % factor:
            raise ValueError(f"a later chunk needs a multiple of {factor} frames, got {frames}")
        return frames // factor

    def normalize(self, mu: torch.Tensor) -> torch.Tensor:
        """Raw latent means -> the DiT's normalised latents, ``(mu - mean) / std``."""
        shape = (1, -1, 1, 1, 1)
        mean = self.latents_mean.to(mu.device).view(shape)
        std = self.latents_std.to(mu.device).view(shape)
        return (mu.float() - mean) / std

    def forward_block(self, pixels: torch.Tensor, cache: ConvCache, *, normalize: bool = True) -> torch.Tensor:
        """Encode the next frames of the stream held in ``cache``: ``[B, 3, T, H, W]`` in
        [-1, 1] -> latent means ``[B, z_dim, T', H/8, W/8]`` (float32; normalised unless
        ``normalize=False``: Wan's raw means, what diffusers' ``latent_dist.mean`` holds)."""
        if pixels.ndim != 5 or pixels.shape[1] != 3:
            raise ValueError(f"pixels must be [B, 3, T, H, W], got {tuple(pixels.shape)}")
        self.latent_frames(pixels.shape[2], first=not cache.started)
        x = pixels.to(self.device, self.dtype)
        channels_last = self.channels_last if self.channels_last is not None else x.device.type == "cpu"
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        cache.begin()
        out = self.encoder(x, cache, first=not cache.started)
        cache.started = True
        mu = self.conv1(out)[:, : self.config.z_dim]
        return self.normalize(mu) if normalize else mu.float().contiguous()

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
        """One-shot encode of ``1 + 4k`` frames (a fresh stream)."""
        return self.forward_block(pixels, ConvCache(), normalize=normalize)


class StreamingVAEEncoder:
    """Encodes a pixel stream chunk by chunk; the chunks concatenate to the one-shot encode.

    The first chunk of a stream has ``1 + 4k`` frames (9 -> 3 latent frames), later chunks
    ``4k`` (12 -> 3). ``reset()`` starts a new stream."""

    def __init__(self, encoder: WanVAEEncoder):
        self.encoder = encoder
        self.cache = ConvCache()

    def reset(self) -> None:
        self.cache.reset()

    @property
    def started(self) -> bool:
        return self.cache.started

    def frames_for(self, latent_frames: int) -> int:
        """Pixel frames the next chunk needs to give ``latent_frames`` latent frames."""
        factor = self.encoder.config.temporal_factor
        return factor * latent_frames if self.cache.started else 1 + factor * (latent_frames - 1)

    @torch.no_grad()
    def encode_block(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` in [-1, 1] -> normalised latents ``[B, 16, T', H/8, W/8]``."""
        return self.encoder.forward_block(pixels, self.cache)


# ----------------------------------------------------------------------------- checkpoints


def original_key_map(key: str) -> str | None:
    """Wan's original VAE key -> :class:`WanVAEEncoder` key (``None``: the decoder's half)."""
    if key.startswith(("encoder.", "conv1.")):
        return key
    return None


def diffusers_key_to_original(key: str) -> str | None:
    """diffusers ``AutoencoderKLWan`` key -> Wan's original key (encoder half only, else None)."""
    if key.startswith("quant_conv."):
        return "conv1." + key.split(".", 1)[1]
    if not key.startswith("encoder."):
        return None
    rest = key[len("encoder."):]
    renames = {"conv_in.": "encoder.conv1.", "norm_out.": "encoder.head.0.", "conv_out.": "encoder.head.2."}
    for old, new in renames.items():
        if rest.startswith(old):
            return new + rest[len(old):]
    parts = rest.split(".")
    if parts[0] == "down_blocks":  # flat, in Wan's order: resnets and resamples interleaved
        i, tail = int(parts[1]), ".".join(parts[2:])
        return f"encoder.downsamples.{i}.{_DIFFUSERS_RESNET.get(tail, tail)}"
    if parts[0] == "mid_block":
        kind, i, tail = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return f"encoder.middle.{2 * i}.{_DIFFUSERS_RESNET[tail]}"
        if kind == "attentions":
            return f"encoder.middle.1.{tail}"
    raise KeyError(f"unknown diffusers Wan VAE key {key!r}")


def load_original_state_dict(
    encoder: WanVAEEncoder,
    mapping: Mapping[str, torch.Tensor],
    *,
    key_map: Callable[[str], str | None] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    strict: bool = True,
) -> WanVAEEncoder:
    """Load the encoder half of Wan's VAE checkpoint (``encoder.*`` + ``conv1.*``; the decoder
    keys are skipped). ``mapping``: a dict or a lazy ``weights.open_checkpoint``; diffusers'
    layout (``quant_conv.*``) is recognised and mapped."""
    from . import weights

    if key_map is None:
        key_map = diffusers_key_to_original if any(k.startswith("quant_conv.") for k in mapping) else original_key_map
    meta = encoder.conv1.weight.device.type == "meta"
    if dtype is None and not meta:
        dtype = encoder.dtype
    if device is None and not meta:
        device = encoder.device
    weights.load_into(encoder, mapping, key_map=key_map, dtype=dtype, device=device, strict=strict)
    return encoder
