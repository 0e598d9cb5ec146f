"""manage.py download_models: import, verify, check, the offline message and a (fake) hub
download, on a tiny set of files in the real names and key layouts. Never reaches the network."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command

from tests.support.processes import ROOT, free_port
from tests.support.tiny_models import sha256, tiny_text_encoder_config, write_tiny_set
from videogen.local import model_files

DIT = "krea-realtime-video-14b.safetensors"
VAE = "Wan2.1_VAE.pth"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-set") / "krea-realtime-video"
    write_tiny_set(folder)
    return folder


@pytest.fixture
def source(tiny_set, tmp_path):
    """A fresh copy of the tiny set to import (tests may spoil it)."""
    copy = tmp_path / "usb" / "krea-realtime-video"
    shutil.copytree(tiny_set, copy)
    return copy


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("download_models", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def flip_a_byte(path: Path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_an_imported_tiny_set_is_verified_recorded_and_loads(source, tmp_path):
    models = tmp_path / "models"
    out = run("--from-dir", str(source), "--models-dir", str(models))
    assert "all 5 files imported and verified" in out
    layout_dir = models / "krea-realtime-video"
    manifest = json.loads((layout_dir / "manifest.json").read_text())["files"]
    assert set(manifest) == {DIT, VAE, "models_t5_umt5-xxl-enc-bf16.pth", "google/umt5-xxl/tokenizer.json",
                             "google/umt5-xxl/tokenizer_config.json"}
    assert manifest[DIT] == {"size": (source / DIT).stat().st_size, "sha256": sha256(source / DIT),
                             "component": "dit", "source": f"tiny test set/{DIT}", "verified": "manifest"}
    assert "all 5 files verified" in run("--check", "--models-dir", str(models))
    assert run("--models-dir", str(models)).startswith("every file is in")  # nothing to fetch: no network
    # the imported files are the pipeline's: they load and make frames
    from videogen.pipeline import load_pipeline, tiny_pipeline_config, weights
    from videogen.pipeline import text_encoder as te
    from videogen.pipeline.vae import tiny_vae_config

    layout = weights.expected_layout(models)
    assert layout.missing() == []
    encoder = te.TextEncoder(tiny_text_encoder_config(checkpoint=str(layout.wan_t5_checkpoint),
                                                      tokenizer_dir=str(layout.wan_tokenizer_dir)), "cpu", torch.float32)
    session = load_pipeline(models, "cpu", torch.float32, tiny_pipeline_config(), vae_config=tiny_vae_config(),
                            text_encoder=encoder)
    block = next(session.start({"prompt": "a red fox", "width": 64, "height": 48, "num_blocks": 1}))
    assert block.frames.shape == (6, 48, 64, 3) and not block.random_weights  # Krea's first block: 9 decoded, 3 dropped
    assert session.encoder is not None  # the VAE file holds the encoder too (Krea's anchor re-encode, video in)


def test_hard_links_when_possible_copies_with_copy(source, tmp_path):
    run("--from-dir", str(source.parent), "--models-dir", str(tmp_path / "linked"))  # a MODELS_DIR works too
    assert os.path.samefile(source / DIT, tmp_path / "linked" / "krea-realtime-video" / DIT)
    run("--from-dir", str(source), "--models-dir", str(tmp_path / "copied"), "--copy")
    assert not os.path.samefile(source / DIT, tmp_path / "copied" / "krea-realtime-video" / DIT)


def test_a_corrupted_file_is_named_and_not_imported(source, tmp_path):
    flip_a_byte(source / DIT)
    models = tmp_path / "models"
    with pytest.raises(CommandError, match=f"1 of 5 files missing or failed verification: {DIT}"):
        run("--from-dir", str(source), "--models-dir", str(models))
    assert not (models / "krea-realtime-video" / DIT).exists()
    assert not list((models / "krea-realtime-video").glob(".*.partial"))
    assert (models / "krea-realtime-video" / VAE).is_file()  # the good ones are in


def test_the_corruption_message_gives_both_hashes(tiny_set, source, tmp_path):
    flip_a_byte(source / VAE)
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("download_models", "--from-dir", str(source), "--models-dir", str(tmp_path / "m"), stdout=out)
    line = next(li for li in out.getvalue().splitlines() if "FAILED" in li)
    assert line.strip() == (f"FAILED  {VAE}: sha256 mismatch: expected {sha256(tiny_set / VAE)}, got "
                            f"{sha256(source / VAE)} (corrupted, or another version): not imported")


def test_a_missing_file_is_named_with_where_it_comes_from(source, tmp_path):
    (source / VAE).unlink()
    out = io.StringIO()
    with pytest.raises(CommandError, match=f"failed verification: {VAE}"):
        call_command("download_models", "--from-dir", str(source), "--models-dir", str(tmp_path / "m"), stdout=out)
    assert f"{VAE}: missing: not in {source} either (Wan 2.1 VAE, about 508 MB, from Wan-AI/Wan2.1-T2V-14B)" \
        in out.getvalue()


def test_files_no_manifest_knows_are_refused_unless_allowed(source, tmp_path):
    reference = tmp_path / "elsewhere.json"
    shutil.move(source / "manifest.json", reference)
    with pytest.raises(CommandError, match="5 of 5 files"):
        run("--from-dir", str(source), "--models-dir", str(tmp_path / "a"))
    assert "all 5 files imported" in run("--from-dir", str(source), "--models-dir", str(tmp_path / "b"),
                                         "--manifest", str(reference))
    out = run("--from-dir", str(source), "--models-dir", str(tmp_path / "c"), "--allow-unverified")
    assert out.count("imported UNVERIFIED") == 5
    assert json.loads((tmp_path / "c" / "krea-realtime-video" / "manifest.json").read_text())["files"][DIT][
        "verified"] == "unverified"


def test_a_wrong_file_under_the_right_name_fails_its_structure_check(source, tmp_path):
    (source / DIT).write_bytes(b"<html>rate limited</html>")
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["files"][DIT].update(size=25, sha256=sha256(source / DIT))
    (source / "manifest.json").write_text(json.dumps(manifest))
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("download_models", "--from-dir", str(source), "--models-dir", str(tmp_path / "m"), stdout=out)
    assert "is not a safetensors header" in out.getvalue()


def test_check_finds_later_damage_and_quick_compares_sizes(source, tmp_path):
    models = tmp_path / "models"
    run("--from-dir", str(source), "--models-dir", str(models))
    installed = models / "krea-realtime-video" / "models_t5_umt5-xxl-enc-bf16.pth"
    installed.unlink()  # break the hard link, then damage a copy
    shutil.copyfile(source / "models_t5_umt5-xxl-enc-bf16.pth", installed)
    flip_a_byte(installed, offset=installed.stat().st_size // 2)  # inside a tensor: the archive still opens
    with pytest.raises(CommandError, match="models_t5_umt5-xxl-enc-bf16.pth"):
        run("--check", "--models-dir", str(models))
    assert "all 5 files verified" in run("--check", "--quick", "--models-dir", str(models))  # same size
    with open(installed, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(CommandError, match="1 of 5"):
        run("--check", "--quick", "--models-dir", str(models))
    with pytest.raises(CommandError, match="no manifest at"):
        run("--check", "--models-dir", str(tmp_path / "empty"))


def test_offline_names_what_is_missing_and_how_to_import_it(tmp_path):
    with pytest.raises(CommandError) as caught:
        run("--models-dir", str(tmp_path))
    message = str(caught.value)
    assert message.startswith("cannot reach the Hugging Face Hub (HF_HUB_OFFLINE is set).")
    for name, repo in ((DIT, "krea/krea-realtime-video"), (VAE, "Wan-AI/Wan2.1-T2V-14B"),
                       ("models_t5_umt5-xxl-enc-bf16.pth", "Wan-AI/Wan2.1-T2V-14B"),
                       ("google/umt5-xxl/", "Wan-AI/Wan2.1-T2V-14B")):
        assert name in message and repo in message
    assert "download_models --from-dir /path/to/krea-realtime-video" in message


def test_an_unreachable_hub_is_the_same_clear_message_exit_1_no_traceback(tmp_path):
    env = {**os.environ, "STUDIO_ENV_FILE": "", "STUDIO_DATA_DIR": str(tmp_path / "data"),
           "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}  # nothing listens: refused, on loopback
    env.pop("HF_HUB_OFFLINE", None)
    done = subprocess.run([sys.executable, "manage.py", "download_models", "--models-dir", str(tmp_path / "m")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("CommandError: cannot reach the Hugging Face Hub (ConnectError")
    assert "--from-dir" in done.stderr and DIT in done.stderr


def test_bad_option_combinations_and_paths(tmp_path):
    with pytest.raises(CommandError, match="--quick goes with --check"):
        run("--quick")
    with pytest.raises(CommandError, match="no such directory"):
        run("--from-dir", str(tmp_path / "nope"), "--models-dir", str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CommandError, match="holds none of the pipeline's files"):
        run("--from-dir", str(tmp_path / "empty"), "--models-dir", str(tmp_path))
    out = run("--list", "--models-dir", str(tmp_path))
    assert out.count("MISSING") == 4 and "huggingface.co/krea/krea-realtime-video" in out


class FakeHub:
    """The hub's metadata and downloads, served from a local folder (no network)."""

    def __init__(self, remote: Path, lie_about: tuple[str, ...] = ()):
        self.remote, self.lie_about, self.downloads = remote, lie_about, []

    def commit(self, repo, revision):
        return "c0ffee" + "0" * 34

    def files(self, repo, path, revision):
        entries = [p for p in sorted(self.remote.rglob("*")) if p.is_file() and p.name != "manifest.json"]
        out = []
        for entry in entries:
            relative = entry.relative_to(self.remote).as_posix()
            if relative == path or (path.endswith("/") and relative.startswith(path)):
                lfs = not relative.endswith(".json")  # small JSON files live in git: only a blob id
                digest, blob = sha256(entry), model_files.git_blob_sha1(entry)
                if relative in self.lie_about:  # what the hub says is not what it serves
                    digest, blob = "0" * 64, "1" * 40
                out.append(model_files.HubFile(relative, entry.stat().st_size, digest if lfs else None, blob))
        return out

    def download(self, repo, path, revision, local_dir):
        self.downloads.append((repo, path, revision))
        target = Path(local_dir) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.remote / path, target)
        return target


def test_a_download_is_verified_by_the_hubs_metadata(source, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    hub = FakeHub(source)
    monkeypatch.setattr(model_files, "Hub", lambda **kw: hub)
    models = tmp_path / "models"
    out = run("--models-dir", str(models))
    assert "all 5 files downloaded and verified" in out
    assert {p for _, p, _ in hub.downloads} == {DIT, VAE, "models_t5_umt5-xxl-enc-bf16.pth",
                                                "google/umt5-xxl/tokenizer.json", "google/umt5-xxl/tokenizer_config.json"}
    entry = json.loads((models / "krea-realtime-video" / "manifest.json").read_text())["files"][DIT]
    assert entry["verified"] == "hub" and entry["source"] == f"krea/krea-realtime-video@c0ffee{'0' * 34}/{DIT}"
    assert "all 5 files verified" in run("--check", "--models-dir", str(models))
    assert run("--models-dir", str(models)).startswith("every file is in")  # a second run fetches nothing
    assert len(hub.downloads) == 5


def test_a_download_that_does_not_match_the_hub_is_removed(source, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    tokenizer_config = "google/umt5-xxl/tokenizer_config.json"  # kept in git: checked by its blob id
    monkeypatch.setattr(model_files, "Hub", lambda **kw: FakeHub(source, lie_about=(VAE, tokenizer_config)))
    out = io.StringIO()
    with pytest.raises(CommandError, match=f"2 of 5 files missing or failed verification: {VAE}, {tokenizer_config}"):
        call_command("download_models", "--models-dir", str(tmp_path / "m"), stdout=out)
    assert f"{VAE}: sha256 mismatch: the hub says {'0' * 64}, got {sha256(source / VAE)}; the download was " \
           "removed" in out.getvalue()
    assert f"{tokenizer_config}: git blob id mismatch: the hub says {'1' * 40}" in out.getvalue()
    root = tmp_path / "m" / "krea-realtime-video"
    assert not (root / VAE).exists() and (root / DIT).is_file()
    assert set(json.loads((root / "manifest.json").read_text())["files"]) == {
        DIT, "models_t5_umt5-xxl-enc-bf16.pth", "google/umt5-xxl/tokenizer.json"}
