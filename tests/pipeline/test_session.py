"""The streaming session: blocks, seeds, prompt blending, update/reset/stop, causality."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from .fakes import HEIGHT, WIDTH, make_session, params

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


def _frames(blocks):
    return [b.frames for b in blocks]


def test_blocks_shapes_and_timings():
    s = make_session()
    blocks = list(s.start(params(num_blocks=3)))
    # Krea's stream: the first block decodes 9 frames and drops the first 3
    assert [b.frames.shape for b in blocks] == [(6, HEIGHT, WIDTH, 3), (12, HEIGHT, WIDTH, 3),
                                                (12, HEIGHT, WIDTH, 3)]
    assert all(b.frames.dtype == np.uint8 and b.frames.flags.c_contiguous for b in blocks)
    assert [b.index for b in blocks] == [0, 1, 2]
    assert [b.start_frame for b in blocks] == [0, 3, 6]
    assert blocks[0].prompt == "a red fox in the snow"
    assert blocks[0].random_weights
    assert blocks[1].latents.shape == (1, 16, 3, HEIGHT // 8, WIDTH // 8)
    for key in ("text", "dit_step", "recompute", "encode", "vae", "total"):
        assert blocks[1].timings[key] >= 0
    assert len(blocks[1].timings["dit_steps"]) == 4
    assert blocks[0].timings["recompute"] == 0 and blocks[1].timings["recompute"] > 0  # no context yet
    assert not s.running


def test_defaults_are_kreas():
    """Krea's release: the rebuilt cache, its 4-step schedule ending at t = 0, no bias."""
    s = make_session()
    next(s.start(params(num_blocks=1)))
    assert s.cache_mode == "krea" and s.kv_bias == 1.0 and s.interp_steps == 4
    assert s.schedule.timesteps == pytest.approx([1000, 908.84, 713.98, 0], abs=1e-2)
    assert s.timeline.to_dict()["settings"]["denoisingSteps"] == [1000, 750, 500, 250]
    s5 = make_session()
    next(s5.start(params(num_blocks=1, num_denoising_steps=5)))
    assert s5.schedule.timesteps == pytest.approx([1000, 937.5, 833.333, 625, 0], abs=1e-3)


def test_seed_determinism():
    a = _frames(make_session().start(params(num_blocks=2, seed=3)))
    b = _frames(make_session().start(params(num_blocks=2, seed=3)))
    c = _frames(make_session().start(params(num_blocks=2, seed=4)))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_same_session_restarts_identically():
    s = make_session()
    a = _frames(s.start(params(num_blocks=2)))
    b = _frames(s.start(params(num_blocks=2)))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def _run_with(update_at, num_blocks=4, **update):
    s = make_session()
    out = []
    for i, block in enumerate(s.start(params(num_blocks=num_blocks))):
        out.append(block)
        if i + 1 == update_at:
            s.update(**update)
    return s, out


def test_later_changes_never_change_earlier_frames():
    _, base = _run_with(None)
    _, prompt = _run_with(2, prompt="a city at night", blend_blocks=1)
    _, seed = _run_with(2, seed=99)
    for other in (prompt, seed):
        for i in (0, 1):
            np.testing.assert_array_equal(base[i].frames, other[i].frames)
        assert not np.array_equal(base[2].frames, other[2].frames)
    assert prompt[2].prompt == "a city at night" and seed[2].seed == 99


def test_prompt_interpolates_as_krea_over_interp_steps():
    """The blocks after an update take lerp(old, new, linspace(0, 1, interp_steps)): the first of
    them is still the old prompt, the last the new one."""
    s = make_session()
    old = s._encode([("a red fox in the snow", 1.0)])
    new = s._encode([("a city at night", 1.0)])
    seen = []
    for i, _block in enumerate(s.start(params(num_blocks=7))):
        seen.append(s.embedding.clone())
        if i == 1:
            s.update(prompt="a city at night")  # interp_steps 4 (the default)
    torch.testing.assert_close(seen[1], old)
    for k, frac in enumerate([0.0, 1 / 3, 2 / 3, 1.0]):
        torch.testing.assert_close(seen[2 + k], torch.lerp(old, new, frac))
    torch.testing.assert_close(seen[6], new)


def test_one_interp_step_is_a_cut_and_blend_blocks_is_its_old_name():
    s = make_session()
    new = s._encode([("a city at night", 1.0)])
    seen = []
    for i, _block in enumerate(s.start(params(num_blocks=3))):
        seen.append(s.embedding.clone())
        if i == 0:
            s.update(prompt="a city at night", blend_blocks=1)
    torch.testing.assert_close(seen[1], new)


def test_the_cache_rebuild_uses_the_prompt_the_previous_block_ended_with():
    """Krea resets its cross-attention cache after the rebuild, when the interpolation moves on."""
    s = make_session()
    rebuilt, stepped = [], []
    real_recompute, real_forward = s.dit.recompute_cache, s.dit.forward

    def recompute(clean, context, cache, fpb):
        rebuilt.append(context.embedding.clone())
        return real_recompute(clean, context, cache, fpb)

    def forward(x, t, context, *args, **kwargs):
        stepped.append(context.embedding.clone())
        return real_forward(x, t, context, *args, **kwargs)

    s.dit.recompute_cache, s.dit.forward = recompute, forward
    for i, _block in enumerate(s.start(params(num_blocks=4))):
        if i == 1:
            s.update(prompt="a city at night", interp_steps=2)
    steps = 4
    block_embedding = [stepped[k * steps] for k in range(4)]
    assert all(torch.equal(e, block_embedding[k]) for k in range(4) for e in stepped[k * steps:(k + 1) * steps])
    # blocks 1, 2, 3 rebuild their cache with blocks 0, 1, 2's prompt
    for k in (1, 2, 3):
        torch.testing.assert_close(rebuilt[k - 1], block_embedding[k - 1])
    assert not torch.equal(block_embedding[3], block_embedding[2])  # the new prompt, from block 3


def test_reset_during_an_interpolation_starts_over_on_the_new_prompt():
    s = make_session()
    new = s._encode([("a city at night", 1.0)])
    seen = []
    for i, _block in enumerate(s.start(params(num_blocks=3))):
        seen.append(s.embedding.clone())
        if i == 0:
            s.update(prompt="a city at night", interp_steps=8)
            s.update(reset=True)
    torch.testing.assert_close(seen[1], new)


def test_weighted_prompts_mix_embeddings():
    s = make_session()
    a = s._encode([("a", 1.0)])
    b = s._encode([("b", 1.0)])
    torch.testing.assert_close(s._encode([("a", 3.0), ("b", 1.0)]), 0.75 * a + 0.25 * b)
    block = next(s.start(params(prompt=[{"text": "a", "weight": 3}, {"text": "b", "weight": 1}], num_blocks=1)))
    assert block.prompt == "a (3) | b (1)"


def test_text_is_encoded_once_per_prompt():
    s = make_session()
    list(s.start(params(num_blocks=3)))
    assert s.text_encoder.calls == [["a red fox in the snow"]]


def test_reset_restarts_the_stream():
    s = make_session()
    blocks = []
    for i, block in enumerate(s.start(params(num_blocks=4, seed=5))):
        blocks.append(block)
        if i == 1:
            s.update(seed=5, reset=True)
    assert [b.frames.shape[0] for b in blocks] == [6, 12, 6, 12]
    assert [b.start_frame for b in blocks] == [0, 3, 0, 3]
    assert [b.index for b in blocks] == [0, 1, 2, 3]
    # same seed, empty caches, same prompt: the stream starts over exactly
    np.testing.assert_array_equal(blocks[2].frames, blocks[0].frames)
    np.testing.assert_array_equal(blocks[3].frames, blocks[1].frames)


def test_stop_ends_the_stream():
    s = make_session()
    got = []
    for block in s.start(params()):  # no num_blocks: until stopped
        got.append(block)
        assert s.running
        if len(got) == 2:
            s.stop()
    assert len(got) == 2 and not s.running


@pytest.mark.parametrize(("w", "h"), [(60, 48), (64, 40), (0, 48)])
def test_size_must_be_multiple_of_16(w, h):
    with pytest.raises(ValueError):
        make_session().start(params(width=w, height=h))


def test_build_tiny_pipeline_says_random_weights(caplog):
    pytest.importorskip("videogen.pipeline.text_encoder")
    from videogen.pipeline import build_tiny_pipeline

    with caplog.at_level("WARNING"):
        s = build_tiny_pipeline(seed=0)
        block = next(s.start(params(num_blocks=1)))
    assert s.random_weights and block.random_weights
    assert "RANDOM weights" in caplog.text
    assert block.frames.shape == (6, HEIGHT, WIDTH, 3)
    assert type(s.vae).__name__ == "StreamingTAEHVDecoder"  # the tiny config decodes with TAEHV's shape
    assert block.frames.std() > 20 and 40 < block.frames.mean() < 215  # patterns one can see, not black


def test_no_django_import():
    code = ("import sys, videogen.pipeline, videogen.pipeline.session, videogen.pipeline.dit; "
            "assert 'django' not in sys.modules, [m for m in sys.modules if 'django' in m]; print('ok')")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_package_imports_torch_only_when_a_model_is_used():
    code = ("import sys, videogen.pipeline, videogen.pipeline.timeline, videogen.pipeline.config; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "from videogen.pipeline import TINY_CONFIG, Timeline; assert 'torch' not in sys.modules; "
            "from videogen.pipeline import PipelineSession, GenerationParams, load_pipeline; "
            "assert 'torch' in sys.modules; print('ok')")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_load_pipeline_from_models_dir(tmp_path):
    """Checkpoints in the on-disk layout (original key names; the VAE's two halves in one file)
    load into a session that makes the same frames as the modules they were saved from."""
    pytest.importorskip("safetensors")
    weights = pytest.importorskip("videogen.pipeline.weights")
    from videogen.pipeline import load_pipeline, to_original_state_dict
    from videogen.pipeline.vae import tiny_vae_config

    source = make_session()
    layout = weights.expected_layout(tmp_path)
    weights.save_checkpoint(to_original_state_dict(source.dit), layout.dit)
    weights.save_checkpoint({**source.vae.decoder.state_dict(), **source.encoder.encoder.state_dict()},
                            layout.vae_candidates[0])
    loaded = load_pipeline(tmp_path, "cpu", torch.float32, source.config, vae_config=tiny_vae_config(),
                           text_encoder=source.text_encoder)
    assert not loaded.random_weights
    a = _frames(source.start(params(num_blocks=3)))
    b = _frames(loaded.start(params(num_blocks=3)))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(FileNotFoundError):
        load_pipeline(tmp_path / "empty", "cpu", torch.float32, source.config, text_encoder=source.text_encoder)


def test_use_taehv_decodes_with_taehvs_checkpoint(tmp_path):
    """Krea's use_taehv: the DiT and the Wan encoder as usual, TAEHV's own file to decode."""
    weights = pytest.importorskip("videogen.pipeline.weights")
    from videogen.pipeline import load_pipeline, to_original_state_dict
    from videogen.pipeline import taehv as taehv_mod
    from videogen.pipeline.session import PipelineSession
    from videogen.pipeline.vae import tiny_vae_config

    source = make_session()
    layout = weights.expected_layout(tmp_path)
    weights.save_checkpoint(to_original_state_dict(source.dit), layout.dit)
    weights.save_checkpoint({**source.vae.decoder.state_dict(), **source.encoder.encoder.state_dict()},
                            layout.vae_candidates[0])
    decoder = taehv_mod.init_random_visible(taehv_mod.TAEHVDecoder(taehv_mod.tiny_taehv_config())).eval()
    torch.save({**decoder.state_dict(), "encoder.0.weight": torch.zeros(1)}, layout.taehv)
    loaded = load_pipeline(tmp_path, "cpu", torch.float32, source.config, vae_config=tiny_vae_config(),
                           text_encoder=source.text_encoder, use_taehv=True,
                           taehv_config=taehv_mod.tiny_taehv_config())
    assert isinstance(loaded.vae, taehv_mod.StreamingTAEHVDecoder)
    expected = PipelineSession(source.dit, taehv_mod.StreamingTAEHVDecoder(decoder), source.text_encoder,
                               source.config, encoder=source.encoder)
    for a, b in zip(_frames(loaded.start(params(num_blocks=3))), _frames(expected.start(params(num_blocks=3))),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    layout.taehv.unlink()
    with pytest.raises(FileNotFoundError, match="taew2_1"):
        load_pipeline(tmp_path, "cpu", torch.float32, source.config, text_encoder=source.text_encoder,
                      use_taehv=True)


def test_a_vae_file_without_its_encoder_runs_the_rolling_scheme_only(tmp_path):
    weights = pytest.importorskip("videogen.pipeline.weights")
    from videogen.pipeline import load_pipeline, to_original_state_dict
    from videogen.pipeline.vae import tiny_vae_config

    source = make_session()
    layout = weights.expected_layout(tmp_path)
    weights.save_checkpoint(to_original_state_dict(source.dit), layout.dit)
    weights.save_checkpoint(source.vae.decoder.state_dict(), layout.vae_candidates[0])
    loaded = load_pipeline(tmp_path, "cpu", torch.float32, source.config, vae_config=tiny_vae_config(),
                           text_encoder=source.text_encoder)
    with pytest.raises(ValueError, match="no VAE encoder"):
        loaded.start(params(num_blocks=1))
    assert next(loaded.start(params(num_blocks=1, cache_mode="rolling"))).frames.shape[0] == 6


def test_the_timeline_keeps_the_settings_a_replay_needs():
    s = make_session()
    blocks = list(s.start(params(num_blocks=3, kv_cache_attention_bias=0.5, cache_mode="rolling")))
    assert s.timeline.params == {"kv_cache_attention_bias": 0.5, "cache_mode": "rolling"}
    replayed = list(s.timeline.replay(make_session()))
    for a, b in zip(blocks, replayed, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)
    plain = make_session()
    list(plain.start(params(num_blocks=1)))
    # the bias in effect is always kept (a replay elsewhere may default to another), and the
    # frames of a block (the first block drops 3 of its 9 decoded frames)
    assert plain.timeline.params == {"kv_cache_attention_bias": 1.0}
    assert plain.timeline.block_frames == (6, 12)
    kept = make_session()
    list(kept.start(params(num_blocks=1, keep_first_frame=True)))
    assert kept.timeline.block_frames == (9, 12)
