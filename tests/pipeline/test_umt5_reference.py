"""Our UMT5 path against references, on the same random weights in Wan's T5 layout
(``models_t5_umt5-xxl-enc-bf16.pth`` keys): transformers' ``UMT5EncoderModel`` loaded with a
key mapping written here, and Wan's own ``T5Encoder`` forward written out from
``wan/modules/t5.py`` (no scaling in attention, per-layer relative position buckets, gated
tanh-GELU, RMS norms). fp32, tolerance 1e-4."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from videogen.pipeline import text_encoder as te  # noqa: E402

pytestmark = pytest.mark.timeout(120)

DIM, HEADS, D_KV, FFN, LAYERS, VOCAB, BUCKETS = 32, 4, 8, 64, 2, 384, 32
TEXT_LEN = 24


def wan_t5_checkpoint(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under Wan's T5Encoder names (umt5: a relative embedding per block)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=None):
        return torch.randn(*shape, generator=g) * (scale if scale is not None else shape[-1] ** -0.5)

    sd = {"token_embedding.weight": rand(VOCAB, DIM, scale=1.0), "norm.weight": 1 + 0.1 * rand(DIM, scale=1.0)}
    inner = HEADS * D_KV
    for i in range(LAYERS):
        p = f"blocks.{i}."
        sd.update({
            p + "norm1.weight": 1 + 0.1 * rand(DIM, scale=1.0),
            p + "attn.q.weight": rand(inner, DIM), p + "attn.k.weight": rand(inner, DIM),
            p + "attn.v.weight": rand(inner, DIM), p + "attn.o.weight": rand(DIM, inner),
            p + "norm2.weight": 1 + 0.1 * rand(DIM, scale=1.0),
            p + "ffn.gate.0.weight": rand(FFN, DIM), p + "ffn.fc1.weight": rand(FFN, DIM),
            p + "ffn.fc2.weight": rand(DIM, FFN),
            p + "pos_embedding.embedding.weight": rand(BUCKETS, HEADS, scale=1.0),
        })
    return sd


def _bucket(rel_pos: torch.Tensor, num_buckets: int = BUCKETS, max_dist: int = 128) -> torch.Tensor:
    """Wan's T5RelativeEmbedding._relative_position_bucket, bidirectional."""
    num_buckets //= 2
    buckets = (rel_pos > 0).long() * num_buckets
    rel_pos = rel_pos.abs()
    max_exact = num_buckets // 2
    large = max_exact + (torch.log(rel_pos.float() / max_exact) / math.log(max_dist / max_exact)
                         * (num_buckets - max_exact)).long()
    large = torch.minimum(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(rel_pos < max_exact, rel_pos, large)


def wan_t5_forward(sd: dict[str, torch.Tensor], ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Wan's T5Encoder.forward (eval: no dropout), then Wan's zeroing after each prompt."""

    def norm(x, w):
        return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6) * w

    def gelu(x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))

    b, n = ids.shape
    x = F.embedding(ids, sd["token_embedding.weight"])
    rel = torch.arange(n)[None, :] - torch.arange(n)[:, None]
    for i in range(LAYERS):
        p = f"blocks.{i}."
        pos_bias = F.embedding(_bucket(rel), sd[p + "pos_embedding.embedding.weight"]).permute(2, 0, 1)[None]
        h = norm(x, sd[p + "norm1.weight"])
        q, k, v = (F.linear(h, sd[p + f"attn.{name}.weight"]).view(b, n, HEADS, D_KV) for name in "qkv")
        bias = pos_bias.expand(b, -1, -1, -1).clone()
        bias.masked_fill_(mask.view(b, 1, 1, n) == 0, torch.finfo(x.dtype).min)
        attn = (torch.einsum("binc,bjnc->bnij", q, k) + bias).softmax(-1)  # T5: no 1/sqrt(d)
        x = x + F.linear(torch.einsum("bnij,bjnc->binc", attn, v).reshape(b, n, -1), sd[p + "attn.o.weight"])
        h = norm(x, sd[p + "norm2.weight"])
        ffn = F.linear(h, sd[p + "ffn.fc1.weight"]) * gelu(F.linear(h, sd[p + "ffn.gate.0.weight"]))
        x = x + F.linear(ffn, sd[p + "ffn.fc2.weight"])
    x = norm(x, sd["norm.weight"])
    return x * mask[..., None]


def hf_from_wan(sd: dict[str, torch.Tensor]):
    """transformers' UMT5EncoderModel with the Wan weights (the mapping written out here)."""
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(vocab_size=VOCAB, d_model=DIM, d_kv=D_KV, d_ff=FFN, num_layers=LAYERS, num_heads=HEADS,
                        relative_attention_num_buckets=BUCKETS, relative_attention_max_distance=128,
                        feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
                        tie_word_embeddings=False)
    model = UMT5EncoderModel(config).eval()
    names = {"norm1": "layer.0.layer_norm", "attn.q": "layer.0.SelfAttention.q",
             "attn.k": "layer.0.SelfAttention.k", "attn.v": "layer.0.SelfAttention.v",
             "attn.o": "layer.0.SelfAttention.o",
             "pos_embedding.embedding": "layer.0.SelfAttention.relative_attention_bias",
             "norm2": "layer.1.layer_norm", "ffn.gate.0": "layer.1.DenseReluDense.wi_0",
             "ffn.fc1": "layer.1.DenseReluDense.wi_1", "ffn.fc2": "layer.1.DenseReluDense.wo"}
    hf = {"shared.weight": sd["token_embedding.weight"], "encoder.final_layer_norm.weight": sd["norm.weight"]}
    for key, value in sd.items():
        if key.startswith("blocks."):
            _, i, rest = key.split(".", 2)
            hf[f"encoder.block.{i}.{names[rest.removesuffix('.weight')]}.weight"] = value
    missing, unexpected = model.load_state_dict(hf, strict=False)
    assert not unexpected and set(missing) <= {"encoder.embed_tokens.weight"}  # tied to shared
    return model


def test_our_umt5_equals_transformers_and_wans_t5(tmp_path):
    sd = wan_t5_checkpoint()
    torch.save(sd, tmp_path / te.WAN_T5_CHECKPOINT)
    config = te.TextEncoderConfig(dim=DIM, text_len=TEXT_LEN, umt5=te.tiny_text_encoder_config().umt5,
                                  tokenizer="bytes", checkpoint=str(tmp_path / te.WAN_T5_CHECKPOINT))
    ours = te.TextEncoder(config, device="cpu", dtype=torch.float32)
    prompts = ["a red fox", "  the   sea at night, &amp; waves  "]
    got = ours.encode(prompts)
    ids, mask = ours.tokenize(prompts)
    assert ids[1, :5].tolist() == [ord(c) + 3 for c in "the s"]  # cleaned before tokenising
    with torch.no_grad():
        hf = hf_from_wan(sd)(input_ids=ids, attention_mask=mask).last_hidden_state * mask[..., None]
        wan = wan_t5_forward(sd, ids, mask)
    assert got.shape == (2, TEXT_LEN, DIM)
    print(f"\nUMT5 vs transformers {(got - hf).abs().max():.1e}, vs Wan's T5 {(got - wan).abs().max():.1e}")
    assert (got - hf).abs().max().item() < 1e-4
    assert (got - wan).abs().max().item() < 1e-4
    assert torch.count_nonzero(got[0, mask[0].sum():]) == 0  # zero after the prompt, as Wan
    assert got.abs().mean() > 0.1
