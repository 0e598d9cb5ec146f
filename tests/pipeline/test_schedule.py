"""The few-step flow-matching schedule."""

from __future__ import annotations

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
