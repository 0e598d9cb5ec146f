"""The causal Wan DiT: shapes, streaming == block-causal reference, causality, checkpoints."""

from __future__ import annotations

import pytest
import torch

from videogen.pipeline.config import DiTConfig, tiny_dit_config
from videogen.pipeline.dit import (
    build_dit,
    load_original_state_dict,
    rope_angles,
    rope_split,
    to_original_state_dict,
)

pytestmark = pytest.mark.timeout(120)

H, W = 8, 12  # latent size: 4 x 6 tokens per frame
FPB = 3


@pytest.fixture(scope="module")
def model():
    return build_dit(tiny_dit_config(), seed=0)


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _stream(model, clean, noisy, ts, ctx, window, bias):
    """The rolling scheme: one noisy step per block (biased but for the window's first frame),
    then the unbiased t=0 recomputation of the clean block."""
    cache = model.new_cache(1, H, W, window, FPB)
    step_out, clean_out = [], []
    for b in range(clean.shape[2] // FPB):
        sl = slice(b * FPB, (b + 1) * FPB)
        step_out.append(model(noisy[:, :, sl], ts[b], ctx, cache, b * FPB, kv_cache_attention_bias=bias))
        clean_out.append(model(clean[:, :, sl], 0.0, ctx, cache, b * FPB, commit=True))  # no bias at t = 0
        assert cache.cached_frames == min(window, (b + 1) * FPB)
    return torch.cat(step_out, 2), torch.cat(clean_out, 2)


def test_real_config_numbers():
    cfg = DiTConfig()
    assert (cfg.dim, cfg.ffn_dim, cfg.num_heads, cfg.num_layers, cfg.head_dim) == (5120, 13824, 40, 40, 128)
    assert 14.2e9 < cfg.num_parameters() < 14.4e9
    assert rope_split(128) == (22, 21, 21)  # Wan's 44/42/42 split of head_dim 128


def test_shapes_and_parameter_count(model):
    cfg = model.config
    assert sum(p.numel() for p in model.parameters()) == cfg.num_parameters()
    cache = model.new_cache(1, H, W, 3, FPB)
    with torch.no_grad():
        out = model(_rand(1, 16, FPB, H, W), 937.5, _rand(1, 5, cfg.text_dim), cache)
    assert out.shape == (1, 16, FPB, H, W)
    assert torch.isfinite(out).all()
    assert cache.cached_frames == 0  # no commit: the cache is unchanged


@pytest.mark.parametrize(("window", "bias"), [(3, 0.3), (3, 1.0), (2, 0.3), (6, 0.5)])
def test_streaming_equals_block_causal_reference(model, window, bias):
    """KV-cached streaming == the whole sequence at once with the block-causal local-window mask."""
    blocks = 4
    clean = _rand(1, 16, blocks * FPB, H, W, seed=1)
    noisy = _rand(1, 16, blocks * FPB, H, W, seed=2)
    ts = [1000.0, 937.5, 833.3, 625.0]
    ctx = _rand(1, 16, model.config.text_dim, seed=3)
    with torch.no_grad():
        step_out, clean_out = _stream(model, clean, noisy, ts, ctx, window, bias)
        noisy_t = torch.tensor(ts).repeat_interleave(FPB)[None]
        ref_clean, ref_noisy = model.forward_reference(
            clean, ctx, frames_per_block=FPB, kv_cache_num_frames=window, noisy=noisy,
            noisy_timesteps=noisy_t, kv_cache_attention_bias=bias)
        only_clean, _ = model.forward_reference(clean, ctx, frames_per_block=FPB, kv_cache_num_frames=window,
                                                kv_cache_attention_bias=bias)
    torch.testing.assert_close(step_out, ref_noisy, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(clean_out, ref_clean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(only_clean, ref_clean, atol=1e-5, rtol=1e-5)


def test_window_limits_what_a_block_sees():
    """With a 3-frame cache, block 2 no longer attends to block 0 (one layer, so block 0 cannot
    reach it through block 1's keys either)."""
    model = build_dit(tiny_dit_config(num_layers=1), seed=0)
    ctx = _rand(1, 16, model.config.text_dim, seed=3)
    clean = _rand(1, 16, 3 * FPB, H, W, seed=1)
    changed = clean.clone()
    changed[:, :, :FPB] += 1.0
    with torch.no_grad():
        a, _ = model.forward_reference(clean, ctx, frames_per_block=FPB, kv_cache_num_frames=3)
        b, _ = model.forward_reference(changed, ctx, frames_per_block=FPB, kv_cache_num_frames=3)
    assert not torch.allclose(a[:, :, FPB:2 * FPB], b[:, :, FPB:2 * FPB])  # block 1 sees block 0
    torch.testing.assert_close(a[:, :, 2 * FPB:], b[:, :, 2 * FPB:])  # block 2 does not


def test_causality(model):
    """Changing a later block never changes an earlier block's output."""
    ctx = _rand(1, 16, model.config.text_dim, seed=3)
    clean = _rand(1, 16, 3 * FPB, H, W, seed=1)
    later = clean.clone()
    later[:, :, 2 * FPB:] = _rand(1, 16, FPB, H, W, seed=9)
    with torch.no_grad():
        a, _ = model.forward_reference(clean, ctx, frames_per_block=FPB, kv_cache_num_frames=6)
        b, _ = model.forward_reference(later, ctx, frames_per_block=FPB, kv_cache_num_frames=6)
    torch.testing.assert_close(a[:, :, : 2 * FPB], b[:, :, : 2 * FPB], atol=0, rtol=0)
    assert not torch.allclose(a[:, :, 2 * FPB:], b[:, :, 2 * FPB:])


def test_rope_offset_is_absolute(model):
    """A block's RoPE frame positions start at its absolute frame: offsets change the output."""
    cos0, _ = rope_angles(torch.arange(0, 3), 2, 2, 16)
    cos9, _ = rope_angles(torch.arange(9, 12), 2, 2, 16)
    assert cos0.shape == (12, 8)
    assert not torch.allclose(cos0, cos9)
    cf = rope_split(16)[0]
    torch.testing.assert_close(cos0[:, cf:], cos9[:, cf:])  # the h/w parts do not move
    ctx = _rand(1, 16, model.config.text_dim)
    x = _rand(1, 16, FPB, H, W)
    with torch.no_grad():
        a = model(x, 500.0, ctx, model.new_cache(1, H, W, 3, FPB), 0)
        b = model(x, 500.0, ctx, model.new_cache(1, H, W, 3, FPB), 30)
    assert not torch.allclose(a, b)


def test_cache_is_preallocated_and_rolls(model):
    cache = model.new_cache(1, H, W, 3, FPB)
    k_ptr = cache.k.data_ptr()
    ctx = model.prepare_context(_rand(1, 16, model.config.text_dim))
    with torch.no_grad():
        for b in range(5):
            model(_rand(1, 16, FPB, H, W, seed=b), 0.0, ctx, cache, b * FPB, commit=True)
    assert cache.k.data_ptr() == k_ptr
    assert (cache.start_frame, cache.cached_frames, cache.end_frame) == (12, 3, 15)
    with pytest.raises(ValueError):
        model(_rand(1, 16, FPB, H, W), 0.0, ctx, cache, 3)  # not where the cache ends


def test_original_checkpoint_round_trip(tmp_path, model):
    """A checkpoint in Wan/Krea's key layout (q/k/v separate) loads onto the fused QKV."""
    pytest.importorskip("safetensors")
    original = to_original_state_dict(model)
    assert "blocks.0.self_attn.q.weight" in original and "blocks.1.self_attn.norm_k.weight" in original
    assert "blocks.0.self_attn.qkv.weight" not in original
    for key in ("patch_embedding.weight", "text_embedding.2.bias", "time_embedding.0.weight",
                "time_projection.1.weight", "head.head.weight", "head.modulation", "blocks.1.modulation",
                "blocks.0.norm3.weight", "blocks.0.ffn.2.weight", "blocks.0.cross_attn.k.weight"):
        assert key in original
    path = tmp_path / "dit.safetensors"
    try:
        from videogen.pipeline.weights import open_checkpoint, save_checkpoint
    except ImportError:
        from safetensors.torch import load_file as open_checkpoint
        from safetensors.torch import save_file as save_checkpoint
    save_checkpoint({f"model.{k}": v for k, v in original.items()}, path)  # a wrapper prefix too
    other = build_dit(model.config, seed=123)
    report = load_original_state_dict(other, open_checkpoint(path))
    assert report == {"missing": [], "unexpected": []}
    ctx = _rand(1, 16, model.config.text_dim)
    x = _rand(1, 16, FPB, H, W)
    with torch.no_grad():
        a = model(x, 625.0, ctx, model.new_cache(1, H, W, 3, FPB))
        b = other(x, 625.0, ctx, other.new_cache(1, H, W, 3, FPB))
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_load_reports_missing_and_unexpected(model):
    sd = to_original_state_dict(model)
    del sd["head.modulation"]
    del sd["blocks.0.self_attn.v.weight"]
    sd["extra.weight"] = torch.zeros(1)
    other = build_dit(model.config, seed=5)
    with pytest.raises(KeyError):
        load_original_state_dict(other, sd)
    report = load_original_state_dict(other, sd, strict=False)
    assert "head.modulation" in report["missing"]
    assert "blocks.0.self_attn.qkv.weight" in report["missing"]
    assert "extra.weight" in report["unexpected"]


def test_deterministic_weights():
    a = build_dit(tiny_dit_config(), seed=7)
    b = build_dit(tiny_dit_config(), seed=7)
    before = torch.random.get_rng_state()
    c = build_dit(tiny_dit_config(), seed=8)
    assert torch.equal(before, torch.random.get_rng_state())  # global RNG untouched
    for (_, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.blocks[0].self_attn.qkv.weight, c.blocks[0].self_attn.qkv.weight)
