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
from videogen import media


@pytest.fixture
def tiny(settings):
    from videogen.pipeline_host import host

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
    assert facts(out) == (33, 96, 64, 16.0)
    tags = media.read_metadata(out.read_bytes())
    assert tags["generator"] == "manage.py generate_video" and tags["random_weights"] is True
    assert (tags["seed"], tags["blocks"], tags["denoising_steps"]) == (4, 3, [1000, 500])
    assert tags["timeline"]["prompts"][0]["prompts"] == [{"text": "a red fox", "weight": 1.0}]
    assert "RANDOM weights" in stderr and "3/3 blocks" in stderr and "1/3 blocks" in stderr
    assert f"wrote {out}: 96x64, 33 frames (3 blocks), 2.06 s at 16 fps" in stdout
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
    assert facts(out)[:3] == (21, 64, 64)
    recorded = media.read_metadata(out.read_bytes())["timeline"]
    assert recorded["prompts"] == timeline["prompts"] and recorded["settings"]["seed"] == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--prompt", "x", "--width", "100", "--height", "64"], "multiples of 16"),
    (["--prompt", "x", "--steps", "9"], "steps must be an integer from 1 to 8"),
    (["--prompt", "x", "--blocks", "0"], "blocks must be from 1 to 200"),
    (["--timeline", "/no/such/timeline.json"], "no such file"),
    (["--prompt", "x", "--timeline", "t.json"], "not allowed with argument"),
    (["--prompt", "x", "--blocks", "2", "--num-frames", "9"], "not allowed with argument"),
])
def test_bad_input_is_one_clear_error(tiny, tmp_path, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args, "--output", str(tmp_path / "x.mp4"))
    assert not (tmp_path / "x.mp4").exists()


def test_bad_files_are_named(tiny, tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CommandError, match="is not JSON"):
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
    assert facts(out)[:3] == (9, 64, 64) and "1/1 blocks" in ok.stderr and "time to first frame" in ok.stdout
    bad = subprocess.run([sys.executable, "manage.py", "generate_video", "--prompt", "a kite", "--output",
                          str(tmp_path / "bad.mp4"), "--width", "830", "--height", "480"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == ("CommandError: width and height must be multiples of 16 (the VAE's 8 x the "
                                  "DiT's patch of 2), e.g. 832x480 or 576x320; got 830x480 (nearest: 832x480)")
