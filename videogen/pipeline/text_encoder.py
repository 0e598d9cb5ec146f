"""The UMT5 text encoder of Wan 2.1 / Krea realtime, through ``transformers`` (no Django).

Real: umt5-xxl's encoder (d_model 4096, 24 layers, 64 heads, gated-GELU FFN 10240, a relative
position bias per layer), prompts tokenised to 512 tokens (padded / truncated, ``</s>`` at the
end), encoded with the attention mask; as in Wan, the positions after each prompt's tokens are
zero in the output (Wan cuts the context to the prompt's length and the DiT pads it back with
zeros). Weights come from a local directory only (``local_files_only=True``; no download): the
Hugging Face ``UMT5EncoderModel`` layout (``config.json``, ``*.safetensors`` with keys
``encoder.block.{i}.layer.0.SelfAttention.q.weight`` ...; a full UMT5 checkpoint's decoder is
skipped) with its tokenizer (``tokenizer.json``, or ``spiece.model`` which needs the
``sentencepiece`` package), or Wan's own ``models_t5_umt5-xxl-enc-bf16.pth`` (keys
``blocks.{i}.attn.q.weight`` ..., mapped by :func:`wan_t5_key_to_hf`) with Wan's tokenizer
folder ``google/umt5-xxl``.

Tiny (tests, the CPU fake pipeline): a small random UMT5 (d_model 32) with a deterministic
UTF-8 *byte* tokenizer, :class:`ByteTokenizer`. We cannot download the real sentencepiece
vocabulary here, so the tiny encoder does not understand words the way umt5 does: each byte is
one token (ids 3..258; 0 pad, 1 ``</s>``, 2 unk). Its embeddings are only meaningful as
"different prompts give different, stable conditioning".

``transformers`` is imported inside this module only, and lazily (importing it is slow).
"""

from __future__ import annotations

import html
import json
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import weights

__all__ = [
    "ByteTokenizer",
    "TextEncoder",
    "TextEncoderConfig",
    "basic_clean",
    "clean_prompt",
    "tiny_text_encoder_config",
    "umt5_xxl_config",
    "wan_t5_key_to_hf",
]

WAN_T5_CHECKPOINT = "models_t5_umt5-xxl-enc-bf16.pth"
WAN_TOKENIZER_DIR = os.path.join("google", "umt5-xxl")


def umt5_xxl_config() -> dict[str, Any]:
    """``UMT5Config`` keyword arguments of umt5-xxl (Wan's ``umt5_xxl`` encoder)."""
    return {
        "vocab_size": 256384,
        "d_model": 4096,
        "d_kv": 64,
        "d_ff": 10240,
        "num_layers": 24,
        "num_heads": 64,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu",
        "dropout_rate": 0.0,
        "layer_norm_epsilon": 1e-6,
        "tie_word_embeddings": False,
        "pad_token_id": 0,
        "eos_token_id": 1,
    }


@dataclass(frozen=True)
class TextEncoderConfig:
    """Where the encoder comes from and how prompts are cut.

    ``model_dir``: an HF-layout directory (config.json + weights + tokenizer). ``checkpoint`` +
    ``tokenizer_dir``: Wan's ``.pth`` and its tokenizer folder. Neither: a randomly initialised
    model from ``umt5`` (seeded by ``seed``), as the tiny config does.
    """

    dim: int = 4096
    text_len: int = 512
    umt5: dict[str, Any] = field(default_factory=umt5_xxl_config)
    tokenizer: str = "pretrained"  # or "bytes" (ByteTokenizer)
    model_dir: str | None = None
    checkpoint: str | None = None
    tokenizer_dir: str | None = None
    cache_size: int = 64
    seed: int = 0


def tiny_text_encoder_config(text_len: int = 512) -> TextEncoderConfig:
    """A 2-layer, d_model 32 UMT5 with the byte tokenizer (see the module docstring)."""
    return TextEncoderConfig(
        dim=32,
        text_len=text_len,
        umt5={**umt5_xxl_config(), "vocab_size": 384, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2,
              "num_heads": 4},
        tokenizer="bytes",
    )


_WHITESPACE = re.compile(r"\s+")


def basic_clean(text: str) -> str:
    """Wan's ``basic_clean``: ``ftfy.fix_text`` (mojibake, when ftfy is installed), HTML entities
    unescaped twice (``&amp;lt;`` -> ``<``), ends stripped."""
    try:
        import ftfy
    except ImportError:  # ftfy is optional: without it only mojibake stays unrepaired
        pass
    else:
        text = ftfy.fix_text(text)
    return html.unescape(html.unescape(text)).strip()


def clean_prompt(text: str) -> str:
    """Wan's tokenizer cleaning (``clean="whitespace"``): :func:`basic_clean`, then runs of
    whitespace become one space."""
    return _WHITESPACE.sub(" ", basic_clean(text)).strip()


class ByteTokenizer:
    """Deterministic UTF-8 byte tokenizer: byte ``b`` -> id ``b + 3``; 0 pad, 1 ``</s>``, 2 unk.

    A stand-in for umt5's sentencepiece vocabulary, which cannot be downloaded here. Truncation
    keeps whole characters (never half a multi-byte sequence) and always ends with ``</s>``.
    """

    pad_id, eos_id, unk_id, offset = 0, 1, 2, 3
    vocab_size = 256 + 3

    def encode(self, text: str, max_length: int) -> list[int]:
        if max_length < 1:
            raise ValueError("max_length must be >= 1")
        data = text.encode("utf-8")
        room = max_length - 1  # keep one for </s>
        if len(data) > room:
            data = data[:room]
            # drop a trailing partial UTF-8 sequence
            data = data.decode("utf-8", errors="ignore").encode("utf-8")
        return [b + self.offset for b in data] + [self.eos_id]

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        data = bytes(i - self.offset for i in ids if i >= self.offset)
        return data.decode("utf-8", errors="replace")

    def __call__(self, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.full((len(texts), max_length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(texts), max_length), dtype=torch.long)
        for i, text in enumerate(texts):
            row = self.encode(text, max_length)
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return ids, mask


class _HFTokenizer:
    """A local transformers tokenizer, called the way Wan calls it."""

    def __init__(self, path: str | os.PathLike):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)

    def __call__(self, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tok(
            texts,
            padding="max_length",
            truncation=True,
            max_length=max_length,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        return enc["input_ids"].long(), enc["attention_mask"].long()


# Wan's T5Encoder names -> HF UMT5EncoderModel names (per block ``blocks.{i}.`` ->
# ``encoder.block.{i}.``)
_WAN_T5_BLOCK = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}


def wan_t5_key_to_hf(key: str) -> str | None:
    """A key of Wan's ``models_t5_umt5-xxl-enc-bf16.pth`` -> ``UMT5EncoderModel`` key."""
    if key == "token_embedding.weight":
        return "shared.weight"
    if key == "norm.weight":
        return "encoder.final_layer_norm.weight"
    if key.startswith("blocks."):
        _, i, rest = key.split(".", 2)
        if rest in _WAN_T5_BLOCK:
            return f"encoder.block.{i}.{_WAN_T5_BLOCK[rest]}"
    return key  # unknown: reported as unexpected by load_into


def _hf_encoder_key(key: str) -> str | None:
    """HF checkpoint key -> encoder-model key; a full UMT5's decoder / lm_head are dropped."""
    if key.startswith(("decoder.", "lm_head.")):
        return None
    return key


def _build_umt5(umt5: dict[str, Any], *, meta: bool, seed: int = 0):
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(**umt5)
    if meta:
        with torch.device("meta"):
            return UMT5EncoderModel(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UMT5EncoderModel(config)


class TextEncoder:
    """Prompts -> ``[B, text_len, dim]`` conditioning, with an LRU cache per prompt string."""

    def __init__(
        self,
        config: TextEncoderConfig | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
    ):
        self.config = config = config or tiny_text_encoder_config()
        self.device = torch.device(device)
        self.dtype = dtype or weights.default_dtype(self.device)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

        if config.tokenizer == "bytes":
            self.tokenizer: Any = ByteTokenizer()
        else:
            tok_dir = config.tokenizer_dir or config.model_dir
            if tok_dir is None:
                raise ValueError("a pretrained tokenizer needs tokenizer_dir or model_dir")
            self.tokenizer = _HFTokenizer(tok_dir)

        if config.model_dir is not None:
            self.model = self._load_hf_dir(Path(config.model_dir))
        elif config.checkpoint is not None:
            self.model = _build_umt5(config.umt5, meta=True)
            weights.load_into(
                self.model,
                weights.open_checkpoint(config.checkpoint),
                key_map=wan_t5_key_to_hf,
                dtype=self.dtype,
                device=self.device,
            )
        else:
            self.model = _build_umt5(config.umt5, meta=False, seed=config.seed).to(self.device, self.dtype)
        self.model.eval().requires_grad_(False)
        got = self.model.config.d_model
        if got != config.dim:
            raise ValueError(f"the encoder's d_model is {got}, the config says dim {config.dim}")

    def _load_hf_dir(self, path: Path):
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"{path} has no config.json (HF UMT5 layout expected)")
        raw = json.loads(cfg_file.read_text())
        keys = set(umt5_xxl_config()) | {"is_encoder_decoder", "scalable_attention", "dense_act_fn"}
        umt5 = {k: v for k, v in raw.items() if k in keys}
        umt5["dropout_rate"] = 0.0
        model = _build_umt5(umt5, meta=True)
        weights.load_into(
            model, weights.open_checkpoint(path), key_map=_hf_encoder_key, dtype=self.dtype, device=self.device
        )
        return model

    @classmethod
    def from_pretrained_dir(
        cls,
        path: str | os.PathLike,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        *,
        text_len: int = 512,
        cache_size: int = 64,
    ) -> TextEncoder:
        """The real encoder from local files: an HF-layout dir, or a dir with Wan's ``.pth``
        and ``google/umt5-xxl`` (the model dir ``krea-realtime-video/`` itself)."""
        path = Path(path)
        if (path / "config.json").is_file():
            raw = json.loads((path / "config.json").read_text())
            config = TextEncoderConfig(
                dim=int(raw["d_model"]), text_len=text_len, model_dir=str(path), cache_size=cache_size
            )
        elif (path / WAN_T5_CHECKPOINT).is_file():
            config = TextEncoderConfig(
                text_len=text_len,
                checkpoint=str(path / WAN_T5_CHECKPOINT),
                tokenizer_dir=str(path / WAN_TOKENIZER_DIR),
                cache_size=cache_size,
            )
        elif (path / "umt5-xxl" / "config.json").is_file():
            return cls.from_pretrained_dir(path / "umt5-xxl", device, dtype, text_len=text_len, cache_size=cache_size)
        else:
            raise FileNotFoundError(
                f"{path}: expected config.json + weights + tokenizer (HF UMT5 layout), "
                f"or {WAN_T5_CHECKPOINT} + {WAN_TOKENIZER_DIR}/"
            )
        return cls(config, device=device, dtype=dtype)

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def text_len(self) -> int:
        return self.config.text_len

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tokenizer([clean_prompt(p) for p in prompts], self.config.text_len)

    @torch.no_grad()
    def _encode_uncached(self, prompts: list[str]) -> torch.Tensor:
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        out = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return out * mask.unsqueeze(-1).to(out.dtype)  # zero after each prompt's tokens

    def encode(self, prompts: list[str] | str) -> torch.Tensor:
        """``[B, text_len, dim]`` on the encoder's device and dtype (cached per prompt)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        found: dict[str, torch.Tensor] = {}
        todo: list[str] = []
        for p in prompts:
            if p in found:
                continue
            hit = self._cache.get(p)
            if hit is not None:
                self._cache.move_to_end(p)
                self.hits += 1
                found[p] = hit
            elif p not in todo:
                todo.append(p)
        if todo:
            self.misses += len(todo)
            out = self._encode_uncached(todo)
            for p, row in zip(todo, out, strict=True):
                found[p] = row
                self._remember(p, row)
        return torch.stack([found[p] for p in prompts])

    __call__ = encode

    def _remember(self, prompt: str, row: torch.Tensor) -> None:
        if self.config.cache_size <= 0:
            return
        self._cache[prompt] = row
        self._cache.move_to_end(prompt)
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)

    def cache_info(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "size": len(self._cache),
                "max_size": self.config.cache_size}

    def clear_cache(self) -> None:
        self._cache.clear()
        self.hits = self.misses = 0
