"""Our causal Wan DiT against diffusers' independent ``WanTransformer3DModel``, the same random
weights in both (mapped from Wan's original key layout by a table written here): a whole clip
with full attention, one timestep and one per frame (diffusers' per-token timesteps), text
zero-padded to text_len as Wan and diffusers' pipeline pad it. fp32, tolerance 1e-4."""

from __future__ import annotations

import pytest
import torch

from videogen.pipeline.config import tiny_dit_config
from videogen.pipeline.dit import build_dit, to_original_state_dict

diffusers = pytest.importorskip("diffusers")

pytestmark = pytest.mark.timeout(120)

FRAMES, H, W = 3, 8, 12  # latent: 3 frames of 4 x 6 tokens

# Wan's original names -> diffusers' (per block: "blocks.{i}." in front of both)
_TOP = {"patch_embedding": "patch_embedding", "text_embedding.0": "condition_embedder.text_embedder.linear_1",
        "text_embedding.2": "condition_embedder.text_embedder.linear_2",
        "time_embedding.0": "condition_embedder.time_embedder.linear_1",
        "time_embedding.2": "condition_embedder.time_embedder.linear_2",
        "time_projection.1": "condition_embedder.time_proj", "head.head": "proj_out"}
_BLOCK = {"self_attn.q": "attn1.to_q", "self_attn.k": "attn1.to_k", "self_attn.v": "attn1.to_v",
          "self_attn.o": "attn1.to_out.0", "self_attn.norm_q": "attn1.norm_q", "self_attn.norm_k": "attn1.norm_k",
          "cross_attn.q": "attn2.to_q", "cross_attn.k": "attn2.to_k", "cross_attn.v": "attn2.to_v",
          "cross_attn.o": "attn2.to_out.0", "cross_attn.norm_q": "attn2.norm_q", "cross_attn.norm_k": "attn2.norm_k",
          "norm3": "norm2", "ffn.0": "ffn.net.0.proj", "ffn.2": "ffn.net.2"}


def to_diffusers(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in original.items():
        if key == "head.modulation":
            out["scale_shift_table"] = value
            continue
        module, leaf = key.rsplit(".", 1)
        if leaf == "modulation":  # blocks.{i}.modulation
            out[f"{module}.scale_shift_table"] = value
        elif module.startswith("blocks."):
            _, i, rest = module.split(".", 2)
            out[f"blocks.{i}.{_BLOCK[rest]}.{leaf}"] = value
        else:
            out[f"{_TOP[module]}.{leaf}"] = value
    return out


@pytest.fixture(scope="module")
def models():
    cfg = tiny_dit_config(num_heads=4)  # several heads: their layout must agree too
    ours = build_dit(cfg, seed=0)
    with torch.no_grad():  # norms and modulations away from their init values
        for name, p in ours.named_parameters():
            if "norm" in name or "modulation" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    ref = diffusers.WanTransformer3DModel(
        patch_size=cfg.patch_size, num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_channels, out_channels=cfg.out_channels, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, cross_attn_norm=cfg.cross_attn_norm,
        qk_norm="rms_norm_across_heads", eps=cfg.eps).eval()
    missing, unexpected = ref.load_state_dict(to_diffusers(to_original_state_dict(ours)), strict=True)
    assert not missing and not unexpected
    return ours, ref


def _inputs(cfg, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, cfg.in_channels, FRAMES, H, W, generator=g)
    text = torch.zeros(1, cfg.text_len, cfg.text_dim)
    text[:, :9] = torch.randn(1, 9, cfg.text_dim, generator=g)  # a 9-token prompt, zero-padded
    return x, text


def _ours(model, x, text, per_frame):
    allowed = torch.ones(FRAMES, FRAMES, dtype=torch.bool)
    with torch.no_grad():
        return model.forward_masked(x, per_frame[None], text, torch.arange(FRAMES), allowed)


@pytest.mark.parametrize("timesteps", [[937.5] * FRAMES, [1000.0, 713.98, 0.0]])
def test_dit_equals_diffusers_wan_transformer(models, timesteps):
    ours, ref = models
    x, text = _inputs(ours.config)
    per_frame = torch.tensor(timesteps)
    tokens_per_frame = (H // 2) * (W // 2)
    ts = per_frame[:1] if len(set(timesteps)) == 1 else per_frame.repeat_interleave(tokens_per_frame)[None]
    with torch.no_grad():
        expected = ref(x, ts, text, return_dict=False)[0]
    got = _ours(ours, x, text, per_frame)
    assert got.shape == expected.shape == x.shape
    diff = (got - expected).abs().max().item()
    print(f"\nDiT vs diffusers WanTransformer3DModel, timesteps {timesteps}: {diff:.1e}")
    assert diff < 1e-4
    assert expected.abs().mean() > 0.1
