"""videogen.local.offline: planning (validation, defaults) and a run of the tiny pipeline to an MP4."""

from __future__ import annotations

import pytest
import torch

from tests.support.media import decoded
from videogen.gallery import media
from videogen.local.offline import (
    OfflineError,
    OfflineRequest,
    blocks_for_frames,
    denoising_steps,
    generate,
    percentile,
    plan,
)
from videogen.pipeline import TINY_CONFIG, Timeline, build_tiny_pipeline


@pytest.fixture(scope="module")
def session():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield build_tiny_pipeline("cpu")
    torch.set_num_threads(previous)


def test_steps_are_evenly_spaced_from_1000():
    assert denoising_steps(4) == (1000, 750, 500, 250)
    assert denoising_steps(1) == (1000,) and denoising_steps(3) == (1000, 667, 333)
    assert len(denoising_steps(8)) == 8
    for bad in (0, 9, "4", True, 2.0):
        with pytest.raises(OfflineError, match="steps must be an integer from 1 to 8"):
            denoising_steps(bad)


def test_frames_and_blocks():
    # 6 frames for the first block (Krea decodes 9 and drops 3), 12 for each later one
    assert [blocks_for_frames(n, TINY_CONFIG) for n in (1, 6, 7, 18, 19, 78, 79)] == [1, 1, 2, 2, 3, 7, 8]


def test_a_prompt_plan_gets_the_defaults_and_its_timeline():
    p = plan(OfflineRequest(prompt="  a fox  "), TINY_CONFIG)
    assert (p.width, p.height, p.seed, p.blocks, p.num_frames) == (320, 192, 0, 7, 78)
    assert p.denoising_steps == (1000, 750, 500, 250) and p.source == "prompt"
    assert p.timeline.to_dict()["prompts"] == [{"startTime": 0, "endTime": 7,
                                                "prompts": [{"text": "a fox", "weight": 1.0}]}]
    p = plan(OfflineRequest(prompt="x", num_frames=30, steps=2, seed=5, width=64, height=128), TINY_CONFIG)
    assert (p.blocks, p.num_frames, p.denoising_steps, p.seed) == (3, 30, (1000, 500), 5)


@pytest.mark.parametrize(("request_", "message"), [
    (OfflineRequest(), "either a prompt or a timeline"),
    (OfflineRequest(prompt="a", timeline={}), "either a prompt or a timeline"),
    (OfflineRequest(prompt="   "), "non-empty"),
    (OfflineRequest(prompt="a", width=330, height=192), r"multiples of 16 .* got 330x192 \(nearest: 336x192\)"),
    (OfflineRequest(prompt="a", width=32, height=192), "width must be from 64 to 2048"),
    (OfflineRequest(prompt="a", blocks=0), "blocks must be from 1 to 200"),
    (OfflineRequest(prompt="a", blocks=2, num_frames=20), "either blocks or num_frames"),
    (OfflineRequest(prompt="a", seed=-1), "seed must be from 0"),
    (OfflineRequest(prompt="a", steps=12), "steps must be an integer from 1 to 8"),
    (OfflineRequest(timeline={"prompts": [{"startTime": 2, "endTime": 3, "prompts": [{"text": "a"}]}]}),
     "starting at block 0"),
    (OfflineRequest(timeline={"prompts": [{"endTime": 3}]}), "not a Daydream Scope timeline"),
    (OfflineRequest(timeline={"prompts": [{"startTime": 0, "endTime": 2, "prompts": [{"text": "a"}]}],
                              "settings": {"denoisingSteps": [1000, 2000]}}), "denoisingSteps must be"),
])
def test_bad_requests_say_what_to_change(request_, message):
    with pytest.raises(OfflineError, match=message):
        plan(request_, TINY_CONFIG)


def test_a_prompt_run_writes_an_mp4_of_the_asked_size_with_its_parameters(session):
    seen = []
    p = plan(OfflineRequest(prompt="a lighthouse", width=96, height=64, blocks=2, seed=3, steps=2), session.config)
    result = generate(session, p, on_block=lambda done, total, block: seen.append((done, total)),
                      metadata={"note": "test"})
    assert seen == [(1, 2), (2, 2)] and not result.stopped
    assert result.frames == 18 and decoded(result.content) == (18, 96, 64)
    tags = media.read_metadata(result.content)
    assert tags["note"] == "test" and tags["width"] == 96 and tags["denoising_steps"] == [1000, 500]
    settings = tags["timeline"]["settings"]
    assert (settings["resolution"], settings["seed"], settings["denoisingSteps"]) == (
        {"height": 64, "width": 96}, 3, [1000, 500])
    stats = result.stats()
    assert stats["frames"] == 18 and stats["fps"] > 0 and 0 < stats["ttff_s"] <= stats["wall_s"]
    assert stats["block_ms_p50"] <= stats["block_ms_p90"] and stats["vae_ms"] > 0


def test_num_frames_cuts_the_last_block_and_a_false_on_block_stops(session):
    p = plan(OfflineRequest(prompt="a", width=64, height=64, num_frames=15), session.config)
    result = generate(session, p)
    assert result.blocks == 2 and decoded(result.content)[0] == 15
    p = plan(OfflineRequest(prompt="a", width=64, height=64, blocks=4), session.config)
    stopped = generate(session, p, on_block=lambda done, total, block: done < 2)
    assert stopped.stopped and stopped.content is None and stopped.blocks == 2


def test_a_timeline_replays_with_overrides_and_is_kept_in_the_file(session):
    source = {"prompts": [{"startTime": 0, "endTime": 1, "prompts": [{"text": "a red fox", "weight": 1.0}]},
                          {"startTime": 1, "endTime": 3, "prompts": [{"text": "a city", "weight": 1.0}],
                           "transitionSteps": 2}],
              "settings": {"resolution": {"height": 192, "width": 320}, "seed": 9,
                           "denoisingSteps": [1000, 500]}, "version": "2.0"}
    p = plan(OfflineRequest(timeline=source, width=64, height=64), session.config)
    assert (p.blocks, p.seed, p.denoising_steps, p.num_frames) == (3, 9, (1000, 500), 30)
    result = generate(session, p)
    assert decoded(result.content) == (30, 64, 64)
    recorded = media.read_metadata(result.content)["timeline"]
    assert recorded["prompts"] == source["prompts"]
    assert recorded["settings"]["resolution"] == {"height": 64, "width": 64}
    assert Timeline.from_dict(recorded).num_blocks == 3


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == 5 and percentile(values, 90) == 9 and percentile([3.0], 90) == 3
