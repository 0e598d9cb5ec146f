"""The UMT5 text encoder: tiny byte-tokenizer model, padding, cache, local-dir loading (CPU)."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("transformers")

from videogen.pipeline.text_encoder import (  # noqa: E402
    ByteTokenizer,
    TextEncoder,
    tiny_text_encoder_config,
    wan_t5_key_to_hf,
)
from videogen.pipeline.weights import save_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(tiny_text_encoder_config(), device="cpu")


def test_shape_and_dim(encoder):
    out = encoder.encode(["a red fox", "the sea at night, waves"])
    assert out.shape == (2, 512, 32)
    assert encoder.dim == 32 and encoder.text_len == 512
    assert out.dtype == torch.float32


def test_padding_positions_are_zero(encoder):
    prompt = "a red fox"
    out = encoder.encode([prompt])[0]
    n = len(prompt.encode()) + 1  # bytes + </s>
    assert out[:n].abs().sum(-1).min() > 0
    assert torch.count_nonzero(out[n:]) == 0


def test_deterministic_and_prompt_dependent():
    a = TextEncoder(tiny_text_encoder_config(), device="cpu")
    b = TextEncoder(tiny_text_encoder_config(), device="cpu")
    pa = a.encode(["sunrise over mountains"])
    assert torch.equal(pa, b.encode(["sunrise over mountains"]))
    assert not torch.equal(pa, a.encode(["sunset over mountains"]))
    # batching does not change a prompt's encoding (padding is masked)
    both = b.encode(["x", "sunrise over mountains"])
    torch.testing.assert_close(both[1], pa[0], atol=1e-5, rtol=1e-5)


def test_cache_hits_and_lru(monkeypatch):
    enc = TextEncoder(tiny_text_encoder_config(), device="cpu")
    object.__setattr__(enc.config, "cache_size", 2)
    calls: list[list[str]] = []
    real = enc._encode_uncached

    def spy(prompts):
        calls.append(list(prompts))
        return real(prompts)

    monkeypatch.setattr(enc, "_encode_uncached", spy)
    first = enc.encode(["p1", "p2", "p1"])
    assert calls == [["p1", "p2"]]
    assert torch.equal(first[0], first[2])
    again = enc.encode(["p2", "p1"])
    assert calls == [["p1", "p2"]]  # both hits: no model call
    assert enc.cache_info() == {"hits": 2, "misses": 2, "size": 2, "max_size": 2}
    torch.testing.assert_close(again[0], first[1])
    enc.encode(["p3"])  # evicts the least recently used (p2)
    enc.encode(["p1"])
    assert calls == [["p1", "p2"], ["p3"]]
    enc.encode(["p2"])
    assert calls[-1] == ["p2"]
    assert enc.cache_info()["misses"] == 4 and enc.cache_info()["hits"] == 3
    enc.clear_cache()
    assert enc.cache_info()["size"] == 0


def test_byte_tokenizer_non_ascii_and_truncation():
    tok = ByteTokenizer()
    text = "café 東京 🦊"
    ids = tok.encode(text, 64)
    assert ids[-1] == tok.eos_id and len(ids) == len(text.encode("utf-8")) + 1
    assert all(3 <= i < tok.vocab_size for i in ids[:-1])
    assert tok.decode(ids) == text
    # truncation keeps whole characters and the </s>: "東" is 3 bytes, "🦊" 4
    for n in range(1, 20):
        cut = tok.encode(text, n)
        assert len(cut) <= n and cut[-1] == tok.eos_id
        decoded = tok.decode(cut)
        assert text.startswith(decoded) and "\ufffd" not in decoded
    batch, mask = tok(["", "é" * 10], max_length=8)
    assert batch.shape == mask.shape == (2, 8)
    assert batch[0].tolist() == [1, 0, 0, 0, 0, 0, 0, 0] and mask[0].sum() == 1
    assert tok.decode(batch[1]) == "é" * 3 and mask[1].sum() == 7


def test_long_prompt_is_truncated(encoder):
    out = encoder.encode(["ü" * 1000])
    assert out.shape == (1, 512, 32)
    assert torch.count_nonzero(out.abs().sum(-1)) == 511  # 255 x 2-byte chars + </s>
    ids, mask = encoder.tokenize(["  many   spaces\n\there "])
    assert ByteTokenizer().decode(ids[0]) == "many spaces here"  # Wan's whitespace cleaning


def _tiny_hf_dir(tmp_path, encoder: TextEncoder):
    """A local HF-layout dir: config.json, sharded safetensors, and a tokenizer.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    d = tmp_path / "umt5-xxl"
    d.mkdir()
    encoder.model.config.to_json_file(str(d / "config.json"))
    sd = {k: v for k, v in encoder.model.state_dict().items() if k != "encoder.embed_tokens.weight"}
    sd["decoder.block.0.layer.0.SelfAttention.q.weight"] = torch.zeros(4, 4)  # a full UMT5's decoder
    save_checkpoint(sd, d, max_shard_bytes=20_000)
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(["a", "red", "fox", "sea"])}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>").save_pretrained(str(d))
    return d


def test_from_pretrained_dir_hf_layout(tmp_path, encoder):
    d = _tiny_hf_dir(tmp_path, encoder)
    assert json.loads((d / "config.json").read_text())["d_model"] == 32
    real = TextEncoder.from_pretrained_dir(tmp_path / "umt5-xxl", device="cpu", text_len=16)
    assert real.dim == 32
    ids, mask = real.tokenize(["a red  fox", "sea whale"])
    assert ids[0, :4].tolist() == [3, 4, 5, 1] and ids[1, :3].tolist() == [6, 2, 1]
    assert mask.sum(1).tolist() == [4, 3]
    out = real.encode(["a red  fox", "sea whale"])
    assert out.shape == (2, 16, 32) and torch.count_nonzero(out[0, 4:]) == 0
    with torch.no_grad():
        expected = encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(out[0, :4], expected[0, :4])
    # the model dir one level up (krea-realtime-video/umt5-xxl) is found too
    assert TextEncoder.from_pretrained_dir(tmp_path, text_len=16).dim == 32


def test_from_pretrained_dir_wan_pth_layout(tmp_path, encoder):
    """Wan's own T5 checkpoint keys map onto UMT5EncoderModel."""
    hf = _tiny_hf_dir(tmp_path, encoder)
    inverse = {}
    for k, v in encoder.model.state_dict().items():
        if k == "encoder.embed_tokens.weight":
            continue
        for wan_key in _wan_keys_for(k):
            if wan_t5_key_to_hf(wan_key) == k:
                inverse[wan_key] = v.clone()
    assert len(inverse) == len(encoder.model.state_dict()) - 1
    model_dir = tmp_path / "krea-realtime-video"
    (model_dir / "google" / "umt5-xxl").mkdir(parents=True)
    torch.save(inverse, model_dir / "models_t5_umt5-xxl-enc-bf16.pth")
    for f in hf.iterdir():
        if "token" in f.name or f.name == "special_tokens_map.json":
            (model_dir / "google" / "umt5-xxl" / f.name).write_bytes(f.read_bytes())
    from videogen.pipeline import text_encoder as te

    cfg = te.TextEncoderConfig(
        dim=32, text_len=16, umt5=tiny_text_encoder_config().umt5,
        checkpoint=str(model_dir / te.WAN_T5_CHECKPOINT), tokenizer_dir=str(model_dir / te.WAN_TOKENIZER_DIR),
    )
    wan = TextEncoder(cfg, device="cpu")
    ref = TextEncoder.from_pretrained_dir(hf, text_len=16)
    assert torch.equal(wan.encode(["a red fox"]), ref.encode(["a red fox"]))


def _wan_keys_for(hf_key: str) -> list[str]:
    if hf_key == "shared.weight":
        return ["token_embedding.weight"]
    if hf_key == "encoder.final_layer_norm.weight":
        return ["norm.weight"]
    i = hf_key.split(".")[2]
    from videogen.pipeline.text_encoder import _WAN_T5_BLOCK

    return [f"blocks.{i}.{w}" for w in _WAN_T5_BLOCK]


def test_prompts_are_cleaned_as_wan_does(monkeypatch):
    """Wan's basic_clean (ftfy when installed, HTML entities unescaped twice) + whitespace."""
    import sys
    import types

    from videogen.pipeline.text_encoder import clean_prompt

    assert clean_prompt("  a fox &amp;amp; a hare\n\t&lt;3  ") == "a fox & a hare <3"
    assert clean_prompt("caf&eacute;") == "café"
    fake = types.ModuleType("ftfy")
    fake.fix_text = lambda text: text.replace("Ã©", "é")  # what ftfy does to this mojibake
    monkeypatch.setitem(sys.modules, "ftfy", fake)
    assert clean_prompt("cafÃ©  au lait") == "café au lait"
