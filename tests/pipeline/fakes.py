"""A tiny session for tests: real tiny DiT and VAE, a deterministic fake text encoder (the DiT
tests must not depend on the UMT5 encoder)."""

from __future__ import annotations

import zlib

import torch

from videogen.pipeline.config import tiny_pipeline_config
from videogen.pipeline.dit import build_dit
from videogen.pipeline.session import PipelineSession

WIDTH, HEIGHT = 64, 48  # latent 8 x 6, 4 x 3 tokens per frame


class FakeTextEncoder:
    """Per-prompt deterministic embeddings, cached like the real encoder."""

    def __init__(self, dim: int = 32, text_len: int = 16) -> None:
        self.dim = dim
        self.text_len = text_len
        self.calls: list[list[str]] = []
        self._cache: dict[str, torch.Tensor] = {}

    def encode(self, prompts: list[str]) -> torch.Tensor:
        self.calls.append(list(prompts))
        out = []
        for p in prompts:
            if p not in self._cache:
                g = torch.Generator().manual_seed(zlib.crc32(p.encode()))
                self._cache[p] = torch.randn(self.text_len, self.dim, generator=g)
            out.append(self._cache[p])
        return torch.stack(out)


def make_session(**config) -> PipelineSession:
    """The tiny DiT with the tiny Wan VAE (decoder and encoder) and the fake text encoder."""
    from videogen.pipeline import vae, vae_encoder

    cfg = tiny_pipeline_config(**config)
    dit = build_dit(cfg.dit, seed=0)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        decoder = vae.WanVAEDecoder(vae.tiny_vae_config()).eval()
        encoder = vae_encoder.WanVAEEncoder(vae.tiny_vae_config()).eval()
    return PipelineSession(dit, vae.StreamingVAEDecoder(decoder), FakeTextEncoder(cfg.dit.text_dim,
                           cfg.dit.text_len), cfg, "cpu", torch.float32, random_weights=True, encoder=encoder)


def params(**kw):
    from videogen.pipeline.session import GenerationParams

    values = {"prompt": "a red fox in the snow", "width": WIDTH, "height": HEIGHT, "seed": 0}
    values.update(kw)
    return GenerationParams(**values)
