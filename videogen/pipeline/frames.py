"""Decoded video -> the frames a block carries: uint8 ``[n, H, W, 3]`` on the CPU (and
``[n, 3, H, W]`` on a GPU, for its JPEG encoder)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["frames_hwc", "to_uint8_pixels"]


def to_uint8_pixels(video: torch.Tensor) -> torch.Tensor:
    """``[1, 3, n, H, W]`` in [-1, 1] -> ``uint8 [n, 3, H, W]`` on the same device."""
    return ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 0, 2, 3)


def frames_hwc(video: torch.Tensor) -> np.ndarray:
    """``[1, 3, n, H, W]`` in [-1, 1] -> uint8 ``[n, H, W, 3]`` on the CPU, a frame at a time
    (each stays in the CPU's cache through its few passes: 3x faster than whole-block passes)."""
    x = video[0].permute(1, 2, 3, 0)  # [n, H, W, 3]: a plain view of a channels-last decode
    if x.device.type != "cpu":
        return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).contiguous().cpu().numpy()
    out = np.empty(tuple(x.shape), np.uint8)
    target = torch.from_numpy(out)
    for i in range(x.shape[0]):
        target[i].copy_(x[i].float().add(1).mul_(127.5).round_().clamp_(0, 255))
    return out
