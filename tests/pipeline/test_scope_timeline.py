"""Daydream Scope's timelines and workflows, both ways (issue 18): seconds onto blocks, every
setting honoured or named in a warning, and a recorded session exported so Scope loads it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.scope_import import timeline_problems, workflow_problems
from videogen.pipeline import scope
from videogen.pipeline.scope import export_scope_timeline, export_scope_workflow, import_timeline
from videogen.pipeline.timeline import (
    BLOCK_FRAMES,
    DEFAULT_KV_CACHE_ATTENTION_BIAS,
    DEFAULT_TRANSITION_STEPS,
    FIRST_BLOCK_FRAMES,
    TIMELINE_FPS,
    BlockClock,
    Timeline,
    time_unit,
)

from .fakes import HEIGHT, WIDTH, make_session, params

pytestmark = pytest.mark.timeout(120)
PIPELINE = Path(__file__).resolve().parents[2] / "videogen" / "pipeline"


def flower(**settings) -> dict:
    """A file shaped like Scope's published krea example (timeline-krea-flower-bloom*.json)."""
    return {
        "prompts": [
            {"startTime": 0, "endTime": 0.6,
             "prompts": [{"text": "a flower bud in morning light", "weight": 100}]},
            {"startTime": 0.6, "endTime": 1.3,
             "prompts": [{"text": "the flower turns red", "weight": 100}]},
            {"startTime": 1.3, "endTime": 2.1,
             "prompts": [{"text": "the flower turns blue", "weight": 100}]},
        ],
        "settings": {"pipelineId": "krea-realtime-video", "resolution": {"height": 320, "width": 576}, "seed": 42,
                     "denoisingSteps": [1000, 750], "noiseScale": 0.7, "noiseController": True,
                     "manageCache": True, "quantization": None, **settings},
        "version": "2.0",
        "exportedAt": "2025-10-30T18:14:05.201Z",
    }


def test_seconds_map_to_the_nearest_block_boundary_at_the_recording_rate():
    from videogen.realtime.recording import RECORDING_FPS

    assert TIMELINE_FPS == RECORDING_FPS == 16 and (FIRST_BLOCK_FRAMES, BLOCK_FRAMES) == (9, 12)
    clock = BlockClock()
    assert [clock.seconds(b) for b in range(4)] == [0.0, 9 / 16, 21 / 16, 33 / 16]
    assert [clock.block_at(t) for t in (0, 0.28, 0.29, 0.6, 1.3, 2.1, 2.43, 2.44)] == [0, 0, 1, 1, 2, 3, 3, 4]
    with_reset = BlockClock(frozenset({2}))  # block 2 starts a new stream: 9 frames again
    assert [with_reset.frame(b) for b in range(5)] == [0, 9, 21, 30, 42]
    assert with_reset.block_at(30 / 16) == 3 and with_reset.block_at(42 / 16) == 4
    krea_drops_three = BlockClock(first=6)  # a pipeline whose first block yields 6 frames
    assert [krea_drops_three.frame(b) for b in range(3)] == [0, 6, 18] and krea_drops_three.block_at(1.0) == 2


def test_seconds_land_on_the_blocks_of_the_pipeline_that_replays_them():
    data = flower()  # 0.6 s, 1.3 s and 2.1 s: frames 9.6, 20.8 and 33.6
    default, _ = import_timeline(data)
    six, _ = import_timeline(data, block_frames=(6, 12))  # block boundaries at 0, 6, 18, 30, 42
    assert [s.start for s in default.spans] == [0, 1, 2] and default.num_blocks == 3
    assert [s.start for s in six.spans] == [0, 1, 2] and six.num_blocks == 3 and six.block_frames == (6, 12)
    assert import_timeline({**data, "blockFrames": [6, 12]})[0].block_frames == (6, 12)  # the file's own first
    recorded = Timeline.from_dict({"prompts": [{"startTime": 0, "endTime": 2, "prompts": [{"text": "a"}]}],
                                   "blockFrames": [6, 12]})
    assert recorded.block_frames == (6, 12) and export_scope_timeline(recorded)["prompts"][0]["endTime"] == 18 / 16
    with pytest.raises(ValueError, match="blockFrames must be"):
        Timeline.from_dict({"prompts": [], "blockFrames": [9]})


@pytest.mark.parametrize(("data", "unit"), [
    ({"prompts": [{"startTime": 0, "endTime": 3}], "settings": {"seed": 1}, "version": "2.0"}, "blocks"),
    ({"prompts": [{"startTime": 0, "endTime": 3}], "exportedAt": "2025-10-27T16:10:59.279Z"}, "seconds"),
    ({"prompts": [{"startTime": 0, "endTime": 3}], "settings": {"pipelineId": "longlive"}}, "seconds"),
    ({"prompts": [{"startTime": 0, "endTime": 2.5}]}, "seconds"),
    ({"prompts": [{"startTime": 0, "endTime": 2.5}], "timeUnit": "seconds"}, "seconds"),
    ({"prompts": [{"startTime": 0, "endTime": 3}], "timeUnit": "blocks"}, "blocks"),
])
def test_older_block_files_are_told_apart_from_seconds(data, unit):
    assert time_unit(data) == unit
    with pytest.raises(ValueError, match="timeUnit must be"):
        time_unit({"prompts": [], "timeUnit": "frames"})


def test_a_scope_timeline_in_seconds_is_read_with_its_settings_and_no_warning():
    timeline, warnings = import_timeline(flower(kvCacheAttentionBias=0.5))
    assert warnings == []
    assert [(s.start, s.end, s.transition_steps) for s in timeline.spans] == [
        (0, 1, DEFAULT_TRANSITION_STEPS), (1, 2, 4), (2, 3, 4)]  # no transitionSteps: Scope's 4
    assert timeline.spans[1].prompts == [("the flower turns red", 100.0)]
    assert (timeline.width, timeline.height, timeline.seed, timeline.denoising_steps) == (576, 320, 42, [1000, 750])
    assert timeline.params == {"kv_cache_attention_bias": 0.5} and timeline.num_blocks == 3


def test_what_studio_cannot_honour_is_named_never_dropped():
    data = flower(pipelineId="longlive", quantization="fp8_e4m3fn", inputMode="video",
                  loras=[{"id": "l1", "path": "ink.safetensors", "scale": 1.0}], loraMergeStrategy="runtime_peft",
                  vaceEnabled=True, vaceContextScale=0.4, schemaFieldOverrides={"vae_type": "lightvae"})
    data["prompts"][1].update(transitionSteps=6, temporalInterpolationMethod="slerp")
    data["prompts"][2].update(transitionSteps=0, temporalInterpolationMethod="slerp")  # a cut: nothing to slerp
    data["prompts"][2]["mood"] = "calm"
    data["shareUrl"] = "https://example.invalid/x"
    timeline, warnings = import_timeline(data)
    text = "\n".join(warnings)
    for named in ("settings.pipelineId is 'longlive'", "settings.quantization is 'fp8_e4m3fn'",
                  "settings.inputMode is 'video'", "settings.loras (ink.safetensors)",
                  "settings.vaceEnabled = true", "settings.vaceContextScale = 0.4",
                  "settings.schemaFieldOverrides.vae_type = \"lightvae\"",
                  "temporalInterpolationMethod 'slerp' (prompt 2)", "prompt 3: mood", "shareUrl"):
        assert named in text, (named, warnings)
    assert len(warnings) == 10
    assert [s.transition_steps for s in timeline.spans] == [4, 6, None]  # 0 is a cut, as in Scope


def test_entries_play_as_scope_plays_them_short_overlapping_empty_and_late_first():
    data = {"prompts": [
        {"startTime": 0.5, "endTime": 2.0, "prompts": [{"text": "a", "weight": 1}]},  # first plays from 0
        {"startTime": 1.0, "endTime": 3.0, "prompts": [{"text": "b", "weight": 1}]},  # overlaps: from 2.0
        {"startTime": 1.5, "endTime": 1.9, "prompts": [{"text": "c", "weight": 1}]},  # inside "a": never plays
        {"startTime": 3.0, "endTime": 3.0, "prompts": [{"text": "d", "weight": 1}]},  # no length
        {"startTime": 3.0, "endTime": 3.1, "prompts": [{"text": "e", "weight": 1}]},  # shorter than half a block
        {"startTime": 3.1, "endTime": 4.0, "text": "f"},  # Scope 1.0: text only
    ], "exportedAt": "2025-10-24T00:00:00.000Z", "version": "1.0"}
    timeline, warnings = import_timeline(data)
    # "b" from 2.0 s = frame 32: the boundary nearest is block 3's (frame 33).
    assert [(s.start, s.prompts[0][0]) for s in timeline.spans] == [(0, "a"), (3, "b"), (4, "f")]
    assert timeline.num_blocks == BlockClock().block_at(4.0) == 6
    text = "\n".join(warnings)
    assert "prompt 2 overlaps" in text and "prompt 3 (1.5-1.9 s) lies inside" in text
    assert "prompt 4 has no length" in text and "prompt 5 is shorter than half a block" in text


def test_seed_changes_and_resets_travel_in_seconds():
    recorded = Timeline(64, 48, 1, [1000, 500])
    recorded.record_prompt(0, "a")
    recorded.record_prompt(3, "b", 2)
    recorded.record_event(2, reset=True)
    recorded.record_event(4, seed=9)
    recorded.blocks = 6
    exported = export_scope_timeline(recorded, exported_at="2026-01-01T00:00:00.000Z")
    # Block 2 restarts the stream (9 frames), so block 3 starts at frame 9 + 12 + 9 = 30.
    assert exported["events"] == [{"time": 21 / 16, "reset": True}, {"time": 42 / 16, "seed": 9}]
    assert [p["startTime"] for p in exported["prompts"]] == [0, 30 / 16]
    assert exported["prompts"][-1]["endTime"] == (9 + 12 + 9 + 12 + 12 + 12) / 16
    back, warnings = import_timeline(exported)
    assert warnings == [] and back.to_dict()["prompts"] == recorded.to_dict()["prompts"]
    assert back.events == recorded.events and back.num_blocks == 6


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["prompts"][1].update(startTime="soon"), "prompt 2 startTime must be a number of seconds"),
    (lambda d: d["prompts"][1].update(endTime=-1), "prompt 2 endTime must be from 0"),
    (lambda d: d["settings"].update(kvCacheAttentionBias=5), "kvCacheAttentionBias must be a number from 0.01"),
    (lambda d: d["settings"].update(resolution="hd"), "settings.resolution must be"),
    (lambda d: d["settings"].update(denoisingSteps="fast"), "settings.denoisingSteps must be a list"),
    (lambda d: d["prompts"][0].update(prompts=[{"text": "a", "weight": "heavy"}]), "weight must be a number"),
    (lambda d: d["prompts"][0].update(transitionSteps=1.5), "transitionSteps must be a whole number"),
    (lambda d: d["prompts"][0].update(temporalInterpolationMethod="cubic"), "must be 'linear' or 'slerp'"),
])
def test_a_bad_value_names_its_field(change, message):
    data = flower()
    change(data)
    with pytest.raises(ValueError, match=message):
        import_timeline(data)


def _record():
    """A tiny session with every kind of change: a blend, a weighted cut, a seed, a reset."""
    session = make_session()
    blocks = []
    for i, block in enumerate(session.start(params(num_blocks=6, seed=11, blend_blocks=2))):
        blocks.append(block)
        if i == 0:
            session.update(prompt="a city at night")
        if i == 1:
            session.update(prompt=[("a forest", 2.0), ("rain", 1.0)], blend_blocks=1)
        if i == 2:
            session.update(reset=True)
        if i == 3:
            session.update(seed=42)
    # What the recorder states besides the changes: the frames its blocks made (9 or 6 for a
    # first block, as the pipeline drops frames or not; 12 after) and the attention bias used.
    session.timeline.block_frames = (len(blocks[0].frames), len(blocks[1].frames))
    session.timeline.params.setdefault("kv_cache_attention_bias", session.kv_bias)
    return session.timeline, blocks


def test_a_recorded_session_exports_files_scope_loads_and_plays_at_the_recordings_speed():
    recorded, blocks = _record()
    stored = recorded.to_dict()  # what a session row and the MP4 tag keep
    exported = export_scope_timeline(stored)
    workflow = export_scope_workflow(stored, name="fox")
    assert timeline_problems(exported) == [] and workflow_problems(workflow) == []
    frames = np.cumsum([0, *(len(b.frames) for b in blocks)]) / TIMELINE_FPS  # where each block starts, s
    assert [p["startTime"] for p in exported["prompts"]] == [frames[0], frames[1], frames[2]]
    first, later = recorded.block_frames
    assert exported["prompts"][-1]["endTime"] == frames[-1] == (first + later + later + first + later + later) / 16
    assert [p["transitionSteps"] for p in exported["prompts"]] == [0, 2, 0]
    assert exported["settings"] == {
        "pipelineId": "krea-realtime-video", "inputMode": "text", "resolution": {"height": HEIGHT, "width": WIDTH},
        "seed": 11, "denoisingSteps": [1000, 750, 500, 250], "manageCache": True, "quantization": None,
        "kvCacheAttentionBias": recorded.params["kv_cache_attention_bias"], "loras": []}
    entries = workflow["timeline"]["entries"]
    assert [(e["start_time"], e["end_time"]) for e in entries] == [
        (p["startTime"], p["endTime"]) for p in exported["prompts"]]
    main = workflow["pipelines"][0]
    assert main["pipeline_id"] == "krea-realtime-video" and main["params"]["base_seed"] == 11
    assert main["params"]["kv_cache_attention_bias"] == recorded.params["kv_cache_attention_bias"]
    # A stored timeline that does not say used the pipeline's bias of that time: Scope's 0.3.
    assert export_scope_timeline({k: v for k, v in stored.items() if k != "settings"})["settings"][
        "kvCacheAttentionBias"] == DEFAULT_KV_CACHE_ATTENTION_BIAS == 0.3

    for document in (exported, workflow):  # both come back to the same blocks and replay exactly
        back, warnings = import_timeline(json.loads(json.dumps(document)))
        assert warnings == [] and back.to_dict()["prompts"] == stored["prompts"]
        assert back.events == recorded.events and back.num_blocks == len(blocks)
    replayed = list(back.replay(make_session()))
    assert len(replayed) == len(blocks)
    for a, b in zip(blocks, replayed, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)


def test_the_transcribed_checks_refuse_what_scope_refuses():
    assert timeline_problems({"settings": {}}) == ["Invalid timeline file format"]
    bad = flower(kvCacheAttentionBias="0.3")
    bad["prompts"][1]["startTime"] = 0.2  # before the first one ends
    assert len(timeline_problems(bad)) == 2
    assert workflow_problems({"format": "scope-workflow", "metadata": {}, "pipelines": []}) == [
        "Malformed workflow file: Missing required fields: metadata or pipelines"]
    wrong = export_scope_workflow(Timeline.from_dict(flower()), name="x")
    wrong["pipelines"][0]["params"]["manage_cache"] = "yes"
    wrong["pipelines"][0]["source"] = {"type": "npm"}
    assert len(workflow_problems(wrong)) == 2


def starter_workflow() -> dict:
    """Shaped like Scope's starter workflows (docs/pipeline.md, "Daydream Scope files")."""
    return {
        "format": "scope-workflow", "format_version": "1.0",
        "metadata": {"name": "Mythical Creature", "created_at": "2026-03-20T22:12:35.393Z", "scope_version": "0.1.8"},
        "pipelines": [
            {"pipeline_id": "video-depth-anything", "source": {"type": "builtin"}, "loras": [], "params": {},
             "role": "preprocessor"},
            {"pipeline_id": "krea-realtime-video", "pipeline_version": "1.0.0", "source": {"type": "builtin"},
             "loras": [{"id": "lora-0", "filename": "ink.safetensors", "weight": 1.5,
                        "merge_mode": "permanent_merge"}],
             "params": {"width": 512, "height": 320, "base_seed": 7, "input_mode": "text", "noise_scale": 0.7,
                        "manage_cache": False, "quantization": None, "vace_enabled": False,
                        "vace_context_scale": 0.4, "denoising_step_list": [1000, 750],
                        "kv_cache_attention_bias": 0.25, "vae_type": "wan"},
             "role": "main"},
        ],
        "timeline": {"entries": [
            {"start_time": 0, "end_time": 0.6, "prompts": [{"text": "slime", "weight": 1}]},
            {"start_time": 0.6, "end_time": 1.4, "transition_steps": 2,
             "prompts": [{"text": "slime", "weight": 1}, {"text": "ink", "weight": 3}]},
        ]},
        "prompts": [{"text": "slime", "weight": 1}],
        "interpolation_method": "slerp",
        "transition_steps": 3,
    }


def test_a_scope_workflow_is_read_from_its_main_pipeline_and_timeline():
    timeline, warnings = import_timeline(starter_workflow())
    assert (timeline.width, timeline.height, timeline.seed, timeline.denoising_steps) == (512, 320, 7, [1000, 750])
    assert timeline.params == {"kv_cache_attention_bias": 0.25}
    assert [(s.start, s.end, s.transition_steps) for s in timeline.spans] == [(0, 1, 3), (1, 2, 2)]
    assert timeline.spans[1].prompts == [("slime", 1.0), ("ink", 3.0)]
    text = "\n".join(warnings)
    for named in ("pipelines video-depth-anything (preprocessor)", "pipelines[1].loras (ink.safetensors)",
                  "temporalInterpolationMethod 'slerp' (timeline entry 1, timeline entry 2)",
                  "timeline entry 2: its weighted prompts are mixed linearly"):
        assert named in text, (named, warnings)
    assert len(warnings) == 4


def test_a_workflow_without_a_timeline_plays_its_prompt_for_five_seconds():
    data = starter_workflow()
    data.update(timeline=None, temporal_interpolation_method="linear", interpolation_method="linear")
    data["pipelines"] = data["pipelines"][1:2]
    data["pipelines"][0]["loras"] = []
    timeline, warnings = import_timeline(data)
    assert [s.prompts for s in timeline.spans] == [[("slime", 1.0)]]
    assert timeline.num_blocks == BlockClock().block_at(scope.UNTIMED_SECONDS) == 7
    assert warnings == ["the workflow has no timeline: its prompt plays for 5 s (ask for more blocks for a "
                        "longer video)"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(format="comfy-workflow"), "is not a Scope workflow"),
    (lambda d: d.update(metadata={"title": "x"}), "missing required fields: metadata or pipelines"),
    (lambda d: d.update(pipelines=[]), "missing required fields: metadata or pipelines"),
    (lambda d: d["pipelines"][0].update(pipeline_id=""), r"pipelines\[0\] needs a pipeline_id"),
    (lambda d: d.update(timeline={"entries": "all"}), "timeline must be"),
    (lambda d: d.update(timeline=None, prompts=None), "neither a timeline nor prompts"),
])
def test_a_bad_workflow_says_what_is_wrong(change, message):
    data = starter_workflow()
    change(data)
    with pytest.raises(ValueError, match=message):
        import_timeline(data)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (function bodies included); relative ones
    start with a dot."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_timelines_import_plain_python_only_and_no_circle():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    timeline_imports = _imports(PIPELINE / "timeline.py")
    assert {name.split(".")[0] for name in timeline_imports} <= stdlib, timeline_imports  # no .session, no torch
    scope_imports = _imports(PIPELINE / "scope.py")
    assert {name for name in scope_imports if name.split(".")[0] not in stdlib} == {".timeline"}
    # And the module really loads with torch and Django unavailable.
    code = ("import importlib.util, sys\n"
            "sys.modules.update(torch=None, django=None, numpy=None)\n"
            f"spec = importlib.util.spec_from_file_location('timeline_alone', {str(PIPELINE / 'timeline.py')!r})\n"
            "module = importlib.util.module_from_spec(spec)\n"
            "sys.modules['timeline_alone'] = module\n"
            "spec.loader.exec_module(module)\n"
            "print(module.Timeline.from_dict({'prompts': [{'startTime': 0, 'endTime': 1.5, "
            "'prompts': [{'text': 'a', 'weight': 1}]}]}).num_blocks)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
