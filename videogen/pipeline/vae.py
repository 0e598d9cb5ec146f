"""The Wan 2.1 VAE decoder, causal and streaming, in plain PyTorch (no Django).

Architecture as in Wan-Video/Wan2.1 ``wan/modules/vae.py`` (``Decoder3d`` with dim 96, z_dim
16, dim_mult [1, 2, 4, 4], 2 residual blocks (+1) per stage, temporal upsampling
[True, True, False]): the shared layers are in :mod:`.vae_layers`; ``Resample`` in
``upsample3d`` mode doubles time with a (3, 1, 1) ``time_conv`` that doubles channels, and the
1x1x1 ``conv2`` (the post-quant conv) runs before the decoder. The module names mirror Wan's,
so Wan's original checkpoint keys ``decoder.*`` and ``conv2.*`` load unchanged
(:func:`load_original_state_dict`); diffusers' ``AutoencoderKLWan`` keys are mapped by
:func:`diffusers_key_to_original`. The encoder half (``encoder.*``, ``conv1.*`` of the same
file) is :mod:`.vae_encoder`.

Causality and streaming. Wan decodes one latent frame at a time and keeps, for every causal
conv, the last ``CACHE_T = 2`` frames of that conv's input (``feat_cache``). The very first
latent frame of a stream is not upsampled in time (it yields 1 pixel frame), and the
``time_conv`` of each ``upsample3d`` starts from zero history at the second latent frame; every
later latent frame yields 4 pixel frames. Here the same cache lives in a
:class:`~.vae_layers.ConvCache` (one slot per causal conv, plus whether the stream's first
frame has been seen), and a block of any number of latent frames is decoded in one pass: a
causal conv over ``cat(cache, block)`` is exactly the conv over the whole sequence, so decoding
in blocks of any size (Wan's 1, the pipeline's 3, or everything at once) gives the same frames.

Latents given to :meth:`WanVAEDecoder.decode` / :meth:`StreamingVAEDecoder.decode_block` are
the normalised ones the DiT produces; they are un-normalised with Wan 2.1's per-channel
``latents_mean`` / ``latents_std`` (``z * std + mean``) before ``conv2``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from .vae_layers import (
    CACHE_T,
    AttentionBlock,
    CausalConv3d,
    ConvCache,
    ResidualBlock,
    RMS_norm,
    Upsample,
    cached_conv,
    last_frames,
)

# The decoder's cache kept its first name for callers.
DecoderCache = ConvCache

__all__ = [
    "CACHE_T",
    "WAN21_LATENTS_MEAN",
    "WAN21_LATENTS_STD",
    "CausalConv3d",
    "ConvCache",
    "DecoderCache",
    "StreamingVAEDecoder",
    "WanVAEConfig",
    "WanVAEDecoder",
    "diffusers_key_to_original",
    "load_original_state_dict",
    "original_key_map",
    "tiny_vae_config",
    "to_uint8_frames",
]

# Wan 2.1's published latent statistics (wan/modules/vae.py, WanVAE.__init__).
WAN21_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip


@dataclass(frozen=True)
class WanVAEConfig:
    """Decoder hyper-parameters; the defaults are Wan 2.1's VAE."""

    z_dim: int = 16
    base_dim: int = 96
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    # Wan's ``temperal_upsample``: the decoder stages that double time (Wan builds it as the
    # reverse of the encoder's ``temperal_downsample`` [False, True, True]).
    temporal_upsample: tuple[bool, ...] = (True, True, False)
    # Residual blocks per encoder stage; None: ``num_res_blocks``, as in Wan (the decoder has one
    # more per stage). The tiny config needs 1 where its widths change.
    encoder_num_res_blocks: int | None = None
    latents_mean: tuple[float, ...] = WAN21_LATENTS_MEAN
    latents_std: tuple[float, ...] = WAN21_LATENTS_STD

    def __post_init__(self):
        if len(self.temporal_upsample) != len(self.dim_mult) - 1:
            raise ValueError("temporal_upsample needs one entry per upsampling stage")
        if len(self.latents_mean) != self.z_dim or len(self.latents_std) != self.z_dim:
            raise ValueError(f"latents_mean/std need {self.z_dim} values each")

    @property
    def temperal_upsample(self) -> tuple[bool, ...]:  # Wan's spelling
        return self.temporal_upsample

    @property
    def temperal_downsample(self) -> tuple[bool, ...]:
        """The encoder stages that halve time (Wan's spelling): the decoder's, reversed."""
        return self.temporal_upsample[::-1]

    @property
    def encoder_res_blocks(self) -> int:
        return self.num_res_blocks if self.encoder_num_res_blocks is None else self.encoder_num_res_blocks

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(bool(u) for u in self.temporal_upsample)

    def num_frames(self, latent_frames: int, *, first: bool = True) -> int:
        """Pixel frames decoded from ``latent_frames`` (the stream's first block or a later one)."""
        if latent_frames <= 0:
            return 0
        if first:
            return 1 + self.temporal_factor * (latent_frames - 1)
        return self.temporal_factor * latent_frames


def tiny_vae_config() -> WanVAEConfig:
    """The same architecture, small enough to stream on two CPU cores (tests, the fake pipeline).

    Channels per stage (4, 8, 8, 8) -> the full-resolution stage has 4 channels; latents keep
    Wan's 16 channels and statistics so the tiny DiT's output shape is the real one. The
    encoder has one residual block per stage (its widths change between stages).
    """
    return WanVAEConfig(base_dim=4, dim_mult=(1, 2, 2, 2), num_res_blocks=0, encoder_num_res_blocks=1)


# ----------------------------------------------------------------------------- decoder layers


class Resample(nn.Module):
    """Decoder-side ``Resample``: ``upsample2d`` (space x2) or ``upsample3d`` (time x2, space x2)."""

    def __init__(self, dim: int, mode: str):
        super().__init__()
        if mode not in ("upsample2d", "upsample3d"):
            raise ValueError(f"decoder Resample mode {mode!r}")
        self.dim = dim
        self.mode = mode
        self.resample = nn.Sequential(
            Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
            nn.Conv2d(dim, dim // 2, 3, padding=1),
        )
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))

    def _double_time(self, x: torch.Tensor, cache: ConvCache | None, first: bool) -> torch.Tensor:
        if cache is None:  # one-shot, no cache object: still decode the first frame apart
            cache = ConvCache()
        idx = cache.next_slot()
        if first:  # the stream's first latent frame passes through un-doubled (Wan's 'Rep')
            head, x = x[:, :, :1], x[:, :, 1:]
        if x.shape[2] == 0:
            return head
        prev = cache.feats[idx]
        y = self.time_conv(x, prev)
        cache.feats[idx] = last_frames(prev, x)
        b, c2, t, h, w = y.shape
        c = c2 // 2
        # channels [0:c] -> frame 2i, [c:2c] -> frame 2i+1 (Wan's reshape(b, 2, c, t, h, w))
        y = y.reshape(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)
        return torch.cat([head, y], dim=2) if first else y

    def forward(self, x: torch.Tensor, cache: ConvCache | None = None, first: bool = True) -> torch.Tensor:
        if self.mode == "upsample3d":
            x = self._double_time(x, cache, first)
        b, c, t, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        x = self.resample(x)
        return x.reshape(b, t, x.shape[1], x.shape[2], x.shape[3]).permute(0, 2, 1, 3, 4)


class Decoder3d(nn.Module):
    def __init__(
        self,
        dim: int = 96,
        z_dim: int = 16,
        dim_mult: tuple[int, ...] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        temperal_upsample: tuple[bool, ...] = (True, True, False),
        dropout: float = 0.0,
    ):
        super().__init__()
        dims = [dim * u for u in [dim_mult[-1], *dim_mult[::-1]]]
        self.conv1 = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(
            ResidualBlock(dims[0], dims[0], dropout),
            AttentionBlock(dims[0]),
            ResidualBlock(dims[0], dims[0], dropout),
        )
        upsamples: list[nn.Module] = []
        out_dim = dims[0]
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            if i > 0:  # the previous Resample halved the channels
                in_dim = in_dim // 2
            for _ in range(num_res_blocks + 1):
                upsamples.append(ResidualBlock(in_dim, out_dim, dropout))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                mode = "upsample3d" if temperal_upsample[i] else "upsample2d"
                upsamples.append(Resample(out_dim, mode=mode))
        self.upsamples = nn.Sequential(*upsamples)
        self.head = nn.Sequential(
            RMS_norm(out_dim, images=False),
            nn.SiLU(inplace=True),  # after a norm: in place
            CausalConv3d(out_dim, 3, 3, padding=1),
        )

    def forward(self, x: torch.Tensor, cache: ConvCache | None = None, first: bool = True) -> torch.Tensor:
        x = cached_conv(self.conv1, x, cache)
        for layer in self.middle:
            x = layer(x, cache, first)
        for layer in self.upsamples:
            x = layer(x, cache, first)
        for layer in self.head:
            x = cached_conv(layer, x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x


# ----------------------------------------------------------------------------- decoder


class WanVAEDecoder(nn.Module):
    """``conv2`` (post-quant, 1x1x1) + ``Decoder3d``; state-dict keys as in Wan's checkpoint."""

    def __init__(self, config: WanVAEConfig | None = None):
        super().__init__()
        self.config = config = config or WanVAEConfig()
        self.conv2 = CausalConv3d(config.z_dim, config.z_dim, 1)
        self.decoder = Decoder3d(
            config.base_dim,
            config.z_dim,
            tuple(config.dim_mult),
            config.num_res_blocks,
            tuple(config.temporal_upsample),
        )
        # activations in channels-last (NDHWC) layout: 1.5-3.5x faster small-channel convs on
        # the CPU; None = on the CPU only
        self.channels_last: bool | None = None
        self.register_buffer(
            "latents_mean", torch.tensor(config.latents_mean, dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "latents_std", torch.tensor(config.latents_std, dtype=torch.float32), persistent=False
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.conv2.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.conv2.weight.device

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1, 1)
        mean = self.latents_mean.to(latents.device).view(shape)
        std = self.latents_std.to(latents.device).view(shape)
        return (latents.float() * std + mean).to(self.dtype)

    def forward_block(self, latents: torch.Tensor, cache: ConvCache) -> torch.Tensor:
        """Decode the next latent frames of the stream held in ``cache`` (unclamped)."""
        if latents.ndim != 5 or latents.shape[1] != self.config.z_dim:
            raise ValueError(f"latents must be [B, {self.config.z_dim}, T, h, w], got {tuple(latents.shape)}")
        x = self.conv2(self.denormalize(latents.to(self.device)))
        channels_last = self.channels_last if self.channels_last is not None else x.device.type == "cpu"
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
            self._weights_channels_last()
        cache.begin()
        out = self.decoder(x, cache, first=not cache.started)
        cache.started = True
        return out.contiguous()

    def _weights_channels_last(self) -> None:
        # the layout the activations use; values unchanged (done once, redone after a .to())
        for m in self.decoder.modules():
            if isinstance(m, nn.Conv3d | nn.Conv2d) and m.weight.device.type != "meta":
                fmt = torch.channels_last_3d if m.weight.ndim == 5 else torch.channels_last
                if not m.weight.is_contiguous(memory_format=fmt):
                    m.weight.data = m.weight.data.contiguous(memory_format=fmt)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """One-shot decode: [B, 16, T, h, w] -> [B, 3, 1 + 4(T-1), 8h, 8w] in [-1, 1]."""
        return self.forward_block(latents, ConvCache()).clamp_(-1, 1)


class StreamingVAEDecoder:
    """Decodes a latent stream block by block; the blocks concatenate to the one-shot decode.

    The first block of ``t`` latent frames yields ``1 + 4(t-1)`` pixel frames, later blocks
    ``4t`` (3 -> 9, then 12). ``reset()`` starts a new stream.
    """

    def __init__(self, decoder: WanVAEDecoder):
        self.decoder = decoder
        self.cache = ConvCache()
        self.latent_frames = 0

    def reset(self) -> None:
        self.cache.reset()
        self.latent_frames = 0

    @property
    def started(self) -> bool:
        return self.cache.started

    def frames_for(self, latent_frames: int) -> int:
        """Pixel frames the next block of ``latent_frames`` will yield."""
        return self.decoder.config.num_frames(latent_frames, first=not self.cache.started)

    @torch.no_grad()
    def decode_block(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim != 5 or latents.shape[2] < 1:
            raise ValueError(f"a block needs >= 1 latent frame, got shape {tuple(latents.shape)}")
        out = self.decoder.forward_block(latents, self.cache).clamp_(-1, 1)
        self.latent_frames += latents.shape[2]
        return out


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """[B, 3, n, H, W] (or [3, n, H, W]) in [-1, 1] -> uint8 [n, H, W, 3] (batch 0; B*n if B>1)."""
    if video.ndim == 4:
        video = video.unsqueeze(0)
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"video must be [B, 3, n, H, W], got {tuple(video.shape)}")
    x = ((video.detach().float().clamp(-1, 1) + 1.0) * 127.5).round_().to(torch.uint8)
    x = x.permute(0, 2, 3, 4, 1).reshape(-1, video.shape[3], video.shape[4], 3)
    return x.cpu().numpy()


# ----------------------------------------------------------------------------- checkpoints


def original_key_map(key: str) -> str | None:
    """Wan's original VAE key -> :class:`WanVAEDecoder` key (``None``: not the decoder's)."""
    if key.startswith(("decoder.", "conv2.")):
        return key
    return None  # encoder.*, conv1.* (the encoder half)


_DIFFUSERS_RESNET = {
    "norm1.gamma": "residual.0.gamma",
    "conv1.weight": "residual.2.weight",
    "conv1.bias": "residual.2.bias",
    "norm2.gamma": "residual.3.gamma",
    "conv2.weight": "residual.6.weight",
    "conv2.bias": "residual.6.bias",
    "conv_shortcut.weight": "shortcut.weight",
    "conv_shortcut.bias": "shortcut.bias",
}


def diffusers_key_to_original(key: str, config: WanVAEConfig | None = None) -> str | None:
    """diffusers ``AutoencoderKLWan`` key -> Wan's original key (decoder half only, else None)."""
    config = config or WanVAEConfig()
    if key.startswith("post_quant_conv."):
        return "conv2." + key.split(".", 1)[1]
    if not key.startswith("decoder."):
        return None
    rest = key[len("decoder."):]
    if rest.startswith("conv_in."):
        return "decoder.conv1." + rest[len("conv_in."):]
    if rest.startswith("norm_out."):
        return "decoder.head.0." + rest[len("norm_out."):]
    if rest.startswith("conv_out."):
        return "decoder.head.2." + rest[len("conv_out."):]
    parts = rest.split(".")
    if parts[0] == "mid_block":
        kind, i, tail = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return f"decoder.middle.{2 * i}.{_DIFFUSERS_RESNET[tail]}"
        if kind == "attentions":
            return f"decoder.middle.1.{tail}"
    if parts[0] == "up_blocks":
        block, kind = int(parts[1]), parts[2]
        per_stage = config.num_res_blocks + 1
        # stages before ``block`` each hold per_stage resnets + 1 Resample
        base = block * (per_stage + 1)
        if kind == "resnets":
            i, tail = int(parts[3]), ".".join(parts[4:])
            return f"decoder.upsamples.{base + i}.{_DIFFUSERS_RESNET[tail]}"
        if kind == "upsamplers":
            tail = ".".join(parts[4:])  # upsamplers.0.resample.1.weight / time_conv.weight
            return f"decoder.upsamples.{base + per_stage}.{tail}"
    raise KeyError(f"unknown diffusers Wan VAE key {key!r}")


def load_original_state_dict(
    decoder: WanVAEDecoder,
    mapping: Mapping[str, torch.Tensor],
    *,
    key_map: Callable[[str], str | None] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    strict: bool = True,
) -> WanVAEDecoder:
    """Load Wan's VAE checkpoint (``decoder.*`` + ``conv2.*``; the encoder keys are skipped).

    ``mapping`` may be a plain dict or a lazy :func:`videogen.pipeline.weights.open_checkpoint`;
    keys in diffusers' layout are recognised (``post_quant_conv.*``) and mapped.
    """
    from . import weights  # local: weights imports nothing from here

    if key_map is None:
        if any(k.startswith("post_quant_conv.") for k in mapping):
            cfg = decoder.config

            def key_map(k: str) -> str | None:
                return diffusers_key_to_original(k, cfg)
        else:
            key_map = original_key_map
    if dtype is None:
        dtype = decoder.dtype if decoder.conv2.weight.device.type != "meta" else None
    if device is None and decoder.conv2.weight.device.type != "meta":
        device = decoder.device
    weights.load_into(decoder, mapping, key_map=key_map, dtype=dtype, device=device, strict=strict)
    return decoder
