"""A TAEHV-shaped video decoder (Tiny AutoEncoder for Hunyuan/Wan video), causal and streaming.

TAEHV (madebyollin/taehv; Krea's release ships it as ``demo_utils/taehv.py`` behind its
``use_taehv`` option) decodes Wan 2.1's normalised latents with 2D convolutions only: a stack
of ``MemBlock`` s, each seeing its input frame and its input's previous frame (its only memory),
``nn.Upsample`` x2 in space, and ``TGrow`` 1x1 convolutions that turn one time step into
``stride`` (x4 in time over the decoder). Output is RGB in [0, 1], here mapped to [-1, 1].

:class:`TAEHVDecoder` keeps TAEHV's module layout (``decoder.{i}.conv.{j}``, ``decoder.{i}.skip``,
``decoder.{i}.conv`` of a TGrow), so the real ``taew2_1.pth`` loads as is
(:func:`load_taehv_decoder`, its ``encoder.*`` half skipped). :func:`tiny_taehv_config` is the
same shape at tiny widths for the tiny pipeline on a CPU.

Streaming (:class:`StreamingTAEHVDecoder`): each MemBlock's memory is the last input frame of
the previous block, so blocks decode exactly as one pass over the whole latent sequence.
``T`` latent frames give ``4 T`` frames; the stream's first 3 are cut (TAEHV's
``frames_to_trim``), so blocks yield 9 then 12 frames, in step with Wan's decoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "MemBlock",
    "StreamingTAEHVDecoder",
    "TAEHVConfig",
    "TAEHVDecoder",
    "TGrow",
    "load_taehv_decoder",
    "tiny_taehv_config",
]


@dataclass(frozen=True)
class TAEHVConfig:
    """Widths of the 4 decoder stages, MemBlocks per stage, and which stages upscale time/space.
    The defaults are TAEHV's (``taew2_1.pth``)."""

    channels: tuple[int, int, int, int] = (256, 128, 64, 64)
    blocks_per_stage: int = 3
    time_upscale: tuple[bool, bool] = (True, True)
    space_upscale: tuple[bool, bool, bool] = (True, True, True)
    latent_channels: int = 16

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.time_upscale)

    @property
    def frames_to_trim(self) -> int:
        """Output frames cut from a stream's start (TAEHV's ``frames_to_trim``)."""
        return self.temporal_factor - 1

    def num_frames(self, latent_frames: int, *, first: bool = True) -> int:
        """Pixel frames decoded from ``latent_frames`` (9 for a stream's first 3, 12 after)."""
        if latent_frames <= 0:
            return 0
        return self.temporal_factor * latent_frames - (self.frames_to_trim if first else 0)


def tiny_taehv_config() -> TAEHVConfig:
    """TAEHV's shape at the tiny pipeline's widths: one MemBlock per stage, 16/8/8/4 channels
    (the full-resolution stage, the costly one on a CPU, has 4)."""
    return TAEHVConfig(channels=(16, 8, 8, 4), blocks_per_stage=1)


def _conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """TAEHV's soft clamp of the latents: ``3 tanh(x / 3)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    """``relu(conv(cat(x, past)) + skip(x))``: ``past`` is the previous frame's input."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Sequential(_conv(n_in * 2, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(),
                                  _conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TGrow(nn.Module):
    """One time step -> ``stride`` time steps (a 1x1 conv to ``stride`` x the channels)."""

    def __init__(self, n_f: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n_f, n_f * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, c, h, w = x.shape
        return self.conv(x).reshape(-1, c, h, w)  # [t * stride + s] takes channels s*c:(s+1)*c


class TAEHVDecoder(nn.Module):
    """TAEHV's decoder (``self.decoder``, an ``nn.Sequential`` with TAEHV's indices)."""

    def __init__(self, config: TAEHVConfig | None = None):
        super().__init__()
        self.config = cfg = config or TAEHVConfig()
        n = cfg.channels
        layers: list[nn.Module] = [Clamp(), _conv(cfg.latent_channels, n[0]), nn.ReLU()]
        time_strides = (1, *(2 if t else 1 for t in cfg.time_upscale))
        for stage in range(3):
            layers += [MemBlock(n[stage], n[stage]) for _ in range(cfg.blocks_per_stage)]
            layers += [nn.Upsample(scale_factor=2 if cfg.space_upscale[stage] else 1),
                       TGrow(n[stage], time_strides[stage]), _conv(n[stage], n[stage + 1], bias=False)]
        layers += [nn.ReLU(), _conv(n[3], 3)]
        self.decoder = nn.Sequential(*layers)
        self.channels_last: bool | None = None  # None: on the CPU only

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder[1].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.decoder[1].weight.device

    def forward_block(self, latents: torch.Tensor, memory: list[torch.Tensor | None]) -> torch.Tensor:
        """Decode the next latent frames ``[B, 16, T, h, w]`` (normalised) continuing ``memory``
        (one slot per MemBlock: its last input frame, ``[B, C, H, W]``); returns
        ``[B, 3, 4T, 8h, 8w]`` in [-1, 1] (no trimming)."""
        b, c, t, h, w = latents.shape
        x = latents.to(self.device, self.dtype).permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        channels_last = self.channels_last if self.channels_last is not None else x.device.type == "cpu"
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        slot = 0
        for layer in self.decoder:
            if isinstance(layer, MemBlock):
                frames = x.shape[0] // b
                seq = x.reshape(b, frames, *x.shape[1:])
                prev = memory[slot] if slot < len(memory) else None
                first = torch.zeros_like(seq[:, :1]) if prev is None else prev[:, None].to(x)
                past = torch.cat([first, seq[:, :-1]], dim=1).reshape(x.shape)
                if channels_last:
                    past = past.contiguous(memory_format=torch.channels_last)
                if slot == len(memory):
                    memory.append(None)
                memory[slot] = seq[:, -1].clone()
                slot += 1
                x = layer(x, past)
            else:
                x = layer(x)
        frames = x.shape[0] // b
        out = x.reshape(b, frames, 3, x.shape[2], x.shape[3]).permute(0, 2, 1, 3, 4)
        return out.mul(2).sub_(1).clamp_(-1, 1)


class StreamingTAEHVDecoder:
    """The session's decoder interface over :class:`TAEHVDecoder` (as ``StreamingVAEDecoder``)."""

    def __init__(self, decoder: TAEHVDecoder):
        self.decoder = decoder
        self.memory: list[torch.Tensor | None] = []
        self.started = False
        self.latent_frames = 0

    def reset(self) -> None:
        self.memory = []
        self.started = False
        self.latent_frames = 0

    def frames_for(self, latent_frames: int) -> int:
        return self.decoder.config.num_frames(latent_frames, first=not self.started)

    def cache_nbytes(self) -> int:
        """Bytes of the MemBlocks' memory (one frame each)."""
        return sum(t.numel() * t.element_size() for t in self.memory if t is not None)

    @torch.no_grad()
    def decode_block(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim != 5 or latents.shape[2] < 1:
            raise ValueError(f"a block needs >= 1 latent frame, got shape {tuple(latents.shape)}")
        out = self.decoder.forward_block(latents, self.memory)
        if not self.started:
            out = out[:, :, self.decoder.config.frames_to_trim:]
        self.started = True
        self.latent_frames += latents.shape[2]
        return out


def _patch_tgrow(decoder: TAEHVDecoder, key: str, tensor: torch.Tensor) -> torch.Tensor:
    """TAEHV's ``patch_tgrow_layers``: a TGrow with fewer outputs than the checkpoint's (time
    upscaling switched off) keeps the last time step's channels."""
    want = decoder.state_dict()[key].shape[0]
    return tensor[-want:] if tensor.shape[0] > want else tensor


def load_taehv_decoder(mapping: Mapping[str, torch.Tensor], config: TAEHVConfig | None = None, *,
                       device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> TAEHVDecoder:
    """A :class:`TAEHVDecoder` from TAEHV's own checkpoint (``taew2_1.pth``: ``decoder.*`` and
    ``encoder.*`` keys; the encoder's are skipped). Missing or unexpected decoder keys raise."""
    decoder = TAEHVDecoder(config)
    own = decoder.state_dict()
    tgrow = {f"decoder.{i}.conv.weight" for i, m in enumerate(decoder.decoder) if isinstance(m, TGrow)}
    loaded = {}
    for key in mapping:
        if not key.startswith("decoder."):
            continue
        tensor = mapping[key]
        if key in tgrow:
            tensor = _patch_tgrow(decoder, key, tensor)
        loaded[key] = tensor
    missing = sorted(set(own) - set(loaded))
    unexpected = sorted(set(loaded) - set(own))
    if missing or unexpected:
        raise KeyError(f"TAEHV checkpoint does not fit: missing {missing[:8]}, unexpected {unexpected[:8]}")
    decoder.load_state_dict(loaded)
    return decoder.to(device, dtype)
