"""Configuration of the Krea realtime (causal Wan 2.1 14B) pipeline.

The numbers are those of docs/protocols.md, "Krea realtime pipeline". ``tiny_*`` configs keep
the architecture and shrink its sizes so the same code runs on a CPU for tests and for a
machine with no GPU (random weights).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DiTConfig:
    """The Wan 2.1 DiT (text-to-video 14B by default)."""

    dim: int = 5120
    ffn_dim: int = 13824
    num_heads: int = 40
    num_layers: int = 40
    patch_size: tuple[int, int, int] = (1, 2, 2)
    in_channels: int = 16
    out_channels: int = 16
    text_dim: int = 4096
    text_len: int = 512
    freq_dim: int = 256
    eps: float = 1e-6
    qk_norm: bool = True
    cross_attn_norm: bool = True
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError("dim must be a multiple of num_heads")
        if self.head_dim % 2 or self.head_dim < 6:
            raise ValueError("head_dim must be even and at least 6 (3D RoPE)")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def num_parameters(self) -> int:
        """Parameter count (weights and biases), without building the model."""
        d, f, p = self.dim, self.ffn_dim, self.patch_size
        patch = self.in_channels * p[0] * p[1] * p[2] * d + d
        text = self.text_dim * d + d + d * d + d
        time = self.freq_dim * d + d + d * d + d + d * 6 * d + 6 * d
        attn_self = 4 * (d * d + d) + 2 * d
        attn_cross = 4 * (d * d + d) + 2 * d
        ffn = d * f + f + f * d + d
        block = attn_self + attn_cross + ffn + 2 * d + 6 * d  # norm3 affine + modulation
        head = d * self.out_channels * p[0] * p[1] * p[2] + self.out_channels * p[0] * p[1] * p[2] + 2 * d
        return patch + text + time + self.num_layers * block + head


CACHE_MODES = ("krea", "rolling")


@dataclass(frozen=True)
class PipelineConfig:
    """Streaming settings; the defaults are Krea's release server's (docs/pipeline.md)."""

    dit: DiTConfig = field(default_factory=DiTConfig)
    frames_per_block: int = 3
    kv_cache_num_frames: int = 3
    # "krea": the cache rebuilt before every block from [anchor, last latents] (Krea's release);
    # "rolling": Self-Forcing's rolling cache written by a t = 0 pass after each block.
    cache_mode: str = "krea"
    # krea mode: model calls per block, mapped through Krea's get_denoising_schedule
    # (4 -> [1000, 908.8, 714.0, 0]); fal's default is 4, Krea's server's 5.
    num_denoising_steps: int = 4
    # rolling mode: the nominal steps, warped by timestep_shift (Self-Forcing); also what a
    # timeline records for 4 steps.
    denoising_steps: tuple[int, ...] = (1000, 750, 500, 250)
    timestep_shift: float = 5.0
    warp_denoising_steps: bool = True
    num_train_timesteps: int = 1000
    # Multiplier on the attention weights of cached frames in the denoising steps (log(bias) is
    # added to their logits), the window's first frame exempt: Daydream Scope's setting. 1.0 =
    # off, as in Krea's release; Scope uses 0.3 against colour drift.
    kv_cache_attention_bias: float = 1.0
    # Blocks a prompt change is interpolated over (Krea's interp_steps, per update).
    interp_steps: int = 4
    # Pixel frames dropped from the start of a stream's first block (Krea drops 3 of 9).
    first_block_drop_frames: int = 3
    # Video in: the strength when none is given (Krea's demo client sends 0.8).
    input_strength: float = 0.8
    vae_spatial_factor: int = 8
    vae_temporal_factor: int = 4
    width: int = 832
    height: int = 480
    name: str = "krea-realtime-video-14b"

    def __post_init__(self) -> None:
        if self.frames_per_block < 1 or self.kv_cache_num_frames < 1:
            raise ValueError("frames_per_block >= 1 and kv_cache_num_frames >= 1")
        if self.cache_mode not in CACHE_MODES:
            raise ValueError(f"cache_mode must be one of {CACHE_MODES}, got {self.cache_mode!r}")
        if not 0.0 < self.kv_cache_attention_bias <= 1.0:
            raise ValueError("kv_cache_attention_bias must be in (0, 1]")
        if not self.denoising_steps or self.num_denoising_steps < 1:
            raise ValueError("at least one denoising step is needed")
        if not 0 <= self.first_block_drop_frames < self.first_block_frames_decoded:
            raise ValueError("first_block_drop_frames must leave at least one frame")

    @property
    def blend_blocks(self) -> int:
        """The former name of :attr:`interp_steps`."""
        return self.interp_steps

    @property
    def first_block_frames_decoded(self) -> int:
        """Pixel frames the VAE decodes from a stream's first block (9 for Krea)."""
        return 1 + self.vae_temporal_factor * (self.frames_per_block - 1)

    def frames_per_block_out(self) -> tuple[int, int]:
        """(frames a stream's first block yields, frames every later block yields): (6, 12)."""
        return (self.first_block_frames_decoded - self.first_block_drop_frames,
                self.vae_temporal_factor * self.frames_per_block)

    @property
    def local_attn_frames(self) -> int:
        """Latent frames a block attends to: the cache window plus the block itself."""
        return self.kv_cache_num_frames + self.frames_per_block

    @property
    def spatial_factor(self) -> int:
        """Pixels per token side: VAE factor x patch factor (16 for Wan)."""
        return self.vae_spatial_factor * self.dit.patch_size[1]

    def latent_size(self, width: int, height: int) -> tuple[int, int]:
        """(latent height, latent width) for a pixel size; both must be multiples of 16."""
        check_size(width, height, self.spatial_factor)
        return height // self.vae_spatial_factor, width // self.vae_spatial_factor

    def tokens_per_frame(self, width: int, height: int) -> int:
        check_size(width, height, self.spatial_factor)
        return (height // self.spatial_factor) * (width // self.spatial_factor)

    def kv_cache_bytes(self, width: int, height: int, bytes_per_value: int = 2, batch: int = 1) -> int:
        """Size of the self-attention K/V cache (window + block) over all layers."""
        tokens = self.local_attn_frames * self.tokens_per_frame(width, height)
        return 2 * self.dit.num_layers * batch * tokens * self.dit.dim * bytes_per_value


def check_size(width: int, height: int, multiple: int = 16) -> None:
    if width <= 0 or height <= 0 or width % multiple or height % multiple:
        raise ValueError(f"width and height must be positive multiples of {multiple}, got {width}x{height}")


KREA_14B_CONFIG = PipelineConfig()


def tiny_dit_config(**overrides) -> DiTConfig:
    """Same architecture, sized for a 2-core CPU (dim 64, 2 layers, one head of 64; text 64 x 32:
    the tiny encoder's tokens are bytes, so 64 keeps short prompts apart).

    One head, not 4 of 16: at 832x480 self-attention is 90% of a step (4680 queries x 9360
    keys), and the CPU's flash kernel runs one 64-wide head 1.5x faster than four 16-wide ones
    (fewer exponentials, fuller GEMMs)."""
    values = {
        "dim": 64, "ffn_dim": 128, "num_heads": 1, "num_layers": 2,
        "text_dim": 32, "text_len": 64, "freq_dim": 64,
    }
    values.update(overrides)
    return DiTConfig(**values)


def tiny_pipeline_config(**overrides) -> PipelineConfig:
    values = {"dit": tiny_dit_config(), "width": 320, "height": 192, "name": "tiny-random"}
    values.update(overrides)
    return PipelineConfig(**values)


TINY_CONFIG = tiny_pipeline_config()

def recommended_cpu_threads() -> int:
    """Intra-op threads for the tiny model on a CPU: all usable cores but one (at least 1).

    The tiny model's kernels are small; on a shared 2-core machine two OpenMP threads that
    wait on each other (and on the web server) were 5-10x slower than one thread."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


__all__ = [
    "CACHE_MODES", "recommended_cpu_threads", "DiTConfig", "PipelineConfig", "KREA_14B_CONFIG", "TINY_CONFIG",
    "tiny_dit_config", "tiny_pipeline_config", "check_size",
]
