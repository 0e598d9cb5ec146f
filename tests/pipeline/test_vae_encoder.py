"""The Wan 2.1 VAE encoder: streaming == one-shot == diffusers' AutoencoderKLWan.encode, the
original checkpoint layout (one file with the decoder), chunk rules (CPU, tiny weights)."""

from __future__ import annotations

import pytest
import torch

from videogen.pipeline import vae as vae_mod
from videogen.pipeline import vae_encoder as enc_mod
from videogen.pipeline.vae import WanVAEConfig, WanVAEDecoder, tiny_vae_config
from videogen.pipeline.vae_encoder import StreamingVAEEncoder, WanVAEEncoder
from videogen.pipeline.weights import open_checkpoint, save_checkpoint

pytestmark = pytest.mark.timeout(120)

# diffusers cannot build the tiny config's 0-residual-block decoder: both halves get one here
REF_CONFIG = WanVAEConfig(base_dim=4, dim_mult=(1, 2, 2, 2), num_res_blocks=1)


def _randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights everywhere, norms near 1 (the attention proj is zero at init in Wan)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / (p[0].numel() if p.ndim > 1 else 1) ** 0.5)
    return module.eval()


def _video(t: int, h: int = 40, w: int = 48, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, t, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def reference():
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.AutoencoderKLWan(base_dim=REF_CONFIG.base_dim, z_dim=16, dim_mult=list(REF_CONFIG.dim_mult),
                                     num_res_blocks=REF_CONFIG.num_res_blocks,
                                     temperal_downsample=list(REF_CONFIG.temperal_downsample))
    return _randomize(ref, 3)


@pytest.fixture(scope="module")
def encoder(reference) -> WanVAEEncoder:
    ours = WanVAEEncoder(REF_CONFIG)
    enc_mod.load_original_state_dict(ours, reference.state_dict())  # diffusers keys, mapped
    return ours


def _stream(encoder: WanVAEEncoder, video: torch.Tensor, chunks: list[int], normalize: bool = False) -> torch.Tensor:
    stream = StreamingVAEEncoder(encoder)
    parts, start = [], 0
    for n in chunks:
        parts.append(encoder.forward_block(video[:, :, start:start + n], stream.cache, normalize=normalize))
        start += n
    return torch.cat(parts, dim=2)


@pytest.mark.parametrize("chunks", [[21], [9, 12], [1, 4, 4, 4, 4, 4], [5, 16], [1, 20], [13, 8]])
def test_matches_diffusers_encode_one_shot_and_streamed(reference, encoder, chunks):
    """Krea's webcam chunks (9 then 12) and any other split give diffusers' one-shot encode."""
    video = _video(21)
    with torch.no_grad():
        expected = reference.encode(video).latent_dist.mean
        got = _stream(encoder, video, chunks)
    assert got.shape == expected.shape == (1, 16, 6, 5, 6)
    assert (got - expected).abs().max().item() < 1e-4
    assert expected.abs().mean() > 0.1  # not a degenerate all-zero latent


def test_latents_are_normalised_with_wan_statistics(encoder):
    video = _video(5, seed=2)
    raw = encoder.encode(video, normalize=False)
    cfg = encoder.config
    mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(encoder.encode(video), (raw - mean) / std)


def test_chunk_sizes_follow_wan(encoder):
    stream = StreamingVAEEncoder(encoder)
    assert stream.frames_for(3) == 9
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        stream.encode_block(_video(8))
    assert stream.encode_block(_video(9)).shape == (1, 16, 3, 5, 6)
    assert stream.frames_for(3) == 12
    with pytest.raises(ValueError, match="multiple of 4"):
        stream.encode_block(_video(6))
    assert stream.encode_block(_video(12, seed=4)).shape == (1, 16, 3, 5, 6)
    stream.reset()
    assert not stream.started and stream.frames_for(1) == 1


def test_single_frame_encode_equals_the_zero_padded_one(encoder):
    """A lone first frame (the anchor re-encode) skips the zero history: same numbers."""
    frame = _video(1, seed=5)
    padded = torch.cat([torch.zeros_like(frame), torch.zeros_like(frame), frame], dim=2)
    conv = encoder.encoder.conv1
    with torch.no_grad():
        fast = conv(frame)
        slow = torch.nn.functional.conv3d(padded, conv.weight, conv.bias, padding=(0, 1, 1))
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def _one_file(decoder: WanVAEDecoder, encoder: WanVAEEncoder) -> dict[str, torch.Tensor]:
    return {**decoder.state_dict(), **encoder.state_dict()}


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_both_halves_load_from_one_original_layout_file(tmp_path, fmt):
    cfg = tiny_vae_config()
    decoder = _randomize(WanVAEDecoder(cfg), 7)
    encoder = _randomize(WanVAEEncoder(cfg), 8)
    sd = _one_file(decoder, encoder)
    assert {k.split(".")[0] for k in sd} == {"encoder", "conv1", "decoder", "conv2"}
    path = tmp_path / f"Wan2.1_VAE.{fmt}"
    save_checkpoint(sd, path) if fmt == "safetensors" else torch.save(sd, path)
    fresh_enc = enc_mod.load_original_state_dict(WanVAEEncoder(cfg), open_checkpoint(path))
    fresh_dec = vae_mod.load_original_state_dict(WanVAEDecoder(cfg), open_checkpoint(path))
    video = _video(5, seed=9)
    assert torch.equal(fresh_enc.encode(video), encoder.encode(video))
    z = torch.randn(1, 16, 2, 5, 6)
    assert torch.equal(fresh_dec.decode(z), decoder.decode(z))


def test_real_layout_equals_diffusers_real_layout():
    """Wan 2.1's real encoder: every key and shape of diffusers' AutoencoderKLWan (mapped)."""
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        ref = diffusers.AutoencoderKLWan()
        ours = WanVAEEncoder(WanVAEConfig())
    expected = {enc_mod.diffusers_key_to_original(k): tuple(v.shape) for k, v in ref.state_dict().items()
                if k.startswith(("encoder.", "quant_conv."))}
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert got == expected
    assert got["encoder.conv1.weight"] == (96, 3, 3, 3, 3)
    assert got["encoder.downsamples.5.time_conv.weight"] == (192, 192, 3, 1, 1)
    assert got["encoder.head.2.weight"] == (32, 384, 3, 3, 3) and got["conv1.weight"] == (32, 32, 1, 1, 1)


def test_a_width_change_without_residual_block_is_refused():
    with pytest.raises(ValueError, match="needs a residual block"):
        WanVAEEncoder(WanVAEConfig(base_dim=4, dim_mult=(1, 2, 2, 2), num_res_blocks=0))
