"""A tiny copy of the Krea pipeline's weight files, in the real files' names and key layouts.

``write_tiny_set(folder)`` writes what ``download_models`` fetches from the hub, made from the
tiny configuration (random weights): the DiT as ``krea-realtime-video-14b.safetensors`` (Wan's
key names), the VAE (encoder and decoder) as ``Wan2.1_VAE.pth``, the UMT5 encoder as Wan's
``models_t5_umt5-xxl-enc-bf16.pth`` (Wan's T5 key names), a word-level tokenizer in
``google/umt5-xxl/`` and a ``manifest.json`` with each file's size and SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

TOKENS = ["a", "red", "fox", "sea", "city", "at", "night"]


def tiny_text_encoder_config(**paths):
    from videogen.pipeline import text_encoder as te

    tiny = te.tiny_text_encoder_config(text_len=64)
    return te.TextEncoderConfig(dim=tiny.dim, text_len=tiny.text_len, umt5=tiny.umt5, **paths)


def write_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(TOKENS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(str(folder))


def wan_t5_state_dict(model) -> dict[str, torch.Tensor]:
    """An HF ``UMT5EncoderModel``'s weights under Wan's T5 key names."""
    from videogen.pipeline.text_encoder import _WAN_T5_BLOCK

    inverse = {"shared.weight": "token_embedding.weight", "encoder.final_layer_norm.weight": "norm.weight"}
    out = {}
    for key, value in model.state_dict().items():
        if key == "encoder.embed_tokens.weight":  # tied to shared.weight
            continue
        if key in inverse:
            out[inverse[key]] = value.clone()
            continue
        _, _, i, rest = key.split(".", 3)
        wan = next(w for w, hf in _WAN_T5_BLOCK.items() if hf == rest)
        out[f"blocks.{i}.{wan}"] = value.clone()
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_tiny_set(folder: Path, *, manifest: bool = True) -> dict[str, dict]:
    """The tiny set in ``folder`` (the layout's relative paths); returns its manifest entries."""
    from videogen.pipeline import build_dit, tiny_dit_config, to_original_state_dict, vae
    from videogen.pipeline import text_encoder as te
    from videogen.pipeline.weights import save_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(to_original_state_dict(build_dit(tiny_dit_config(), seed=0)),
                    folder / "krea-realtime-video-14b.safetensors")
    from videogen.pipeline.vae_encoder import WanVAEEncoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        decoder = vae.WanVAEDecoder(vae.tiny_vae_config())
        encoder = WanVAEEncoder(vae.tiny_vae_config())
    # one file, as Wan's: the encoder's keys (encoder.*, conv1.*) beside the decoder's (decoder.*, conv2.*)
    torch.save({**encoder.state_dict(), **decoder.state_dict()}, folder / "Wan2.1_VAE.pth")
    encoder = te.TextEncoder(te.tiny_text_encoder_config(text_len=64), device="cpu", dtype=torch.float32)
    torch.save(wan_t5_state_dict(encoder.model), folder / "models_t5_umt5-xxl-enc-bf16.pth")
    write_tokenizer(folder / "google" / "umt5-xxl")
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json"):
        relative = path.relative_to(folder).as_posix()
        files[relative] = {"size": path.stat().st_size, "sha256": sha256(path),
                           "source": f"tiny test set/{relative}"}
    if manifest:
        (folder / "manifest.json").write_text(json.dumps({"format": "studio-models/1", "files": files}, indent=2))
    return files
