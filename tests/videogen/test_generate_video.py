"""manage.py generate_video: the tiny pipeline through the command, to a playable MP4."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from tests.support.media import facts
from tests.support.processes import ROOT
from tests.support.scope_import import timeline_problems, workflow_problems
from videogen.gallery import media


@pytest.fixture
def tiny(settings):
    from videogen.local.host import host

    settings.STUDIO_PIPELINE, settings.STUDIO_PIPELINE_DEVICE = "tiny", "cpu"
    host.unload()
    yield host
    host.unload()


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("generate_video", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_a_prompt_makes_a_playable_mp4_of_the_asked_size(tiny, tmp_path):
    out = tmp_path / "fox.mp4"
    stdout, stderr = run("--prompt", "a red fox", "--output", str(out), "--width", "96", "--height", "64",
                         "--blocks", "3", "--seed", "4", "--steps", "2")
    assert facts(out) == (30, 96, 64, 16.0)  # 6 frames, then 12 a block
    tags = media.read_metadata(out.read_bytes())
    assert tags["generator"] == "manage.py generate_video" and tags["random_weights"] is True
    assert (tags["seed"], tags["blocks"], tags["denoising_steps"]) == (4, 3, [1000, 500])
    assert tags["timeline"]["prompts"][0]["prompts"] == [{"text": "a red fox", "weight": 1.0}]
    assert "RANDOM weights" in stderr and "3/3 blocks" in stderr and "1/3 blocks" in stderr
    assert f"wrote {out}: 96x64, 30 frames (3 blocks), 1.88 s at 16 fps" in stdout
    for shown in ("fps: ", "time to first frame: ", "per block (ms): p50 ", ", p90 ", "DiT step"):
        assert shown in stdout


def test_num_frames_and_json_numbers(tiny, tmp_path):
    out = tmp_path / "short.mp4"
    stdout, _ = run("--prompt", "waves", "-o", str(out), "--width", "64", "--height", "64", "--num-frames", "10",
                    "--json", "--no-progress")
    numbers = json.loads(stdout)
    assert facts(out)[:3] == (10, 64, 64)
    assert numbers["frames"] == 10 and numbers["blocks"] == 2 and numbers["size"] == out.stat().st_size
    assert numbers["fps"] > 0 and numbers["ttff_s"] > 0 and numbers["block_ms_p90"] >= numbers["block_ms_p50"]
    assert numbers["pipeline"]["kind"] == "tiny"


def test_a_timeline_file_is_replayed_with_its_prompt_changes(tiny, tmp_path):
    timeline = {"prompts": [{"startTime": 0, "endTime": 1, "prompts": [{"text": "sunrise", "weight": 1.0}]},
                            {"startTime": 1, "endTime": 2, "prompts": [{"text": "sunset", "weight": 1.0}]}],
                "settings": {"resolution": {"height": 480, "width": 832}, "seed": 2,
                             "denoisingSteps": [1000, 750, 500, 250]}, "version": "2.0"}
    path = tmp_path / "session.json"
    path.write_text(json.dumps(timeline))
    out = tmp_path / "replay.mp4"
    run("--timeline", str(path), "--output", str(out), "--width", "64", "--height", "64")
    assert facts(out)[:3] == (18, 64, 64)
    recorded = media.read_metadata(out.read_bytes())["timeline"]
    assert recorded["prompts"] == timeline["prompts"] and recorded["settings"]["seed"] == 2


def scope_timeline(pipeline_id: str, **settings) -> dict:
    """A file shaped like Scope's published examples (timeline-krea-flower-bloom.json,
    timeline-panda.json): fractional seconds, weights of 100, every settings field."""
    return {
        "prompts": [
            {"startTime": 0, "endTime": 0.6, "prompts": [{"text": "a flower bud", "weight": 100}]},
            {"startTime": 0.6, "endTime": 1.3055600001, "prompts": [{"text": "the flower turns red", "weight": 100}]},
            {"startTime": 1.3055600001, "endTime": 2.0811, "prompts": [{"text": "the flower turns blue", "weight": 100}]},
        ],
        "settings": {"pipelineId": pipeline_id, "resolution": {"height": 64, "width": 96}, "seed": 42,
                     "denoisingSteps": [1000, 750], "noiseScale": 0.7, "noiseController": True, "manageCache": True,
                     **settings},
        "version": "2.0",
        "exportedAt": "2025-10-30T18:14:05.201Z",
    }


@pytest.mark.parametrize(("data", "warning"), [
    (scope_timeline("krea-realtime-video", quantization="fp8_e4m3fn"), "settings.quantization is 'fp8_e4m3fn'"),
    (scope_timeline("longlive"), "settings.pipelineId is 'longlive'"),
])
def test_scope_example_timelines_replay_in_seconds_with_their_settings(tiny, tmp_path, data, warning):
    path = tmp_path / "scope.json"
    path.write_text(json.dumps(data))
    out = tmp_path / "scope.mp4"
    _, stderr = run("--timeline", str(path), "--output", str(out))
    # 0.6 s, 1.31 s and 2.08 s are frames 9.6, 20.9 and 33.3: nearest to the boundaries of blocks
    # 1, 2 and 3 (frames 6, 18, 30: the first block yields 6).
    assert facts(out)[1:] == (96, 64, 16.0)  # the file's resolution
    tags = media.read_metadata(out.read_bytes())
    assert (tags["seed"], tags["denoising_steps"], tags["blocks"]) == (42, [1000, 750], 3)
    spans = tags["timeline"]["prompts"]
    assert [(s["startTime"], s["prompts"][0]["text"], s.get("transitionSteps")) for s in spans] == [
        (0, "a flower bud", None), (1, "the flower turns red", 4), (2, "the flower turns blue", 4)]
    assert [line for line in stderr.splitlines() if line.startswith("warning: ")] == [
        line for line in stderr.splitlines() if warning in line]


def test_every_setting_of_a_2_1_timeline_reaches_the_pipeline_or_a_warning(tiny, tmp_path):
    data = scope_timeline("krea-realtime-video", inputMode="text", kvCacheAttentionBias=0.6, quantization=None,
                          loras=[{"id": "x", "path": "ink.safetensors", "scale": 1.0}],
                          loraMergeStrategy="permanent_merge")
    data["version"] = "2.1"
    for entry in data["prompts"]:
        entry.update(transitionSteps=0, temporalInterpolationMethod="slerp")
    path = tmp_path / "scope.json"
    path.write_text(json.dumps(data))
    stdout, stderr = run("--timeline", str(path), "-o", str(tmp_path / "x.mp4"), "--json", "--no-progress")
    assert tiny.loaded.session.kv_bias == 0.6
    warnings = json.loads(stdout)["warnings"]
    assert len(warnings) == 1 and "settings.loras (ink.safetensors)" in warnings[0]
    assert f"warning: {warnings[0]}" in stderr
    tags = media.read_metadata((tmp_path / "x.mp4").read_bytes())
    assert all("transitionSteps" not in s for s in tags["timeline"]["prompts"])  # 0 steps: cuts


def test_a_scope_workflow_replays_and_the_video_exports_back_for_scope(tiny, tmp_path):
    workflow = {
        "format": "scope-workflow", "format_version": "1.0",
        "metadata": {"name": "flowers", "created_at": "2026-03-20T22:12:35.393Z", "scope_version": "0.2.0"},
        "pipelines": [{"pipeline_id": "krea-realtime-video", "source": {"type": "builtin"}, "loras": [],
                       "params": {"width": 64, "height": 64, "base_seed": 5, "denoising_step_list": [1000, 500],
                                  "kv_cache_attention_bias": 0.4, "manage_cache": True, "input_mode": "text"},
                       "role": "main"}],
        "timeline": {"entries": [
            {"start_time": 0, "end_time": 0.7, "prompts": [{"text": "rain", "weight": 1}], "transition_steps": 0},
            {"start_time": 0.7, "end_time": 1.4, "prompts": [{"text": "snow", "weight": 1}], "transition_steps": 2,
             "temporal_interpolation_method": "linear"},
        ]},
        "prompts": [{"text": "rain", "weight": 1}],
        "interpolation_method": "linear", "transition_steps": 4, "temporal_interpolation_method": "linear",
    }
    source = tmp_path / "flowers.scope-workflow.json"
    source.write_text(json.dumps(workflow))
    out, back_timeline, back_workflow = tmp_path / "f.mp4", tmp_path / "t.json", tmp_path / "w.json"
    _, stderr = run("--timeline", str(source), "-o", str(out), "--scope-timeline", str(back_timeline),
                    "--scope-workflow", str(back_workflow))
    assert "warning:" not in stderr
    frames = facts(out)[0]
    assert media.read_metadata(out.read_bytes())["blocks"] == 2 and tiny.loaded.session.kv_bias == 0.4
    exported, exported_workflow = json.loads(back_timeline.read_text()), json.loads(back_workflow.read_text())
    assert timeline_problems(exported) == [] and workflow_problems(exported_workflow) == []
    second = (frames - 12) / 16  # the second block's 12 frames end the MP4
    assert [(p["startTime"], p["endTime"], p["transitionSteps"]) for p in exported["prompts"]] == [
        (0, second, 0), (second, frames / 16, 2)]  # seconds of the MP4 itself
    params = exported_workflow["pipelines"][0]["params"]
    assert (params["width"], params["base_seed"], params["kv_cache_attention_bias"]) == (64, 5, 0.4)
    assert exported_workflow["metadata"]["name"] == "f"


def clip(path, colour: int, frames: int = 21) -> str:
    """A 64x64 MP4 at 16 fps in one colour with a moving bar."""
    import numpy as np

    from videogen.gallery.mp4 import encode_mp4

    video = np.full((frames, 64, 64, 3), colour, np.uint8)
    for i in range(frames):
        video[i, :, (i * 3) % 56:(i * 3) % 56 + 8] = 255 - colour
    path.write_bytes(encode_mp4(video))
    return str(path)


def first_frame(path):
    import av
    import numpy as np

    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24").astype(np.float32)


def test_an_input_video_is_restyled_at_its_strength(tiny, tmp_path):
    """Video to video: 21 frames at 16 fps are two blocks of input (9, then 12), so two blocks
    of output (6, then 12); another video with the same seed is another result."""
    outs = []
    for colour in (20, 230):
        out = tmp_path / f"v2v-{colour}.mp4"
        stdout, _ = run("--prompt", "a watercolour painting", "--input-video", clip(tmp_path / f"in-{colour}.mp4", colour),
                        "--strength", "0.7", "--width", "64", "--height", "64", "-o", str(out), "--json",
                        "--no-progress")
        numbers = json.loads(stdout)
        assert facts(out)[:3] == (18, 64, 64) and numbers["blocks"] == 2
        assert numbers["input_video_frames"] == 21 and numbers["strength"] == 0.7
        assert media.read_metadata(out.read_bytes())["strength"] == 0.7
        outs.append(first_frame(out))
    assert abs(outs[0] - outs[1]).mean() > 0.3


@pytest.mark.parametrize(("args", "message"), [
    (["--prompt", "x", "--width", "100", "--height", "64"], "multiples of 16"),
    (["--prompt", "x", "--steps", "9"], "steps must be an integer from 1 to 8"),
    (["--prompt", "x", "--blocks", "0"], "blocks must be from 1 to 200"),
    (["--timeline", "/no/such/timeline.json"], "no such file"),
    (["--prompt", "x", "--timeline", "t.json"], "not allowed with argument"),
    (["--prompt", "x", "--blocks", "2", "--num-frames", "9"], "not allowed with argument"),
    (["--prompt", "x", "--scope-timeline", "/no/such/dir/t.json"], "name a file in a directory that exists"),
    (["--prompt", "x", "--strength", "0.5"], "--strength goes with --input-video"),
    (["--prompt", "x", "--input-video", "/no/such/clip.mp4"], "no such file"),
])
def test_bad_input_is_one_clear_error(tiny, tmp_path, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args, "--output", str(tmp_path / "x.mp4"))
    assert not (tmp_path / "x.mp4").exists()


def test_bad_files_are_named(tiny, tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CommandError, match="is not JSON"):
        run("--timeline", str(tmp_path / "bad.json"), "-o", str(tmp_path / "x.mp4"))
    bad = scope_timeline("krea-realtime-video")
    bad["prompts"][1]["startTime"] = "soon"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(CommandError, match="is not a timeline Studio can read: prompt 2 startTime must be a number"):
        run("--timeline", str(tmp_path / "bad.json"), "-o", str(tmp_path / "x.mp4"))
    with pytest.raises(CommandError, match="does not exist"):
        run("--prompt", "x", "-o", str(tmp_path / "missing" / "x.mp4"))
    with pytest.raises(CommandError, match="is a directory"):
        run("--prompt", "x", "-o", str(tmp_path))


def test_from_the_command_line_exit_codes_and_no_traceback(tmp_path):
    env = {**os.environ, "STUDIO_ENV_FILE": "", "STUDIO_PIPELINE": "tiny", "STUDIO_PIPELINE_DEVICE": "cpu",
           "STUDIO_DATA_DIR": str(tmp_path / "data")}
    out = tmp_path / "cli.mp4"
    ok = subprocess.run([sys.executable, "manage.py", "generate_video", "--prompt", "a kite", "--output", str(out),
                         "--width", "64", "--height", "64", "--blocks", "1"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert facts(out)[:3] == (6, 64, 64) and "1/1 blocks" in ok.stderr and "time to first frame" in ok.stdout
    bad = subprocess.run([sys.executable, "manage.py", "generate_video", "--prompt", "a kite", "--output",
                          str(tmp_path / "bad.mp4"), "--width", "830", "--height", "480"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == ("CommandError: width and height must be multiples of 16 (the VAE's 8 x the "
                                  "DiT's patch of 2), e.g. 832x480 or 576x320; got 830x480 (nearest: 832x480)")
