"""The causal Wan 2.1 DiT of Krea Realtime Video 14B, in pure PyTorch.

Layout (as Wan 2.1 T2V): Conv3d patch embedding (1, 2, 2) -> tokens; sinusoidal timestep
embedding -> ``time_embedding`` MLP -> ``time_projection`` to 6 x dim AdaLN modulation; text
embedding MLP; N blocks of [AdaLN -> self-attention (fused QKV, RMSNorm on q and k, 3D RoPE)
-> gate] + [LayerNorm (cross-attn norm) -> cross-attention to the text] + [AdaLN -> FFN
(GELU tanh) -> gate]; head (AdaLN, linear) and unpatchify.

Causality: the video is made block by block (3 latent frames); the timestep is per frame. A
block's tokens attend to themselves and to the K/V of the frames before it held in a
:class:`~.kv_cache.KVCache`. Two ways to fill that cache (``PipelineConfig.cache_mode``):

- ``krea`` (Krea's release): before every block :meth:`CausalWanDiT.recompute_cache` runs the
  context frames (anchor + last latents) at t = 0 at positions 0..n-1 under a block-causal
  mask; the block is then run at positions n.. against it, and no pass follows the block.
- ``rolling`` (Self-Forcing): positions are absolute; after a block is denoised the clean block
  is run once more at t = 0 with ``commit=True``, which keeps its K/V in the cache and drops
  the oldest frames beyond the window.

The optional cached-token bias (``kv_cache_attention_bias``, Daydream Scope's) multiplies the
attention weights of the cached frames in the denoising steps, except the window's first frame.

:meth:`CausalWanDiT.forward_reference` (the rolling scheme) and :meth:`CausalWanDiT.forward_masked`
(any frame-level mask) are the non-streamed paths: whole sequences at once; tests check that
streaming equals them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import DiTConfig
from .dit_layers import (
    DiTBlock,
    Head,
    Step,
    TextContext,
    apply_rope,
    rope_angles,
    rope_split,
    sinusoidal_embedding_1d,
)
from .kv_cache import KVCache


class CausalWanDiT(nn.Module):
    """The causal Wan 2.1 DiT; see the module docstring."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        self.patch_embedding = nn.Conv3d(config.in_channels, dim, kernel_size=config.patch_size,
                                         stride=config.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(config.text_dim, dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(config.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.num_layers))
        self.head = Head(config)
        self.attention_backend: str | None = None  # None: resolve per device
        self._rope_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    # ---- inputs
    def prepare_context(self, text: torch.Tensor | TextContext) -> TextContext:
        """Embed UMT5 output ``[B, len, text_dim]`` (zero-padded to text_len, as Wan does) and
        compute every layer's cross-attention K/V once; reuse it for all steps of a block."""
        if isinstance(text, TextContext):
            return text
        cfg = self.config
        param = self.text_embedding[0].weight
        text = text.to(device=param.device, dtype=param.dtype)
        if text.shape[1] < cfg.text_len:
            text = torch.cat([text, text.new_zeros(text.shape[0], cfg.text_len - text.shape[1], text.shape[2])], 1)
        emb = self.text_embedding(text[:, : cfg.text_len])
        return TextContext(emb, [blk.cross_attn.context_kv(emb) for blk in self.blocks])

    def _time(self, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``timesteps [B, F]`` -> (e ``[B, F, dim]``, e0 ``[B, F, 6, dim]``), float32."""
        b, f = timesteps.shape
        dt = self.time_embedding[0].weight.dtype
        e = self.time_embedding(sinusoidal_embedding_1d(self.config.freq_dim, timesteps.flatten()).to(dt))
        e0 = self.time_projection(e).float().view(b, f, 6, self.config.dim)
        return e.float().view(b, f, self.config.dim), e0

    def _patchify(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        x = self.patch_embedding(x.to(self.patch_embedding.weight.dtype))
        _, _, f, h, w = x.shape
        return x.flatten(2).transpose(1, 2), (f, h, w)

    def _unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        f, h, w = grid
        pt, ph, pw = self.config.patch_size
        c = self.config.out_channels
        b = x.shape[0]
        x = x.view(b, f, h, w, pt, ph, pw, c)
        x = torch.einsum("bfhwpqrc->bcfphqwr", x)
        return x.reshape(b, c, f * pt, h * ph, w * pw)

    def _backend(self, device: torch.device) -> str | None:
        return self.attention_backend if device.type == "cuda" else None

    def _run(self, tokens, grid, timesteps, context: TextContext, step: Step):
        e, e0 = self._time(timesteps)
        x = tokens
        for i, blk in enumerate(self.blocks):
            x = blk(x, e0, step, i, context.kv[i])
        return self._unpatchify(self.head(x, e, step.frames), grid)

    def _rope(self, start_frame: int, frames: int, h: int, w: int, device: torch.device):
        """RoPE cos/sin of a block, kept for the few passes (steps + recompute) of that block."""
        key = (start_frame, frames, h, w, str(device))
        cached = self._rope_cache.get(key)
        if cached is None:
            positions = torch.arange(start_frame, start_frame + frames, device=device)
            cached = rope_angles(positions, h, w, self.config.head_dim, self.config.rope_theta)
            if len(self._rope_cache) >= 4:
                self._rope_cache.pop(next(iter(self._rope_cache)))
            self._rope_cache[key] = cached
        return cached

    # ---- streaming
    def new_cache(self, batch: int, latent_height: int, latent_width: int, kv_cache_num_frames: int,
                  frames_per_block: int, device=None, dtype=None) -> KVCache:
        p = self.config.patch_size
        param = self.patch_embedding.weight
        return KVCache(self.config.num_layers, batch, kv_cache_num_frames, frames_per_block,
                       (latent_height // p[1]) * (latent_width // p[2]), self.config.num_heads,
                       self.config.head_dim, device or param.device, dtype or param.dtype)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor | float, context: torch.Tensor | TextContext,
                cache: KVCache, start_frame: int | None = None, commit: bool = False,
                kv_cache_attention_bias: float = 1.0) -> torch.Tensor:
        """Run one block ``x [B, 16, F, h, w]`` at ``timestep`` (scalar, ``[B]`` or ``[B, F]``)
        against the cache; returns the flow prediction. ``start_frame`` (the RoPE position of the
        block's first frame) defaults to the frame after the cache. ``commit=True`` (the rolling
        scheme's t = 0 pass) keeps the block's K/V in the cache.

        ``kv_cache_attention_bias`` (Scope's, for the denoising steps): the cached frames' attention
        weights times this factor, except the first cached frame (the window's anchor)."""
        if start_frame is None:
            start_frame = cache.end_frame
        elif cache.cached_frames and start_frame != cache.end_frame:
            raise ValueError(f"block starts at frame {start_frame} but the cache ends at {cache.end_frame}")
        context = self.prepare_context(context)
        tokens, grid = self._patchify(x)
        f, h, w = grid
        if h * w != cache.tokens_per_frame:
            raise ValueError("the cache was made for another latent size")
        timesteps = self._per_frame(timestep, x.shape[0], f, x.device)
        cos, sin = self._rope(start_frame, f, h, w, x.device)
        step = Step(f, cos, sin, cache=cache, bias=kv_cache_attention_bias, bias_exempt_tokens=h * w,
                     backend=self._backend(x.device))
        if not cache.cached_frames:
            cache.start_frame = start_frame
        out = self._run(tokens, grid, timesteps, context, step)
        if commit:
            cache.commit(f)
        return out

    @torch.no_grad()
    def recompute_cache(self, clean: torch.Tensor, context: torch.Tensor | TextContext, cache: KVCache,
                        frames_per_block: int) -> None:
        """Krea's cache rebuild: the context frames ``clean [B, 16, n, h, w]`` run once at t = 0,
        at RoPE positions 0..n-1, under a block-causal mask (blocks of ``frames_per_block`` from
        frame 0; one block when ``n <= frames_per_block``), with no bias. Their K/V become the
        whole cache; the next block then runs at position ``n``."""
        n = clean.shape[2]
        if n > cache.capacity_frames:
            raise ValueError(f"{n} context frames but the cache holds {cache.capacity_frames}")
        cache.reset()
        context = self.prepare_context(context)
        tokens, grid = self._patchify(clean)
        f, h, w = grid
        if h * w != cache.tokens_per_frame:
            raise ValueError("the cache was made for another latent size")
        cos, sin = self._rope(0, f, h, w, clean.device)
        mask = None
        if n > frames_per_block:
            block = torch.arange(n, device=clean.device) // frames_per_block
            allowed = (block[None, :] <= block[:, None]).repeat_interleave(h * w, 0).repeat_interleave(h * w, 1)
            mask = torch.zeros(allowed.shape, dtype=tokens.dtype, device=clean.device)
            mask.masked_fill_(~allowed, float("-inf"))
        step = Step(f, cos, sin, cache=cache, mask=mask, backend=self._backend(clean.device))
        # The output is not needed (only the K/V the layers write): stop before the head.
        e, e0 = self._time(self._per_frame(0.0, clean.shape[0], f, clean.device))
        x = tokens
        for i, blk in enumerate(self.blocks):
            if i == len(self.blocks) - 1:
                blk.self_attn.write_kv(blk.modulated_input(x, e0, f), step, i)  # its K/V only
                break
            x = blk(x, e0, step, i, context.kv[i])
        cache.commit(f)

    @staticmethod
    def _per_frame(timestep: torch.Tensor | float, batch: int, frames: int, device) -> torch.Tensor:
        timesteps = torch.as_tensor(timestep, dtype=torch.float32, device=device)
        return timesteps.reshape(-1, 1).expand(batch, frames) if timesteps.dim() < 2 else timesteps

    def forward_masked(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | TextContext,
                       positions: torch.Tensor, allowed: torch.Tensor, bias: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """The whole sequence ``x [B, 16, F, h, w]`` at once, no cache: frame ``i`` at timestep
        ``timesteps[:, i]`` and RoPE position ``positions[i]`` attends to frame ``j`` where
        ``allowed[i, j]`` (bool ``[F, F]``), with ``bias[i, j]`` (multiplicative, ``[F, F]``) on
        its weights. Returns the flow prediction for every frame (tests' references)."""
        context = self.prepare_context(context)
        tokens, grid = self._patchify(x)
        f, h, w = grid
        mask = torch.zeros(allowed.shape, dtype=tokens.dtype, device=x.device)
        if bias is not None:
            mask = mask + bias.to(x.device).log().to(tokens.dtype)
        mask = mask.masked_fill(~allowed.to(x.device), float("-inf"))
        mask = mask.repeat_interleave(h * w, 0).repeat_interleave(h * w, 1)
        cos, sin = rope_angles(positions.to(x.device), h, w, self.config.head_dim, self.config.rope_theta)
        step = Step(f, cos, sin, mask=mask, backend=None)
        return self._run(tokens, grid, self._per_frame(timesteps, x.shape[0], f, x.device), context, step)

    # ---- reference (non-streamed) path
    def forward_reference(self, clean: torch.Tensor, context: torch.Tensor | TextContext, *,
                          frames_per_block: int, kv_cache_num_frames: int,
                          noisy: torch.Tensor | None = None, noisy_timesteps: torch.Tensor | None = None,
                          clean_timesteps: torch.Tensor | None = None,
                          kv_cache_attention_bias: float = 1.0, start_frame: int = 0
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The rolling scheme's whole sequence at once, block-causal with the local window.

        ``clean [B, 16, F, h, w]`` is the context sequence (what the recomputation passes
        see, at ``clean_timesteps`` = 0 by default). ``noisy`` (same shape) holds, per block,
        the input of one denoising step at ``noisy_timesteps [B, F]``: its block attends to
        itself and to the clean frames of the window before it, exactly as a streamed step
        attends to the KV cache. Returns (prediction on clean, prediction on noisy)."""
        context = self.prepare_context(context)
        b, _, nf, _, _ = clean.shape
        dev = clean.device
        if clean_timesteps is None:
            clean_timesteps = torch.zeros(b, nf, device=dev)
        frame_idx = torch.arange(nf, device=dev)
        block_start = (frame_idx // frames_per_block) * frames_per_block
        lo = (block_start - kv_cache_num_frames).clamp(min=0)
        hi = torch.clamp(block_start + frames_per_block, max=nf)
        # frame-level masks: rows are query frames, columns key frames
        kf = frame_idx[None, :]
        allowed_cc = (kf >= lo[:, None]) & (kf < hi[:, None])
        log_bias = math.log(kv_cache_attention_bias)
        tokens_c, grid = self._patchify(clean)
        tpf = grid[1] * grid[2]
        if noisy is None:
            allowed, cached = allowed_cc, torch.zeros_like(allowed_cc)  # the t = 0 passes: no bias
            tokens, timesteps, positions = tokens_c, clean_timesteps, frame_idx
        else:
            tokens_n, _ = self._patchify(noisy)
            allowed_nc = (kf >= lo[:, None]) & (kf < block_start[:, None])
            allowed_nn = block_start[:, None] == block_start[None, :]
            no = torch.zeros_like(allowed_cc)
            # the denoising step's bias: the cached window but its first frame
            biased_nc = allowed_nc & (kf > lo[:, None])
            allowed = torch.cat([torch.cat([allowed_cc, no], 1), torch.cat([allowed_nc, allowed_nn], 1)], 0)
            cached = torch.cat([torch.cat([no, no], 1), torch.cat([biased_nc, no], 1)], 0)
            tokens = torch.cat([tokens_c, tokens_n], 1)
            timesteps = torch.cat([clean_timesteps, noisy_timesteps.to(clean_timesteps)], 1)
            positions = torch.cat([frame_idx, frame_idx])
        dtype = tokens.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=dev)
        mask = mask.masked_fill(cached, log_bias).masked_fill(~allowed, float("-inf"))
        mask = mask.repeat_interleave(tpf, 0).repeat_interleave(tpf, 1)
        cos, sin = rope_angles(positions + start_frame, grid[1], grid[2], self.config.head_dim,
                               self.config.rope_theta)
        total_frames = positions.numel()
        step = Step(total_frames, cos, sin, mask=mask, backend=None)
        out = self._run(tokens, (total_frames, grid[1], grid[2]), timesteps, context, step)
        if noisy is None:
            return out, None
        return out[:, :, :nf], out[:, :, nf:]


def build_dit(config: DiTConfig, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
              seed: int | None = 0) -> CausalWanDiT:
    """A DiT with deterministic random weights (``seed``) built directly on ``device`` in
    ``dtype`` (the 14B model is never materialised in float32 first). The global RNG is left
    untouched. ``seed=None``: built on ``meta`` and given uninitialised storage on ``device``
    (fast), for :func:`load_original_state_dict` to fill."""
    if seed is None:
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device("meta"):
                model = CausalWanDiT(config)
        finally:
            torch.set_default_dtype(previous)
        return model.to_empty(device=device).eval().requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                model = CausalWanDiT(config)
        finally:
            torch.set_default_dtype(previous)
    return model.eval().requires_grad_(False)


# The checkpoint mapping lives in dit_weights.py; these names stay importable from here.
from .dit_weights import load_original_state_dict, to_original_state_dict  # noqa: E402

__all__ = [
    "CausalWanDiT", "KVCache", "TextContext", "apply_rope", "build_dit", "load_original_state_dict", "rope_angles",
    "rope_split", "sinusoidal_embedding_1d", "to_original_state_dict",
]
