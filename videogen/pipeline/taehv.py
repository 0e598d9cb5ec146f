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
    "init_random_visible",
    "load_taehv_decoder",
    "subpixel_weight",
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
        self.conv = nn.Sequential(_conv(n_in * 2, n_out), nn.ReLU(inplace=True), _conv(n_out, n_out),
                                  nn.ReLU(inplace=True), _conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x, past], 1)).add_(self.skip(x)).relu_()


class TGrow(nn.Module):
    """One time step -> ``stride`` time steps (a 1x1 conv to ``stride`` x the channels)."""

    def __init__(self, n_f: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n_f, n_f * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # channels-last: one matmul over the pixels and one copy into the frames' order
            y = x.permute(0, 2, 3, 1) @ self.conv.weight.view(-1, c).t()  # [n, h, w, stride * c]
            y = y.view(n, h, w, self.stride, c).permute(0, 3, 1, 2, 4).reshape(n * self.stride, h, w, c)
            return y.permute(0, 3, 1, 2)
        return self.conv(x).reshape(-1, c, h, w)  # [t * stride + s] takes channels s*c:(s+1)*c


class TAEHVDecoder(nn.Module):
    """TAEHV's decoder (``self.decoder``, an ``nn.Sequential`` with TAEHV's indices)."""

    def __init__(self, config: TAEHVConfig | None = None):
        super().__init__()
        self.config = cfg = config or TAEHVConfig()
        n = cfg.channels
        # ReLUs in place, as TAEHV's: each follows a conv whose output nothing else reads
        layers: list[nn.Module] = [Clamp(), _conv(cfg.latent_channels, n[0]), nn.ReLU(inplace=True)]
        time_strides = (1, *(2 if t else 1 for t in cfg.time_upscale))
        for stage in range(3):
            layers += [MemBlock(n[stage], n[stage]) for _ in range(cfg.blocks_per_stage)]
            layers += [nn.Upsample(scale_factor=2 if cfg.space_upscale[stage] else 1),
                       TGrow(n[stage], time_strides[stage]), _conv(n[stage], n[stage + 1], bias=False)]
        layers += [nn.ReLU(inplace=True), _conv(n[3], 3)]
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
        ``[B, 3, 4T, 8h, 8w]`` in [-1, 1] (no trimming), channels-last in memory on the CPU.

        Same math as running the layers in order, arranged for speed: each
        ``Upsample(x2) -> TGrow -> conv 3x3`` runs its TGrow (a 1x1 conv, which commutes with a
        nearest upsampling) at the low resolution and its upsampling + conv as one sub-pixel conv
        there (:func:`subpixel_weight`) and a pixel shuffle; the full-resolution tail runs a few
        frames at a time so they stay in the CPU's cache."""
        b, c, t, h, w = latents.shape
        x = latents.to(self.device, self.dtype).permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        channels_last = self.channels_last if self.channels_last is not None else x.device.type == "cpu"
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = x.contiguous(memory_format=fmt)
        layers = list(self.decoder)
        slot = i = 0
        mapped = False  # the tail maps [0, 1] to [-1, 1] itself
        while i < len(layers):
            layer = layers[i]
            if isinstance(layer, MemBlock):
                x = layer(x, self._past(x, b, memory, slot, fmt))
                slot += 1
            elif _upsample_group(layers, i):
                x = layers[i + 1](x).contiguous(memory_format=fmt)  # TGrow, at the low resolution
                weight, bias = subpixel_weight(layers[i + 2].weight, layers[i + 2].bias)
                weight = weight.contiguous(memory_format=fmt)
                if i + 3 < len(layers) and any(isinstance(m, MemBlock) for m in layers[i + 3:]):
                    x = _pixel_shuffle(F.conv2d(x, weight, bias, padding=1), fmt)
                else:  # the last stage, at full resolution: a few frames at a time
                    x = torch.cat([self._tail(x[j:j + 2], weight, bias, layers[i + 3:], fmt)
                                   for j in range(0, x.shape[0], 2)])
                    mapped = True
                    break
                i += 2
            else:
                x = layer(x)
            i += 1
        frames = x.shape[0] // b
        out = x.reshape(b, frames, 3, x.shape[2], x.shape[3]).permute(0, 2, 1, 3, 4)
        return out if mapped else out.mul(2).sub_(1).clamp_(-1, 1)

    @staticmethod
    def _past(x: torch.Tensor, b: int, memory: list[torch.Tensor | None], slot: int,
              fmt: torch.memory_format) -> torch.Tensor:
        """Each frame's previous frame (the stream's last one before the first), saving this
        block's last frame for the next."""
        frames = x.shape[0] // b
        seq = x.reshape(b, frames, *x.shape[1:])
        prev = memory[slot] if slot < len(memory) else None
        first = torch.zeros_like(seq[:, :1]) if prev is None else prev[:, None].to(x)
        past = torch.cat([first, seq[:, :-1]], dim=1).reshape(x.shape).contiguous(memory_format=fmt)
        if slot == len(memory):
            memory.append(None)
        memory[slot] = seq[:, -1].clone()
        return past

    @staticmethod
    def _tail(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, rest: list[nn.Module],
              fmt: torch.memory_format) -> torch.Tensor:
        """Sub-pixel upsampling conv, the remaining layers and the [0, 1] -> [-1, 1] mapping."""
        x = _pixel_shuffle(F.conv2d(x, weight, bias, padding=1), fmt)
        for layer in rest:
            x = layer(x)
        return x.mul_(2).sub_(1).clamp_(-1, 1)


def _pixel_shuffle(y: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """The sub-pixel conv's output ``[N, 4C, h, w]`` (channel ``(2a + b) C + c``, see
    :func:`subpixel_weight`) -> ``[N, C, 2h, 2w]`` (pixel ``(2i + a, 2j + b)``) in ``fmt``, one copy."""
    n, c4, h, w = y.shape
    c = c4 // 4
    if fmt == torch.channels_last and y.is_contiguous(memory_format=torch.channels_last):
        # memory [n, h, w, a, b, c] -> [n, h, a, w, b, c]: runs of 2C floats stay together
        x = y.permute(0, 2, 3, 1).view(n, h, w, 2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, c)
        return x.permute(0, 3, 1, 2)
    x = y.view(n, 2, 2, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c, 2 * h, 2 * w)
    return x.contiguous(memory_format=fmt)


def _upsample_group(layers: list[nn.Module], i: int) -> bool:
    """``Upsample(x2), TGrow, Conv2d 3x3`` at ``i``: the group that runs as a sub-pixel conv."""
    return (i + 2 < len(layers) and isinstance(layers[i], nn.Upsample) and layers[i].scale_factor == 2
            and isinstance(layers[i + 1], TGrow) and isinstance(layers[i + 2], nn.Conv2d)
            and layers[i + 2].kernel_size == (3, 3))


_ROWS = torch.tensor([[[1.0, 0, 0], [0, 1, 1], [0, 0, 0]],  # output row 2i: input rows i-1, i, i
                      [[0.0, 0, 0], [1, 1, 0], [0, 0, 1]]])  # output row 2i+1: rows i, i, i+1


def subpixel_weight(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A 3x3 conv after a nearest x2 upsampling, as one 3x3 conv at the low resolution with 4x
    the output channels, ordered ``(2a + b) * O + o`` (:func:`_pixel_shuffle` puts them in place):
    output pixel ``(2i + a, 2j + b)`` sees input rows/columns ``i-1..i+1`` through the kernel's
    rows/columns summed as ``_ROWS[a]`` / ``_ROWS[b]`` say."""
    rows = _ROWS.to(weight.device)
    # [a, b, O, I, 3, 3]: sum_pq R_a[u, p] W[o, i, p, q] R_b[v, q], summed in float32 (bf16 weights)
    w = torch.einsum("aup,oipq,bvq->aboiuv", rows, weight.float(), rows).to(weight.dtype)
    out = w.reshape(4 * weight.shape[0], weight.shape[1], 3, 3)
    return out, (bias.repeat(4) if bias is not None else None)


@torch.no_grad()
def init_random_visible(decoder: TAEHVDecoder) -> TAEHVDecoder:
    """Random weights whose frames are visible patterns (PyTorch's default init decodes to black):
    Kaiming-normal convolutions, zero biases, and the last conv scaled down around mid-grey
    (output std ~0.4 in [-1, 1], ~5% clipped). For the tiny random pipeline only."""
    for module in decoder.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    last = decoder.decoder[-1]
    last.weight.mul_(0.02)
    last.bias.fill_(0.5)
    return decoder


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
