"""The Wan 2.1 VAE decoder: shapes, streaming == one-shot, checkpoints (CPU, tiny weights)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from videogen.pipeline import vae as vae_mod
from videogen.pipeline.vae import (
    StreamingVAEDecoder,
    WanVAEConfig,
    WanVAEDecoder,
    load_original_state_dict,
    tiny_vae_config,
    to_uint8_frames,
)
from videogen.pipeline.weights import CheckpointMismatchError, open_checkpoint, save_checkpoint


def _randomized(decoder: WanVAEDecoder, seed: int = 0) -> WanVAEDecoder:
    """Random weights everywhere (Wan zero-initialises the attention proj; we want it used)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in decoder.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.ndim > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
    return decoder.eval()


@pytest.fixture(scope="module")
def decoder() -> WanVAEDecoder:
    return _randomized(WanVAEDecoder(tiny_vae_config()))


def _latents(t: int, h: int = 5, w: int = 6, b: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 16, t, h, w, generator=torch.Generator().manual_seed(seed))


def test_real_config_matches_wan_layout():
    cfg = WanVAEConfig()
    assert (cfg.z_dim, cfg.base_dim, cfg.dim_mult, cfg.num_res_blocks) == (16, 96, (1, 2, 4, 4), 2)
    assert cfg.temporal_upsample == cfg.temperal_upsample == (True, True, False)
    assert (cfg.spatial_factor, cfg.temporal_factor) == (8, 4)
    assert len(cfg.latents_mean) == len(cfg.latents_std) == 16
    assert cfg.latents_mean[0] == -0.7571 and cfg.latents_std[-1] == 1.9160
    with torch.device("meta"):
        dec = WanVAEDecoder(cfg)
    sd = dec.state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    # a few keys of Wan2.1_VAE.pth's decoder half, with their shapes
    assert shapes["conv2.weight"] == (16, 16, 1, 1, 1)
    assert shapes["decoder.conv1.weight"] == (384, 16, 3, 3, 3)
    assert shapes["decoder.middle.1.to_qkv.weight"] == (1152, 384, 1, 1)
    assert shapes["decoder.middle.0.residual.0.gamma"] == (384, 1, 1, 1)
    assert shapes["decoder.upsamples.3.time_conv.weight"] == (768, 384, 3, 1, 1)
    assert shapes["decoder.upsamples.3.resample.1.weight"] == (192, 384, 3, 3)
    assert shapes["decoder.upsamples.4.residual.2.weight"] == (384, 192, 3, 3, 3)
    assert shapes["decoder.upsamples.4.shortcut.weight"] == (384, 192, 1, 1, 1)
    assert shapes["decoder.upsamples.11.resample.1.weight"] == (96, 192, 3, 3)
    assert "decoder.upsamples.11.time_conv.weight" not in shapes  # upsample2d
    assert shapes["decoder.head.2.weight"] == (3, 96, 3, 3, 3)
    assert len([k for k in shapes if k.startswith("decoder.upsamples.")]) > 0
    assert max(int(k.split(".")[2]) for k in shapes if k.startswith("decoder.upsamples.")) == 14
    assert sum(v.numel() for v in sd.values()) == 73_295_603
    assert "latents_mean" not in sd  # statistics are constants, not checkpoint keys


def test_one_shot_shapes(decoder):
    for t, frames in [(1, 1), (2, 5), (3, 9), (7, 25)]:
        out = decoder.decode(_latents(t))
        assert out.shape == (1, 3, frames, 40, 48)
        assert out.abs().max() <= 1.0
    assert decoder.config.num_frames(3) == 9 and decoder.config.num_frames(3, first=False) == 12


def test_streaming_first_and_later_block_shapes(decoder):
    stream = StreamingVAEDecoder(decoder)
    assert stream.frames_for(3) == 9
    first = stream.decode_block(_latents(3, seed=2))
    assert first.shape == (1, 3, 9, 40, 48)
    assert stream.frames_for(3) == 12
    for seed in (3, 4):
        assert stream.decode_block(_latents(3, seed=seed)).shape == (1, 3, 12, 40, 48)
    assert stream.latent_frames == 9
    with pytest.raises(ValueError):
        stream.decode_block(torch.zeros(1, 16, 0, 5, 6))


@pytest.mark.parametrize("blocks", [[1] * 7, [3, 3, 1], [2, 2, 2, 1], [1, 3, 3], [4, 3], [5, 1, 1]])
def test_streaming_equals_one_shot(decoder, blocks):
    z = _latents(sum(blocks), b=2, seed=5)
    ref = decoder.decode(z)
    stream = StreamingVAEDecoder(decoder)
    parts, start = [], 0
    for n in blocks:
        parts.append(stream.decode_block(z[:, :, start : start + n]))
        start += n
    streamed = torch.cat(parts, dim=2)
    assert streamed.shape == ref.shape == (2, 3, 1 + 4 * (sum(blocks) - 1), 40, 48)
    assert (streamed - ref).abs().max().item() < 1e-5
    assert ref.std() > 0.05  # not a degenerate all-clamped / all-zero output


def test_cache_holds_two_frames_per_conv(decoder):
    stream = StreamingVAEDecoder(decoder)
    stream.decode_block(_latents(3))
    feats = stream.cache.feats
    n_convs = sum(
        1
        for m in decoder.decoder.modules()
        if isinstance(m, vae_mod.CausalConv3d) and m.kernel_size[0] == 3
    )
    assert len(feats) == n_convs  # one slot per temporal (k=3) causal conv
    assert all(f is not None and f.shape[2] <= vae_mod.CACHE_T for f in feats)
    assert stream.cache.nbytes() > 0


def test_reset_starts_a_new_stream(decoder):
    stream = StreamingVAEDecoder(decoder)
    a1 = stream.decode_block(_latents(3, seed=7))
    stream.decode_block(_latents(3, seed=8))
    stream.reset()
    assert not stream.started and stream.latent_frames == 0
    b1 = stream.decode_block(_latents(3, seed=7))
    assert b1.shape[2] == 9
    assert torch.equal(a1, b1)


def test_latents_are_denormalised_with_wan_statistics(decoder):
    cfg = decoder.config
    z = _latents(1)
    raw = z * torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1) + torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(decoder.denormalize(z), raw)


def test_to_uint8_frames():
    video = torch.linspace(-1.2, 1.2, 2 * 3 * 5 * 4 * 6).reshape(2, 3, 5, 4, 6)
    frames = to_uint8_frames(video[:1])
    assert frames.shape == (5, 4, 6, 3) and frames.dtype == np.uint8
    assert frames.min() == 0 and to_uint8_frames(video).max() == 255
    # channel order: frames[..., c] is video[0, c]
    expected = ((video[0, 1].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(frames[..., 1], expected)
    assert to_uint8_frames(video).shape == (10, 4, 6, 3)


def test_tiny_decode_timing_at_320x192():
    """The tiny VAE on 3 latent frames at 40x24 (-> 12 frames of 320x192); printed, not asserted."""
    dec = WanVAEDecoder(tiny_vae_config()).eval()
    stream = StreamingVAEDecoder(dec)
    z = torch.randn(1, 16, 3, 24, 40)
    first = stream.decode_block(z)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = stream.decode_block(z)
        times.append(time.perf_counter() - t0)
    assert first.shape == (1, 3, 9, 192, 320) and out.shape == (1, 3, 12, 192, 320)
    print(f"\ntiny VAE decode, 3 latent frames -> 12 x 320x192: min {min(times) * 1e3:.0f} ms, "
          f"max {max(times) * 1e3:.0f} ms ({torch.get_num_threads()} threads)")


def _original_layout_state_dict(decoder: WanVAEDecoder) -> dict[str, torch.Tensor]:
    """The decoder's weights plus encoder keys, as Wan2.1_VAE.pth holds them."""
    sd = {k: v.clone() for k, v in decoder.state_dict().items()}
    sd["encoder.conv1.weight"] = torch.randn(4, 3, 3, 3, 3)
    sd["encoder.head.2.bias"] = torch.randn(32)
    sd["conv1.weight"] = torch.randn(32, 32, 1, 1, 1)
    sd["conv1.bias"] = torch.randn(32)
    return sd


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_original_layout_checkpoint_round_trip(decoder, tmp_path, fmt):
    sd = _original_layout_state_dict(decoder)
    path = tmp_path / f"Wan2.1_VAE.{fmt}"
    if fmt == "safetensors":
        save_checkpoint(sd, path)
    else:
        torch.save(sd, path)
    fresh = WanVAEDecoder(tiny_vae_config())
    load_original_state_dict(fresh, open_checkpoint(path))
    z = _latents(3, seed=11)
    assert torch.equal(fresh.decode(z), decoder.decode(z))


def test_original_layout_missing_decoder_key_is_named(decoder):
    sd = _original_layout_state_dict(decoder)
    del sd["decoder.head.2.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"decoder\.head\.2\.weight"):
        load_original_state_dict(WanVAEDecoder(tiny_vae_config()), sd)


def test_meta_built_decoder_loads(decoder):
    with torch.device("meta"):
        fresh = WanVAEDecoder(tiny_vae_config())
    load_original_state_dict(fresh, _original_layout_state_dict(decoder), device="cpu", dtype=torch.float32)
    fresh.latents_mean = torch.tensor(fresh.config.latents_mean)
    fresh.latents_std = torch.tensor(fresh.config.latents_std)
    z = _latents(2, seed=12)
    assert torch.equal(fresh.decode(z), decoder.decode(z))


def test_matches_diffusers_autoencoder_kl_wan(decoder):
    """Cross-check against diffusers' independent implementation (frame-at-a-time decode)."""
    diffusers = pytest.importorskip("diffusers")
    cfg = decoder.config
    ref = diffusers.AutoencoderKLWan(
        base_dim=cfg.base_dim,
        z_dim=cfg.z_dim,
        dim_mult=list(cfg.dim_mult),
        num_res_blocks=cfg.num_res_blocks,
        temperal_downsample=list(cfg.temporal_upsample[::-1]),
    ).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g) if name.endswith("gamma")
                    else torch.randn(p.shape, generator=g) / (p[0].numel() if p.ndim > 1 else 1) ** 0.5)
    ours = WanVAEDecoder(cfg)
    load_original_state_dict(ours, ref.state_dict())  # diffusers keys are recognised and mapped
    z = _latents(4, seed=13)
    raw = ours.denormalize(z)  # diffusers' decode takes un-normalised latents
    with torch.no_grad():
        expected = ref.decode(raw).sample
    got = ours.decode(z)
    assert got.shape == expected.shape == (1, 3, 13, 40, 48)
    assert (got - expected).abs().max().item() < 1e-4
