"""Few-step flow-matching schedules (Krea realtime, Self-Forcing).

The model predicts the flow velocity ``v`` at noise level ``sigma`` (timestep ``t = 1000 sigma``);
``x_t = (1 - sigma) x0 + sigma noise``, so ``x0 = x_t - sigma v``. Each of the few steps
predicts x0 and re-noises it, with fresh noise, to the next step's sigma:
``x_next = (1 - sigma_next) x0 + sigma_next noise``. The last step's x0 is the block.

Krea's release (``release_server.py``, ``v2v.py``): the table is
``FlowMatchScheduler(shift=5, sigma_min=0, extra_one_step=True).set_timesteps(1000,
training=True)`` (1000 shifted timesteps from 1000 down to 4.98) padded with a final 0, and
``get_denoising_schedule(table, strength, steps)`` picks
``table[1000 - long(linspace(1000 strength, 0, steps))]``: 4 steps give
[1000, 908.8, 714.0, 0], 5 steps [1000, 937.5, 833.3, 625, 0]. Every one of them is a model
call, the last at t = 0, whose sigma (looked up as the table's nearest entry, as Krea's wrapper
does) is the table's smallest, 0.00498. ``strength`` < 1 starts lower (video to video): the
input latents are noised to the first step's ``t / 1000``. :meth:`FlowSchedule.krea`.

Self-Forcing (``cache_mode="rolling"``): the nominal steps [1000, 750, 500, 250] warped by the
shift ``s`` (``t' = s t / (1 + (s - 1) t)`` on t in [0, 1]) to [1000, 937.5, 833.3, 625], with
no final t = 0 call. :class:`FlowSchedule` from a list.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def shift_sigma(sigma: float, shift: float) -> float:
    """Warp a noise level in [0, 1] by the timestep shift."""
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def krea_sigma_table(shift: float = 5.0, num_train_timesteps: int = 1000) -> torch.Tensor:
    """Krea's ``FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True)`` sigmas after
    ``set_timesteps(1000, training=True)``: ``shift(linspace(1, 0, 1001)[:-1])``, float32."""
    n = num_train_timesteps
    sigmas = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float32)[:-1]
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def krea_timestep_table(shift: float = 5.0, num_train_timesteps: int = 1000) -> torch.Tensor:
    """Krea's ``zero_padded_timesteps``: the scheduler's timesteps (``1000 sigma``) + a final 0."""
    sigmas = krea_sigma_table(shift, num_train_timesteps)
    return torch.cat([sigmas * num_train_timesteps, torch.zeros(1, dtype=torch.float32)])


def krea_nominal_steps(steps: int, strength: float = 1.0, num_train_timesteps: int = 1000) -> list[int]:
    """The table offsets Krea's ``get_denoising_schedule`` picks: ``long(linspace(1000 strength,
    0, steps))`` in float32 (4, 1.0 -> [1000, 666, 333, 0]); timestep ``i`` is
    ``table[1000 - i]``."""
    if steps < 1:
        raise ValueError("at least one denoising step is needed")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    line = torch.linspace(strength * num_train_timesteps, 0, steps, dtype=torch.float32)
    return [int(v) for v in line.to(torch.long)]


class FlowSchedule:
    """The denoising timesteps of one block and the flow-matching step.

    ``timesteps`` go to the model; ``sigmas`` are the noise levels of those steps (for the x0
    conversion and the re-noising)."""

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
    def krea(cls, steps: int, strength: float = 1.0, shift: float = 5.0,
             num_train_timesteps: int = 1000) -> FlowSchedule:
        """Krea's schedule for ``steps`` model calls at ``strength`` (see the module docstring)."""
        n = num_train_timesteps
        nominal = krea_nominal_steps(steps, strength, n)
        sigma_table = krea_sigma_table(shift, n)
        timestep_table = krea_timestep_table(shift, n)
        self = cls.__new__(cls)
        self.num_train_timesteps = n
        self.nominal = [float(s) for s in nominal]
        self.timesteps = [float(timestep_table[n - s]) for s in nominal]
        # t = 0 (the padding) has no sigma of its own: Krea's wrapper takes the nearest table
        # entry, the last one (sigma 0.00498)
        self.sigmas = [float(sigma_table[min(n - s, n - 1)]) for s in nominal]
        return self

    @property
    def input_noise(self) -> float:
        """How much noise an input latent (video to video) gets: the first step's ``t / 1000``
        (Krea's ``denoising_strength_scaled``); 1.0 at full strength."""
        return self.timesteps[0] / self.num_train_timesteps

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
