"""The local Krea realtime pipeline: per-stage time, fps, time to first frame, peak memory.

    .venv/bin/python bench/pipeline.py --device cpu --width 320 --height 192 --blocks 4
    .venv/bin/python bench/pipeline.py --device cuda --width 832 --height 480 --blocks 8

On ``cpu`` it runs the tiny configuration (videogen.pipeline.TINY_CONFIG); on ``cuda`` the full
14B architecture (Wan 2.1 DiT, Wan VAE decoder, UMT5-XXL) in bfloat16, unless ``--tiny``. Both
use deterministic RANDOM weights: the timing is real, the frames are not video. One untimed
warm-up block runs first (a different prompt, so the measured run still encodes its text).
Prints a table, appends it to docs/benchmarks.md (``--no-append`` to skip) and ends with
exactly one line ``fps=<n> ttff_s=<n> peak_mb=<n>``.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build(args):
    import torch

    from videogen.pipeline import KREA_14B_CONFIG, TINY_CONFIG, build_random_pipeline

    device = torch.device(args.device)
    if device.type == "cpu" or args.tiny:
        return build_random_pipeline(TINY_CONFIG, device, torch.float32, args.seed)
    from videogen.pipeline import text_encoder as te
    from videogen.pipeline import vae as vae_mod

    dtype = torch.bfloat16
    return build_random_pipeline(KREA_14B_CONFIG, device, dtype, args.seed, vae_config=vae_mod.WanVAEConfig(),
                                 text_encoder_config=te.TextEncoderConfig(tokenizer="bytes"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: recommended_cpu_threads(), 1 on 2 cores)")
    parser.add_argument("--tiny", action="store_true", help="the tiny config on cuda too")
    parser.add_argument("--no-append", action="store_true", help="do not append to docs/benchmarks.md")
    args = parser.parse_args()

    import torch

    from videogen.pipeline import GenerationParams, recommended_cpu_threads
    from videogen.pipeline.attention import resolve_backend

    threads = args.threads or recommended_cpu_threads()
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    t0 = time.perf_counter()
    session = build(args)
    build_s = time.perf_counter() - t0
    backend = resolve_backend(device)

    warm = GenerationParams(prompt="warm-up", width=args.width, height=args.height, seed=args.seed, num_blocks=1)
    list(session.start(warm))

    params = GenerationParams(prompt="a red fox running through fresh snow, golden hour", width=args.width,
                              height=args.height, seed=args.seed, num_blocks=args.blocks)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    blocks, ttff = [], None
    for block in session.start(params):
        blocks.append(block)
        if ttff is None:
            ttff = time.perf_counter() - start
    wall = time.perf_counter() - start
    frames = sum(b.frames.shape[0] for b in blocks)
    fps = frames / wall
    later = blocks[1:] or blocks
    steady_fps = sum(b.frames.shape[0] for b in later) / (sum(b.timings["total"] for b in later) / 1000)
    peak = peak_mb(device)

    def mean(key):
        return statistics.fmean(b.timings[key] for b in blocks)

    cfg = session.config
    rows = [
        ("config", f"{cfg.name} (dim {cfg.dit.dim}, {cfg.dit.num_layers} layers), RANDOM weights"),
        ("device", f"{device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.machine() or 'cpu'}), "
                   f"{threads} threads, {str(session.dtype).replace('torch.', '')}"),
        ("attention backend", backend),
        ("resolution / blocks", f"{args.width}x{args.height}, {len(blocks)} blocks, {frames} frames"),
        ("text encoder (ms, first block)", f"{blocks[0].timings['text']:.1f}"),
        ("DiT step (ms, mean of 4 per block)", f"{mean('dit_step'):.1f}"),
        ("KV recompute (ms per block)", f"{mean('recompute'):.1f}"),
        ("VAE decode (ms per block)", f"{mean('vae'):.1f}"),
        ("block total (ms, mean)", f"{mean('total'):.1f}"),
        ("fps (all frames / wall)", f"{fps:.2f}"),
        ("fps (steady, after block 0)", f"{steady_fps:.2f}"),
        ("time to first frame (s)", f"{ttff:.3f}"),
        ("peak memory (MB)", f"{peak:.0f} ({'GPU allocated' if device.type == 'cuda' else 'process RSS'})"),
        ("model build (s)", f"{build_s:.1f}"),
    ]
    table = "\n".join(["| measure | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)])
    print(table)
    if not args.no_append:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        cmd = (f"bench/pipeline.py --device {args.device} --width {args.width} --height {args.height} "
               f"--blocks {args.blocks}" + (f" --threads {args.threads}" if args.threads else "")
               + (" --tiny" if args.tiny else ""))
        with open(ROOT / "docs" / "benchmarks.md", "a") as out:
            out.write(f"\n## Local Krea pipeline ({stamp}, {platform.node() or 'host'}, {os.cpu_count()} cores)\n\n"
                      f"`{cmd}`: streaming text-to-video blocks (3 latent frames; 9 pixel frames for the "
                      f"first block, 12 after), 4 denoising steps + KV recompute + VAE decode per block, "
                      f"after one warm-up block.\n\n{table}\n")
    print(f"fps={fps:.2f} ttff_s={ttff:.3f} peak_mb={peak:.0f}")


if __name__ == "__main__":
    main()
