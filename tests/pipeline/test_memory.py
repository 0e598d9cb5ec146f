"""The VAE's streaming state in the GPU memory plan: computed on the meta device, equal to what a
real stream holds, and counted by memory_need."""

from __future__ import annotations

import pytest
import torch

from videogen.pipeline.config import KREA_14B_CONFIG, tiny_pipeline_config
from videogen.pipeline.memory import vae_stream_bytes
from videogen.pipeline.vae import StreamingVAEDecoder, WanVAEDecoder, tiny_vae_config
from videogen.pipeline.vae_encoder import StreamingVAEEncoder, WanVAEEncoder

pytestmark = pytest.mark.timeout(120)


def test_the_computed_caches_equal_a_real_streams():
    cfg, vcfg = tiny_pipeline_config(), tiny_vae_config()
    width, height = 96, 64
    planned = vae_stream_bytes(width, height, cfg, vcfg, bytes_per_value=4)
    decoder = StreamingVAEDecoder(WanVAEDecoder(vcfg).eval())
    encoder = StreamingVAEEncoder(WanVAEEncoder(vcfg).eval())
    for _ in range(3):
        decoder.decode_block(torch.randn(1, 16, 3, height // 8, width // 8))
    encoder.encode_block(torch.rand(1, 3, 9, height, width))
    encoder.encode_block(torch.rand(1, 3, 12, height, width))
    assert planned.decoder_cache == decoder.cache.nbytes() > 0
    assert planned.encoder_cache == encoder.cache.nbytes() > 0
    assert planned.pixel_buffer == 9 * 3 * height * width * 4


def test_memory_need_counts_the_vae_caches():
    from videogen.local.host import memory_need

    need = memory_need((832, 480))
    caches = vae_stream_bytes(832, 480, KREA_14B_CONFIG, bytes_per_value=2)
    assert need.vae_caches == caches.total
    assert 2.5 * 2**30 < need.vae_caches < 3.2 * 2**30  # decoder 1.76 GiB + encoder 1.04 GiB in bf16
    assert need.total == need.dit + need.text_encoder + need.vae + need.kv_cache + need.vae_caches + need.working
    assert "VAE encoder and decoder caches 2.8 GiB" in need.describe()
    assert memory_need((576, 320)).vae_caches < need.vae_caches
