"""Timelines in Daydream Scope's format: recording, JSON, replay to identical frames."""

from __future__ import annotations

import json

import numpy as np
import pytest

from videogen.pipeline.timeline import Timeline, normalize_prompts

from .fakes import HEIGHT, WIDTH, make_session, params

pytestmark = pytest.mark.timeout(120)


def _record():
    s = make_session()
    blocks = []
    for i, block in enumerate(s.start(params(num_blocks=6, seed=11, blend_blocks=2))):
        blocks.append(block)
        if i == 0:
            s.update(prompt="a city at night")
        if i == 2:
            s.update(prompt=[("a forest", 2.0), ("rain", 1.0)], blend_blocks=1)
        if i == 3:
            s.update(seed=42)
    return s.timeline, blocks


def test_recorded_format():
    tl, _ = _record()
    d = tl.to_dict()
    assert d["version"] == "2.0" and d["timeUnit"] == "blocks"
    assert d["settings"] == {"resolution": {"height": HEIGHT, "width": WIDTH}, "seed": 11,
                             "denoisingSteps": [1000, 750, 500, 250], "kvCacheAttentionBias": 1.0}
    assert d["prompts"] == [
        {"startTime": 0, "endTime": 1, "prompts": [{"text": "a red fox in the snow", "weight": 1.0}]},
        {"startTime": 1, "endTime": 3, "prompts": [{"text": "a city at night", "weight": 1.0}],
         "transitionSteps": 2},
        {"startTime": 3, "endTime": 6, "prompts": [{"text": "a forest", "weight": 2.0},
                                                   {"text": "rain", "weight": 1.0}]},
    ]
    assert d["events"] == [{"block": 4, "seed": 42}]


def test_replay_reproduces_frames():
    tl, blocks = _record()
    again = Timeline.from_json(json.dumps(tl.to_dict()))
    replayed = list(again.replay(make_session(), blend_blocks=2))
    assert len(replayed) == len(blocks)
    for a, b in zip(blocks, replayed, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)
        assert a.prompt == b.prompt


def test_json_round_trip():
    tl, _ = _record()
    assert Timeline.from_json(tl.to_json()).to_dict() == tl.to_dict()


def test_an_older_studio_file_with_integer_block_times_still_reads_as_blocks():
    data = {"prompts": [{"startTime": 0, "endTime": 2, "prompts": [{"text": "a", "weight": 1}]},
                        {"startTime": 2, "endTime": 3, "prompts": [{"text": "b", "weight": 1}],
                         "transitionSteps": 2}],
            "settings": {"resolution": {"height": HEIGHT, "width": WIDTH}, "seed": 1,
                         "denoisingSteps": [1000, 750, 500, 250]}, "version": "2.0"}
    tl = Timeline.from_dict(data)
    assert tl.num_blocks == 3
    blocks = list(tl.replay(make_session()))
    assert [b.prompt for b in blocks] == ["a", "a", "b"]
    with pytest.raises(ValueError, match="block indices"):  # a file that says blocks means it
        Timeline.from_dict({"prompts": [{"startTime": 0.5, "endTime": 1, "prompts": ["a"]}], "timeUnit": "blocks"})


def test_normalize_prompts():
    assert normalize_prompts("x") == [("x", 1.0)]
    assert normalize_prompts([{"text": "x", "weight": 2}, ("y", 1)]) == [("x", 2.0), ("y", 1.0)]
    with pytest.raises(ValueError):
        normalize_prompts([])
