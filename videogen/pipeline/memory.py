"""What the streaming state of the VAE holds, computed without memory (on the ``meta`` device).

The KV cache's size is arithmetic (``PipelineConfig.kv_cache_bytes``); the VAE's caches depend on
every causal conv's input shape, so the encoder and decoder are built on ``meta`` and run one
block there (shapes only, no data, no time): the sizes are exact for any width, height and VAE.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .config import PipelineConfig
from .vae import WanVAEConfig, WanVAEDecoder
from .vae_encoder import WanVAEEncoder
from .vae_layers import ConvCache

__all__ = ["VAEStreamBytes", "vae_stream_bytes"]


@dataclass(frozen=True)
class VAEStreamBytes:
    """Bytes of one stream's VAE state at a size (``bytes_per_value`` each value)."""

    decoder_cache: int  # the decoder's causal-conv caches (2 frames per conv)
    encoder_cache: int  # the encoder's, for video in (the anchor re-encode starts from none)
    pixel_buffer: int  # Krea's last 1 + (kv - 1) * 4 decoded frames, for the anchor

    @property
    def total(self) -> int:
        return self.decoder_cache + self.encoder_cache + self.pixel_buffer


def _cache_bytes(cache: ConvCache, bytes_per_value: int) -> int:
    return sum(t.numel() * bytes_per_value for t in cache.feats if t is not None)


@functools.lru_cache(maxsize=16)
@torch.no_grad()
def vae_stream_bytes(width: int, height: int, config: PipelineConfig, vae_config: WanVAEConfig | None = None,
                     bytes_per_value: int = 2) -> VAEStreamBytes:
    """The VAE caches of a stream at ``width`` x ``height``, after its first block and one more
    (the steady state), for Wan's VAE (``vae_config``, default Wan 2.1's)."""
    vae_config = vae_config or WanVAEConfig()
    lh, lw = config.latent_size(width, height)
    frames = config.frames_per_block
    with torch.device("meta"):
        decoder, encoder = WanVAEDecoder(vae_config).eval(), WanVAEEncoder(vae_config).eval()
        decoder.channels_last = encoder.channels_last = False
        dec_cache, enc_cache = ConvCache(), ConvCache()
        for _ in range(2):
            decoder.forward_block(torch.empty(1, vae_config.z_dim, frames, lh, lw), dec_cache)
        encoder.forward_block(torch.empty(1, 3, config.first_block_frames_decoded, height, width), enc_cache)
        encoder.forward_block(torch.empty(1, 3, config.vae_temporal_factor * frames, height, width), enc_cache)
    pixels = (1 + (config.kv_cache_num_frames - 1) * config.vae_temporal_factor) * 3 * height * width
    return VAEStreamBytes(_cache_bytes(dec_cache, bytes_per_value), _cache_bytes(enc_cache, bytes_per_value),
                          pixels * bytes_per_value)
