"""The few-step flow-matching schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videogen.pipeline.config import TINY_CONFIG
from videogen.pipeline.schedule import FlowSchedule, shift_sigma

pytestmark = pytest.mark.timeout(60)


def test_warped_steps_match_self_forcing():
    s = FlowSchedule((1000, 750, 500, 250), shift=5.0)
    assert s.timesteps == pytest.approx([1000.0, 937.5, 833.333333, 625.0], abs=1e-4)
    assert s.sigmas == pytest.approx([1.0, 0.9375, 0.833333, 0.625], abs=1e-6)
    assert FlowSchedule.from_config(TINY_CONFIG).timesteps == s.timesteps


def test_unwarped_steps_stay():
    s = FlowSchedule((1000, 750, 500, 250), shift=5.0, warp=False)
    assert s.timesteps == [1000.0, 750.0, 500.0, 250.0]


def test_shift_is_monotone_and_fixes_ends():
    assert shift_sigma(0.0, 5.0) == 0.0
    assert shift_sigma(1.0, 5.0) == 1.0
    xs = [i / 10 for i in range(11)]
    ys = [shift_sigma(x, 5.0) for x in xs]
    assert ys == sorted(ys) and all(y >= x for x, y in zip(xs, ys, strict=True))


def test_step_predicts_x0_and_renoises():
    s = FlowSchedule()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, generator=g)
    noise = torch.randn(2, 4, generator=g)
    sigma = s.sigmas[1]
    x_t = FlowSchedule.add_noise(x0, noise, sigma)
    flow = noise - x0  # the exact flow velocity
    fresh = torch.randn(2, 4, generator=g)
    pred, nxt = s.step(x_t, flow, 1, fresh)
    torch.testing.assert_close(pred, x0)
    torch.testing.assert_close(nxt, (1 - s.sigmas[2]) * x0 + s.sigmas[2] * fresh)
    last, none = s.step(x_t, flow, len(s) - 1)
    assert none is None and last.shape == x0.shape


def test_step_needs_fresh_noise():
    with pytest.raises(ValueError):
        FlowSchedule().step(torch.zeros(1), torch.zeros(1), 0)


@pytest.mark.parametrize("steps", [(), (0,), (1001,)])
def test_bad_steps(steps):
    with pytest.raises(ValueError):
        FlowSchedule(steps)


def _krea_formula(steps: int, strength: float, shift: float = 5.0) -> tuple[list[float], list[float]]:
    """Krea's release, written out with numpy: FlowMatchScheduler(shift, sigma_min=0,
    extra_one_step=True).set_timesteps(1000, training=True), timesteps padded with 0,
    get_denoising_schedule(table, strength, steps) (v2v.py), and the wrapper's sigma lookup
    (the nearest scheduler timestep)."""
    sigmas = np.linspace(1.0, 0.0, 1001, dtype=np.float32)[:-1]
    sigmas = (shift * sigmas / (1 + (shift - 1) * sigmas)).astype(np.float32)
    timesteps = (sigmas * 1000).astype(np.float32)
    table = np.concatenate([timesteps, np.zeros(1, np.float32)])
    picks = np.linspace(strength * 1000, 0, steps, dtype=np.float32).astype(np.int64)
    chosen = table[1000 - picks]
    looked_up = [float(sigmas[np.argmin(np.abs(timesteps - t))]) for t in chosen]
    return [float(t) for t in chosen], looked_up


@pytest.mark.parametrize(("steps", "strength"), [(3, 1.0), (4, 1.0), (5, 1.0), (3, 0.7), (4, 0.7), (5, 0.7)])
def test_krea_schedule_equals_krea_formula(steps, strength):
    timesteps, sigmas = _krea_formula(steps, strength)
    s = FlowSchedule.krea(steps, strength)
    assert s.timesteps == pytest.approx(timesteps, abs=1e-4)
    assert s.sigmas == pytest.approx(sigmas, abs=1e-6)
    assert s.input_noise == pytest.approx(timesteps[0] / 1000, abs=1e-7)
    assert len(s) == steps and s.timesteps[-1] == 0.0  # the last model call is at t = 0


def test_krea_schedule_numbers():
    assert FlowSchedule.krea(5).timesteps == pytest.approx([1000, 937.5, 833.333, 625, 0], abs=1e-3)
    assert FlowSchedule.krea(4).timesteps == pytest.approx([1000, 908.84, 713.98, 0], abs=1e-2)
    assert FlowSchedule.krea(4).sigmas[-1] == pytest.approx(5 * 0.001 / (1 + 4 * 0.001), rel=1e-4)
    low = FlowSchedule.krea(4, 0.7)
    assert low.nominal == [700, 466, 233, 0] and low.timesteps[0] < 1000
    with pytest.raises(ValueError):
        FlowSchedule.krea(4, 1.5)
    with pytest.raises(ValueError):
        FlowSchedule.krea(0)
