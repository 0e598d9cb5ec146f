"""Checkpoint loading: lazy shards + index, key errors, fp8, dtype/device (CPU, tiny files)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from videogen.pipeline import weights
from videogen.pipeline.weights import (
    FP8_DTYPE,
    CheckpointMismatchError,
    FP8Linear,
    LazyCheckpoint,
    expected_layout,
    load_into,
    open_checkpoint,
    quantize_fp8,
    save_checkpoint,
)

REPO = Path(__file__).resolve().parents[2]


class Block(nn.Module):
    def __init__(self, dim: int = 16):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim, bias=False))
        self.register_buffer("freqs", torch.arange(4, dtype=torch.float32))

    def forward(self, x):
        x = self.q(self.norm(x))
        return x + self.ffn(x)


class Net(nn.Module):
    def __init__(self, dim: int = 16, depth: int = 3):
        super().__init__()
        self.embed = nn.Embedding(10, dim)
        self.blocks = nn.ModuleList(Block(dim) for _ in range(depth))
        self.head = nn.Linear(dim, 4)

    def forward(self, ids):
        x = self.embed(ids)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def _net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net().eval()


def test_single_file_round_trip_is_lazy(tmp_path):
    src = _net()
    path = tmp_path / "model.safetensors"
    save_checkpoint(src.state_dict(), path, metadata={"format": "pt"})
    ckpt = open_checkpoint(path)
    assert isinstance(ckpt, LazyCheckpoint)
    assert set(ckpt) == set(src.state_dict()) and len(ckpt) == len(src.state_dict())
    assert ckpt.shape("blocks.0.q.weight") == (16, 16)
    assert ckpt.metadata()["format"] == "pt"
    dst = _net(seed=1)
    report = load_into(dst, ckpt)
    assert set(report.loaded) == set(src.state_dict())
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(dst(ids), src(ids))


def test_safetensors_are_memory_mapped(tmp_path, monkeypatch):
    """Values come from safe_open(...).get_tensor one key at a time, never a full load."""
    import safetensors
    import safetensors.torch

    save_checkpoint(_net().state_dict(), tmp_path / "m.safetensors")
    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: pytest.fail("eager load_file"))
    monkeypatch.setattr(safetensors.torch, "load", lambda *a, **k: pytest.fail("eager load"))
    reads: list[str] = []
    real_safe_open = safetensors.safe_open

    class Spy:
        def __init__(self, *a, **k):
            self._h = real_safe_open(*a, **k)

        def keys(self):
            return self._h.keys()

        def get_tensor(self, key):
            reads.append(key)
            return self._h.get_tensor(key)

        def get_slice(self, key):
            return self._h.get_slice(key)

        def metadata(self):
            return self._h.metadata()

    monkeypatch.setattr(safetensors, "safe_open", Spy)
    ckpt = open_checkpoint(tmp_path / "m.safetensors")
    assert reads == []  # opening reads no tensor
    ckpt["head.weight"]
    assert reads == ["head.weight"]
    load_into(_net(1), ckpt)
    assert sorted(set(reads)) == sorted(ckpt) and len(reads) == len(ckpt) + 1  # each once


def test_multi_shard_directory_with_index(tmp_path):
    src = _net()
    files = save_checkpoint(src.state_dict(), tmp_path / "dit", max_shard_bytes=3000)
    assert len(files) >= 3
    index = json.loads((tmp_path / "dit" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(src.state_dict())
    ckpt = open_checkpoint(tmp_path / "dit")
    assert len(ckpt.files) == len(files)
    assert {ckpt.file_of(k).name for k in ckpt} == {f.name for f in files}
    dst = _net(seed=2)
    load_into(dst, ckpt)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    # the index file itself is accepted as the path too
    assert set(open_checkpoint(tmp_path / "dit" / "model.safetensors.index.json")) == set(ckpt)


def test_directory_without_index_and_broken_index(tmp_path):
    sd = _net().state_dict()
    keys = list(sd)
    save_checkpoint({k: sd[k] for k in keys[:5]}, tmp_path / "a" / "part1.safetensors")
    save_checkpoint({k: sd[k] for k in keys[5:]}, tmp_path / "a" / "part2.safetensors")
    assert set(open_checkpoint(tmp_path / "a")) == set(sd)

    save_checkpoint(sd, tmp_path / "b", max_shard_bytes=3000)
    shard = sorted((tmp_path / "b").glob("*.safetensors"))[0]
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=shard.name):
        open_checkpoint(tmp_path / "b")
    with pytest.raises(FileNotFoundError):
        open_checkpoint(tmp_path / "nothing-here.safetensors")


def test_pth_checkpoint_is_mmapped(tmp_path):
    src = _net()
    torch.save(src.state_dict(), tmp_path / "Wan2.1_VAE.pth")
    ckpt = open_checkpoint(tmp_path / "Wan2.1_VAE.pth")
    dst = _net(3)
    load_into(dst, ckpt)
    assert torch.equal(dst.head.weight, src.head.weight)


def test_missing_and_unexpected_keys_are_named():
    sd = dict(_net().state_dict())
    del sd["blocks.1.q.bias"]
    sd["blocks.9.extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointMismatchError) as err:
        load_into(_net(), sd)
    msg = str(err.value)
    assert "blocks.1.q.bias" in msg and "blocks.9.extra.weight" in msg
    assert "missing" in msg and "unexpected" in msg
    assert err.value.missing == ["blocks.1.q.bias"] and err.value.unexpected == ["blocks.9.extra.weight"]
    report = load_into(_net(), sd, strict=False)
    assert report.missing == ["blocks.1.q.bias"] and report.unexpected == ["blocks.9.extra.weight"]


def test_shape_mismatch_is_named_even_when_not_strict():
    sd = dict(_net().state_dict())
    sd["head.weight"] = torch.zeros(5, 16)
    with pytest.raises(CheckpointMismatchError, match=r"head\.weight.*\[5, 16\].*\[4, 16\]"):
        load_into(_net(), sd, strict=False)


def test_key_map_callable_and_prefix_dict():
    src = _net()
    prefixed = {f"model.diffusion_model.{k}": v for k, v in src.state_dict().items()}
    prefixed["vae.decoder.x"] = torch.zeros(1)
    dst = _net(4)
    report = load_into(dst, prefixed, key_map={"model.diffusion_model.": "", "vae.": None})
    assert report.skipped == ["vae.decoder.x"]
    assert torch.equal(dst.head.weight, src.head.weight)
    dst2 = _net(5)
    load_into(
        dst2,
        prefixed,
        key_map=lambda k: k.removeprefix("model.diffusion_model.") if k.startswith("model.") else None,
    )
    assert torch.equal(dst2.blocks[2].ffn[2].weight, src.blocks[2].ffn[2].weight)


def test_dtype_and_device_placement():
    src = _net()
    dst = _net(6)
    load_into(dst, src.state_dict(), dtype=torch.bfloat16, device="cpu", keep_dtype=lambda k: "norm" in k)
    assert dst.blocks[0].q.weight.dtype == torch.bfloat16
    assert dst.blocks[0].norm.weight.dtype == torch.float32  # kept
    assert dst.blocks[0].freqs.dtype == torch.bfloat16  # buffers are converted too
    assert all(p.device.type == "cpu" for p in dst.parameters())
    assert weights.default_dtype("cpu") == torch.float32
    assert weights.default_dtype("cuda") == torch.bfloat16
    ids = torch.tensor([[1, 2]])
    torch.testing.assert_close(dst.to(torch.float32)(ids), src(ids), atol=0.1, rtol=0.05)


def test_meta_module_is_materialised():
    src = _net()
    with torch.device("meta"):
        dst = Net()
    load_into(dst, src.state_dict(), device="cpu", dtype=torch.float32)
    assert all(p.device.type == "cpu" for p in dst.parameters())
    ids = torch.tensor([[3, 4]])
    assert torch.equal(dst.eval()(ids), src(ids))


def test_quantize_fp8_round_trip():
    w = torch.randn(64, 32) * 0.05
    q, scale = quantize_fp8(w)
    assert q.dtype == FP8_DTYPE and scale.ndim == 0
    back = q.float() * scale
    rel = (back - w).norm() / w.norm()
    assert rel < 0.05  # e4m3 keeps ~3 mantissa bits


def test_fp8_option_for_linear_weights(tmp_path):
    src = _net()
    save_checkpoint(src.state_dict(), tmp_path / "m.safetensors")
    dst = _net(7)
    report = load_into(dst, open_checkpoint(tmp_path / "m.safetensors"), dtype=torch.float32,
                       fp8=lambda k: k.startswith("blocks."))
    assert isinstance(dst.blocks[0].q, FP8Linear) and isinstance(dst.blocks[1].ffn[2], FP8Linear)
    assert isinstance(dst.head, nn.Linear) and not isinstance(dst.head, FP8Linear)
    assert dst.blocks[0].q.weight.dtype == FP8_DTYPE
    assert dst.blocks[0].norm.weight.dtype == torch.float32
    assert len(report.fp8) == 3 * 3
    deq = dst.blocks[0].q.dequantized_weight(torch.float32)
    assert ((deq - src.blocks[0].q.weight).norm() / src.blocks[0].q.weight.norm()) < 0.05
    torch.testing.assert_close(dst.blocks[0].q.bias, src.blocks[0].q.bias)
    ids = torch.tensor([[1, 5, 7]])
    out, ref = dst(ids), src(ids)
    assert ((out - ref).norm() / ref.norm()) < 0.1
    # an fp8 state dict (weights + per-tensor scales) saves and loads back exactly
    sd = {k: v for k, v in dst.state_dict().items()}
    assert "blocks.0.q.weight_scale" in sd
    save_checkpoint(sd, tmp_path / "fp8.safetensors")
    again = _net(8)
    load_into(again, open_checkpoint(tmp_path / "fp8.safetensors"), dtype=torch.float32,
              fp8=lambda k: k.startswith("blocks."))
    assert torch.equal(again(ids), out)
    # ... and into a plain module, dequantised
    plain = _net(9)
    load_into(plain, open_checkpoint(tmp_path / "fp8.safetensors"), dtype=torch.float32)
    assert isinstance(plain.blocks[0].q, nn.Linear)
    torch.testing.assert_close(plain.blocks[0].q.weight, deq)


def test_expected_layout(tmp_path, monkeypatch):
    layout = expected_layout(tmp_path)
    assert layout.dit == tmp_path / "krea-realtime-video" / "krea-realtime-video-14b.safetensors"
    assert len(layout.missing()) == 3
    d = layout.model_dir
    d.mkdir(parents=True)
    layout.dit.write_bytes(b"")
    (d / "Wan2.1_VAE.pth").write_bytes(b"")
    (d / "umt5-xxl").mkdir()
    (d / "umt5-xxl" / "config.json").write_text("{}")
    assert layout.missing() == [f"{d / 'umt5-xxl'}/tokenizer.json or spiece.model"]
    (d / "umt5-xxl" / "tokenizer.json").write_text("{}")
    assert layout.missing() == []
    assert layout.vae == d / "Wan2.1_VAE.pth"
    assert layout.text_encoder_source() == (d / "umt5-xxl", d / "umt5-xxl")
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "elsewhere"))
    assert expected_layout().root == tmp_path / "elsewhere"


def test_pipeline_modules_import_without_django():
    code = (
        "import videogen.pipeline.vae, videogen.pipeline.weights, videogen.pipeline.text_encoder, sys; "
        "assert 'django' not in sys.modules, 'django imported'; "
        "assert 'transformers' not in sys.modules, 'transformers imported eagerly'"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
