"""Few-step flow-matching schedule (Self-Forcing / Krea realtime).

The model predicts the flow velocity ``v`` at noise level ``sigma`` (timestep ``t = 1000 sigma``);
``x_t = (1 - sigma) x0 + sigma noise``, so ``x0 = x_t - sigma v``. Each of the few steps
predicts x0 and re-noises it, with fresh noise, to the next step's sigma:
``x_next = (1 - sigma_next) x0 + sigma_next noise``. The last step's x0 is the block.

The nominal steps [1000, 750, 500, 250] are warped by the shift ``s`` as Self-Forcing and Krea
do (``t' = s t / (1 + (s - 1) t)`` on t in [0, 1]) to about [1000, 937.5, 833.3, 625].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def shift_sigma(sigma: float, shift: float) -> float:
    """Warp a noise level in [0, 1] by the timestep shift."""
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


class FlowSchedule:
    """The denoising timesteps of one block and the flow-matching step."""

    def __init__(
        self,
        steps: Sequence[float] = (1000, 750, 500, 250),
        shift: float = 5.0,
        warp: bool = True,
        num_train_timesteps: int = 1000,
    ) -> None:
        if not steps:
            raise ValueError("steps must not be empty")
        n = float(num_train_timesteps)
        if any(not 0 < s <= n for s in steps):
            raise ValueError(f"steps must be in (0, {num_train_timesteps}]")
        self.num_train_timesteps = num_train_timesteps
        self.nominal = [float(s) for s in steps]
        sigmas = [s / n for s in self.nominal]
        if warp:
            sigmas = [shift_sigma(s, shift) for s in sigmas]
        self.sigmas: list[float] = sigmas
        self.timesteps: list[float] = [s * n for s in sigmas]

    @classmethod
    def from_config(cls, config) -> FlowSchedule:
        return cls(config.denoising_steps, config.timestep_shift, config.warp_denoising_steps,
                   config.num_train_timesteps)

    def __len__(self) -> int:
        return len(self.timesteps)

    def __repr__(self) -> str:
        return f"FlowSchedule(timesteps={[round(t, 2) for t in self.timesteps]})"

    @staticmethod
    def x0_from_flow(x_t: torch.Tensor, flow: torch.Tensor, sigma: float) -> torch.Tensor:
        """x0 = x_t - sigma * v, computed in float32 (as Self-Forcing does)."""
        return (x_t.float() - sigma * flow.float()).to(x_t.dtype)

    @staticmethod
    def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
        """x_sigma = (1 - sigma) x0 + sigma noise."""
        return ((1.0 - sigma) * x0.float() + sigma * noise.float()).to(x0.dtype)

    def step(self, x_t: torch.Tensor, flow: torch.Tensor, index: int,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One step: (x0 prediction, next noisy input or None after the last step)."""
        x0 = self.x0_from_flow(x_t, flow, self.sigmas[index])
        if index + 1 >= len(self.sigmas):
            return x0, None
        if noise is None:
            raise ValueError("fresh noise is needed for every step but the last")
        return x0, self.add_noise(x0, noise, self.sigmas[index + 1])
