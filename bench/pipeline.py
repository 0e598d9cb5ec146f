"""The local Krea realtime pipeline: per-stage time, fps, time to first frame, peak memory.

On a GPU, one command measures the full 14B architecture (Wan 2.1 DiT, Wan VAE decoder,
UMT5-XXL; random weights, bfloat16) at 832x480 and 576x320, 4 denoising steps, eager and
with the DiT blocks under torch.compile::

    .venv/bin/python bench/pipeline.py --device cuda

    .venv/bin/python bench/pipeline.py --device cuda --variants eager,compile,cuda-graphs --blocks 8
    .venv/bin/python bench/pipeline.py --device cpu            # the tiny configuration at 320x192
    .venv/bin/python bench/pipeline.py --device cpu --sizes 320x192,160x96 --blocks 4

``--device cpu`` (or ``--tiny``) runs the tiny configuration (videogen.pipeline.TINY_CONFIG)
with its TAEHV-shaped decoder (``--decoder wan``: the tiny Wan decoder; on a GPU ``--decoder
taehv`` measures TAEHV's real shape, Krea's ``use_taehv``). The stream is Krea's
(``cache_mode="krea"``: the cache rebuilt before each block, the anchor re-encoded from block 2,
the first block's first 3 frames dropped); ``--cache-mode rolling`` measures Self-Forcing's.
Weights are deterministic RANDOM ones: the timing is real, the frames are not video. For each
variant and size, untimed warm-up blocks run first (one; two under torch.compile, so both
shapes of the KV cache, empty and full, are compiled) with another prompt, so the measured
run still encodes its text. Variants:

- ``eager``: plain PyTorch;
- ``compile``: ``torch.compile`` of every DiT block (inductor, ``dynamic=False``; the 40
  blocks share their graphs); compilation time shows in the warm-up row;
- ``cuda-graphs``: the same with ``mode="reduce-overhead"`` (inductor's CUDA graphs, which
  remove the kernel-launch cost); the table says whether inductor used or skipped them.

Prints one table (a column per size and variant), appends it to docs/benchmarks.md
(``--no-append`` to skip) and ends with one line per column:
``size=<WxH> variant=<v> fps=<n> ttff_s=<n> peak_mb=<n>``.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ("eager", "compile", "cuda-graphs")
COMPILE_MODES = {"compile": "default", "cuda-graphs": "reduce-overhead"}


def parse_sizes(text: str) -> list[tuple[int, int]]:
    from videogen.pipeline.config import check_size

    sizes = []
    for part in text.split(","):
        try:
            width, height = (int(v) for v in part.strip().lower().split("x"))
        except ValueError:
            raise SystemExit(f"--sizes: {part!r} is not WIDTHxHEIGHT (e.g. 832x480)") from None
        try:
            check_size(width, height)
        except ValueError as exc:
            raise SystemExit(f"--sizes: {exc} (the VAE's 8 x the DiT's patch of 2), e.g. 832x480 or 576x320") from None
        sizes.append((width, height))
    return sizes


def peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(args, device):
    import torch

    from videogen.pipeline import KREA_14B_CONFIG, TINY_CONFIG, build_random_pipeline

    if device.type == "cpu" or args.tiny:
        return build_random_pipeline(TINY_CONFIG, device, torch.float32, args.seed, decoder=args.decoder or "taehv")
    from videogen.pipeline import taehv
    from videogen.pipeline import text_encoder as te
    from videogen.pipeline import vae as vae_mod

    encoder = (te.TextEncoderConfig(tokenizer="bytes") if args.text_encoder == "umt5-xxl"
               else te.tiny_text_encoder_config(text_len=KREA_14B_CONFIG.dit.text_len))
    # Built on the GPU directly: UMT5-XXL's 5.7 B parameters are not initialised on the CPU first.
    with torch.device(device):
        return build_random_pipeline(KREA_14B_CONFIG, device, torch.bfloat16, args.seed,
                                     vae_config=vae_mod.WanVAEConfig(), text_encoder_config=encoder,
                                     decoder=args.decoder or "wan", taehv_config=taehv.TAEHVConfig())


def compile_dit(dit, mode: str) -> None:
    """torch.compile every DiT block (in place; the blocks share their compiled graphs)."""
    import torch._dynamo

    torch._dynamo.reset()
    config = torch._dynamo.config
    config.cache_size_limit = max(config.cache_size_limit, 64)
    config.accumulated_cache_size_limit = max(config.accumulated_cache_size_limit, 1024)
    for block in dit.blocks:
        block.compile(mode=mode, dynamic=False)


def inductor_counters() -> dict[str, int]:
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return {}
    return {"cudagraph_skips": int(counters["inductor"].get("cudagraph_skips", 0)),
            "graphs": int(counters["stats"].get("unique_graphs", 0)),
            "graph_breaks": int(sum(counters["graph_break"].values()))}


@dataclass
class Result:
    size: tuple[int, int]
    variant: str
    blocks: list = field(default_factory=list)
    frames: int = 0
    wall_s: float = 0.0
    ttff_s: float = 0.0
    warmup_s: float = 0.0
    peak_mb: float = 0.0
    notes: str = ""

    @property
    def label(self) -> str:
        return f"{self.size[0]}x{self.size[1]} {self.variant}"

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s

    @property
    def steady_fps(self) -> float:
        later = self.blocks[1:] or self.blocks
        return sum(b.frames.shape[0] for b in later) / (sum(b.timings["total"] for b in later) / 1000)

    def mean(self, key: str) -> float:
        return statistics.fmean(b.timings[key] for b in self.blocks)

    def pct(self, q: float) -> float:
        from videogen.local.offline import percentile

        return percentile([b.timings["total"] for b in self.blocks], q)


def measure(session, device, size, variant, args, steps) -> Result:
    import torch

    from videogen.pipeline import GenerationParams

    width, height = size
    warm_blocks = 1 if variant == "eager" else 2  # compiled: the empty and the full KV cache
    before = inductor_counters()
    t0 = time.perf_counter()
    warm = GenerationParams(prompt="warm-up", width=width, height=height, seed=args.seed, num_blocks=warm_blocks,
                            denoising_steps=steps, cache_mode=args.cache_mode)
    list(session.start(warm))
    sync(device)
    result = Result(size, variant, warmup_s=time.perf_counter() - t0)
    if hasattr(session.text_encoder, "clear_cache"):  # every column encodes its prompt once
        session.text_encoder.clear_cache()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    params = GenerationParams(prompt="a red fox running through fresh snow, golden hour", width=width,
                              height=height, seed=args.seed, num_blocks=args.blocks, denoising_steps=steps,
                              cache_mode=args.cache_mode)
    start = time.perf_counter()
    for block in session.start(params):
        result.blocks.append(block)
        if len(result.blocks) == 1:
            result.ttff_s = time.perf_counter() - start
    result.wall_s = time.perf_counter() - start
    result.frames = sum(b.frames.shape[0] for b in result.blocks)
    result.peak_mb = peak_mb(device)
    after = inductor_counters()
    if variant != "eager":
        graphs = after.get("graphs", 0) - before.get("graphs", 0)
        breaks = after.get("graph_breaks", 0) - before.get("graph_breaks", 0)
        result.notes = f"{graphs} graphs compiled, {breaks} graph breaks"
        if variant == "cuda-graphs":
            skips = after.get("cudagraph_skips", 0) - before.get("cudagraph_skips", 0)
            result.notes += (f"; CUDA graphs skipped for {skips} graphs (see TORCH_LOGS=perf_hints)" if skips
                             else "; CUDA graphs used")
    return result


def device_facts(device, session, threads: int) -> list[tuple[str, str]]:
    import torch

    from videogen.pipeline.attention import available_backends, resolve_backend

    cfg = session.config
    dtype = str(session.dtype).replace("torch.", "")
    count = cfg.dit.num_parameters()
    count = f"{count / 1e9:.2f} B" if count >= 1e8 else f"{count / 1e3:.0f} k"
    heads = f"{cfg.dit.num_heads} head{'s' if cfg.dit.num_heads != 1 else ''}"
    rows = [("config", f"{cfg.name} (dim {cfg.dit.dim}, {cfg.dit.num_layers} layers, {heads}, "
                       f"{count} DiT parameters), RANDOM weights"),
            ("stream", f"cache_mode {session.params.cache_mode or cfg.cache_mode}, decoder "
                       f"{type(session.vae).__name__}, bias {cfg.kv_cache_attention_bias}")]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        rows.append(("device", f"{device} ({props.name}, capability {props.major}.{props.minor}, "
                               f"{props.total_memory / 2**30:.0f} GiB), {dtype}, torch {torch.__version__}, "
                               f"CUDA {torch.version.cuda}"))
        rows.append(("attention backend", f"{resolve_backend(device)} (available: "
                                          f"{', '.join(sorted(available_backends()))})"))
        rows.append(("weights in GPU memory (MB)", f"{torch.cuda.memory_allocated(device) / 2**20:.0f}"))
    else:
        rows.append(("device", f"cpu ({platform.machine() or 'cpu'}), {threads} threads, {dtype}, "
                               f"torch {torch.__version__}"))
        rows.append(("attention backend", resolve_backend(device)))
    return rows


def table(results: list[Result], device, steps, cfg) -> str:
    memory = "GPU allocated" if device.type == "cuda" else "process RSS"
    rows = [
        ("blocks / frames", lambda r: f"{len(r.blocks)} / {r.frames}"),
        ("KV cache (MB, window + block)", lambda r: f"{cfg.kv_cache_bytes(*r.size, 2 if device.type == 'cuda' else 4) / 2**20:.0f}"),
        ("text encoder (ms, first block)", lambda r: f"{r.blocks[0].timings['text']:.1f}"),
        (f"DiT step (ms, mean of {len(steps)} per block)", lambda r: f"{r.mean('dit_step'):.1f}"),
        ("KV cache rebuild / recompute (ms per block)", lambda r: f"{r.mean('recompute'):.1f}"),
        ("anchor re-encode (ms per block)", lambda r: f"{r.mean('encode'):.1f}"),
        ("VAE decode + uint8 frames (ms per block)", lambda r: f"{r.mean('vae'):.1f}"),
        ("block total (ms, p50 / p90)", lambda r: f"{r.pct(50):.1f} / {r.pct(90):.1f}"),
        ("fps (all frames / wall)", lambda r: f"{r.fps:.2f}"),
        ("fps (steady, after block 0)", lambda r: f"{r.steady_fps:.2f}"),
        ("time to first frame (s)", lambda r: f"{r.ttff_s:.3f}"),
        (f"peak memory (MB, {memory})", lambda r: f"{r.peak_mb:.0f}"),
        ("warm-up (s, compilation included)", lambda r: f"{r.warmup_s:.1f}"),
    ]
    if any(r.notes for r in results):
        rows.append(("torch.compile", lambda r: r.notes or "-"))
    head = "| measure | " + " | ".join(r.label for r in results) + " |"
    rule = "| --- |" + " --- |" * len(results)
    body = [f"| {name} | " + " | ".join(cell(r) for r in results) + " |" for name, cell in rows]
    return "\n".join([head, rule, *body])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--sizes", help="WIDTHxHEIGHT,... (default 832x480,576x320 on cuda, 320x192 on cpu)")
    parser.add_argument("--width", type=int, help="with --height: one size (same as --sizes WxH)")
    parser.add_argument("--height", type=int)
    parser.add_argument("--blocks", type=int, help="measured blocks per size (default 6 on cuda, 4 on cpu)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per block, 1-8 (default 4)")
    parser.add_argument("--variants", help=f"of {', '.join(VARIANTS)} (default eager,compile on cuda, eager on cpu)")
    parser.add_argument("--text-encoder", choices=("umt5-xxl", "tiny"), default="umt5-xxl",
                        help="on cuda: UMT5-XXL (11 GB) or the tiny encoder (the DiT's numbers do not change)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads on cpu (0: recommended_cpu_threads(), 1 on 2 cores)")
    parser.add_argument("--tiny", action="store_true", help="the tiny config on cuda too")
    parser.add_argument("--decoder", choices=("taehv", "wan"),
                        help="VAE decoder (default: taehv for the tiny config, wan for the 14B)")
    parser.add_argument("--cache-mode", choices=("krea", "rolling"), default="krea",
                        help="Krea's cache rebuilt per block (default) or Self-Forcing's rolling cache")
    parser.add_argument("--no-append", action="store_true", help="do not append to docs/benchmarks.md")
    args = parser.parse_args()

    import torch

    from videogen.local.offline import OfflineError, denoising_steps
    from videogen.pipeline import recommended_cpu_threads

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: this torch ({torch.__version__}) sees no CUDA device")
    on_gpu = device.type == "cuda"
    if args.width or args.height:
        if not (args.width and args.height) or args.sizes:
            raise SystemExit("give --width and --height together, or --sizes, not both")
        args.sizes = f"{args.width}x{args.height}"
    sizes = parse_sizes(args.sizes or ("832x480,576x320" if on_gpu and not args.tiny else "320x192"))
    variants = [v.strip() for v in (args.variants or ("eager,compile" if on_gpu else "eager")).split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if "cuda-graphs" in variants and not on_gpu:
        raise SystemExit("--variants cuda-graphs needs --device cuda")
    args.blocks = args.blocks or (6 if on_gpu else 4)
    if args.blocks < 1:
        raise SystemExit("--blocks must be at least 1")
    try:
        steps = denoising_steps(args.steps)
    except OfflineError as exc:
        raise SystemExit(f"--steps: {exc}") from None

    threads = args.threads or recommended_cpu_threads()
    if not on_gpu:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    session = build(args, device)
    sync(device)
    build_s = time.perf_counter() - t0
    facts = device_facts(device, session, threads)

    results = []
    for variant in variants:
        if variant != "eager":
            compile_dit(session.dit, COMPILE_MODES[variant])
        for size in sizes:
            result = measure(session, device, size, variant, args, steps)
            results.append(result)
            print(f"measured {result.label}: {result.fps:.2f} fps, first frame {result.ttff_s:.3f} s", flush=True)

    timesteps = ", ".join(f"{t:g}" for t in (round(t, 1) for t in session.schedule.timesteps))
    text = "\n".join(f"- {k}: {v}" for k, v in [*facts, ("model build (s)", f"{build_s:.1f}"),
                                                 ("denoising timesteps (model calls per block)", timesteps)])
    grid = table(results, device, steps, session.config)
    print(text)
    print(grid)
    if not args.no_append:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        cmd = " ".join(["bench/pipeline.py", *sys.argv[1:]])
        with open(ROOT / "docs" / "benchmarks.md", "a") as out:
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            out.write(f"\n## Local Krea pipeline ({stamp}, {platform.node() or 'host'}, {os.cpu_count()} cores, "
                      f"load average {load:.2f} at the end)\n\n"
                      f"`{cmd}`: streaming text-to-video blocks (3 latent frames; 6 pixel frames for the first "
                      f"block, 12 after), cache rebuild + {len(steps)} model calls + anchor re-encode + VAE decode "
                      f"per block, after warm-up blocks.\n\n{text}\n\n{grid}\n")
    for r in results:
        print(f"size={r.size[0]}x{r.size[1]} variant={r.variant} fps={r.fps:.2f} ttff_s={r.ttff_s:.3f} "
              f"peak_mb={r.peak_mb:.0f}")


if __name__ == "__main__":
    main()
