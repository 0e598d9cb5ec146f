"""The TAEHV-shaped decoder: TAEHV's parallel decode written out here, streaming == one pass,
TAEHV's checkpoint layout (taew2_1.pth), the 9-then-12 frames of a stream."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videogen.pipeline.taehv import (
    MemBlock,
    StreamingTAEHVDecoder,
    TAEHVConfig,
    TAEHVDecoder,
    TGrow,
    load_taehv_decoder,
    tiny_taehv_config,
)

pytestmark = pytest.mark.timeout(120)


def _randomized(decoder: TAEHVDecoder, seed: int = 0) -> TAEHVDecoder:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in decoder.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / (p[0].numel() if p.ndim > 1 else 1) ** 0.5)
    return decoder.eval()


def taehv_parallel(decoder: TAEHVDecoder, latents: torch.Tensor) -> torch.Tensor:
    """TAEHV's apply_model_with_memblocks(parallel=True) on NTCHW, then decode_video's
    [0, 1] -> [-1, 1] and the first 3 frames trimmed: the whole clip at once."""
    x = latents.permute(0, 2, 1, 3, 4)  # NCTHW -> NTCHW
    n, t = x.shape[:2]
    x = x.reshape(n * t, *x.shape[2:])
    for block in decoder.decoder:
        if isinstance(block, MemBlock):
            frames = x.shape[0] // n
            seq = x.reshape(n, frames, *x.shape[1:])
            mem = F.pad(seq, (0, 0, 0, 0, 0, 0, 1, 0))[:, :frames].reshape(x.shape)
            x = block(x, mem)
        else:
            x = block(x)
    frames = x.shape[0] // n
    video = x.reshape(n, frames, *x.shape[1:]).permute(0, 2, 1, 3, 4)
    return (video * 2 - 1).clamp(-1, 1)[:, :, decoder.config.frames_to_trim:]


@pytest.fixture(scope="module")
def decoder() -> TAEHVDecoder:
    return _randomized(TAEHVDecoder(tiny_taehv_config()))


def test_streaming_equals_taehvs_one_pass_decode(decoder):
    z = torch.randn(1, 16, 9, 5, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = taehv_parallel(decoder, z)
    stream = StreamingTAEHVDecoder(decoder)
    assert stream.frames_for(3) == 9
    parts = [stream.decode_block(z[:, :, i:i + 3]) for i in (0, 3, 6)]
    assert [p.shape[2] for p in parts] == [9, 12, 12] and stream.frames_for(3) == 12
    got = torch.cat(parts, dim=2)
    assert got.shape == expected.shape == (1, 3, 33, 40, 48)
    assert (got - expected).abs().max().item() < 1e-5
    assert expected.std() > 0.05
    assert stream.cache_nbytes() > 0
    stream.reset()
    torch.testing.assert_close(stream.decode_block(z[:, :, :3]), parts[0])


def test_real_layout_is_taehvs():
    """TAEHV's decoder for Wan 2.1: 256/128/64/64 channels, 3 MemBlocks a stage, TAEHV's indices."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in TAEHVDecoder(TAEHVConfig()).state_dict().items()}
    assert shapes["decoder.1.weight"] == (256, 16, 3, 3)
    assert shapes["decoder.3.conv.0.weight"] == (256, 512, 3, 3)
    assert shapes["decoder.5.conv.4.weight"] == (256, 256, 3, 3)
    assert shapes["decoder.7.conv.weight"] == (256, 256, 1, 1)  # TGrow(256, 1)
    assert shapes["decoder.8.weight"] == (128, 256, 3, 3) and "decoder.8.bias" not in shapes
    assert shapes["decoder.13.conv.weight"] == (256, 128, 1, 1)  # TGrow(128, 2)
    assert shapes["decoder.19.conv.weight"] == (128, 64, 1, 1)
    assert shapes["decoder.22.weight"] == (3, 64, 3, 3) and shapes["decoder.22.bias"] == (3,)
    assert max(int(k.split(".")[1]) for k in shapes) == 22
    assert not any(".skip." in k for k in shapes)  # every MemBlock keeps its width


def test_taehvs_checkpoint_loads_its_decoder_half(decoder, tmp_path):
    sd = {**decoder.state_dict(), "encoder.0.weight": torch.zeros(4, 3, 3, 3), "encoder.0.bias": torch.zeros(4)}
    torch.save(sd, tmp_path / "taew2_1.pth")
    from videogen.pipeline.weights import open_checkpoint

    loaded = load_taehv_decoder(open_checkpoint(tmp_path / "taew2_1.pth"), tiny_taehv_config())
    z = torch.randn(1, 16, 2, 5, 6)
    torch.testing.assert_close(StreamingTAEHVDecoder(loaded).decode_block(z),
                               StreamingTAEHVDecoder(decoder).decode_block(z))
    del sd["decoder.1.weight"]
    with pytest.raises(KeyError, match="decoder.1.weight"):
        load_taehv_decoder(sd, tiny_taehv_config())


def test_a_tgrow_without_time_upscaling_keeps_the_last_time_step():
    """TAEHV's patch_tgrow_layers, for a preview decoder with time upscaling off."""
    full = _randomized(TAEHVDecoder(tiny_taehv_config()), 2)
    cfg = TAEHVConfig(channels=(16, 8, 8, 4), blocks_per_stage=1, time_upscale=(False, True))
    preview = load_taehv_decoder(full.state_dict(), cfg)
    index = next(i for i, m in enumerate(preview.decoder) if isinstance(m, TGrow) and m.stride == 1 and i > 5)
    torch.testing.assert_close(preview.decoder[index].conv.weight, full.decoder[index].conv.weight[-8:])
    assert cfg.num_frames(3) == 4 * 3 // 2 - 1
