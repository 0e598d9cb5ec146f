"""``manage.py generate_video``: offline generation on the local Krea pipeline, to an MP4.

::

    python manage.py generate_video --prompt "a red fox in fresh snow" --output fox.mp4
    python manage.py generate_video --timeline session.json --output replay.mp4 --steps 4
    python manage.py generate_video --timeline flower.scope-workflow.json -o flower.mp4 \\
        --scope-timeline flower-timeline.json
    python manage.py generate_video --prompt "a city at night" -o city.mp4 \\
        --width 576 --height 320 --blocks 10 --seed 7 --steps 4 --json
    python manage.py generate_video --prompt "a watercolour painting" --input-video walk.mp4 \\
        --strength 0.7 -o painted.mp4

The pipeline is the one a GPU worker holds (``videogen.local.host``, ``STUDIO_PIPELINE``:
the Krea 14B weights on a GPU, or the tiny random-weights configuration, which says so).
``--timeline`` replays a timeline: Daydream Scope's timeline JSON or ``.scope-workflow.json``
(times in seconds, mapped onto blocks at 16 fps), or the block-index timeline a Studio session
records; ``--width/--height/--seed/--steps`` override its settings. Each setting of the file
Studio cannot honour is printed as one ``warning:`` line on stderr (and listed under
``warnings`` with ``--json``). ``--scope-timeline`` / ``--scope-workflow`` also write the
generated video's timeline for Scope to load (docs/realtime.md, "Timelines (Daydream Scope)").
``--input-video`` restyles a video (video to video, as Krea's ``v2v.py``: read at 16 fps, as
many blocks as it has frames unless ``--blocks``/``--num-frames`` ask for fewer) at
``--strength`` (default 0.8; 1 keeps nothing of it). A progress bar goes to stderr;
the file's size, the fps and the latency numbers (per-block p50/p90, time to first frame) to
stdout (``--json``: one JSON object). The MP4 is H.264 at 16 fps and carries the parameters
and the timeline in its ``comment`` tag. Bad input exits with status 1 and one line saying
what to change; Ctrl-C exits with 130 and writes nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from videogen.local import offline
from videogen.pipeline.scope import export_scope_timeline, export_scope_workflow, import_timeline
from videogen.pipeline.timeline import Timeline

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Generate a video offline on the local Krea pipeline (a prompt or a timeline) and write an MP4."

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--prompt", help="the text prompt")
        source.add_argument("--timeline", metavar="FILE",
                            help="a timeline to replay: Daydream Scope's timeline JSON or .scope-workflow.json "
                                 "(seconds), or one a Studio session recorded (blocks)")
        parser.add_argument("--output", "-o", required=True, metavar="OUT.mp4", help="the MP4 to write")
        parser.add_argument("--scope-timeline", metavar="OUT.json", dest="scope_timeline",
                            help="also write the video's timeline as Daydream Scope's timeline JSON (seconds)")
        parser.add_argument("--scope-workflow", metavar="OUT.json", dest="scope_workflow",
                            help="also write the video's timeline as a Scope .scope-workflow.json")
        parser.add_argument("--width", type=int, help="pixels, a multiple of 16 (default: the pipeline's or "
                                                      "the timeline's, 832 for Krea)")
        parser.add_argument("--height", type=int, help="pixels, a multiple of 16 (default 480 for Krea)")
        length = parser.add_mutually_exclusive_group()
        length.add_argument("--blocks", type=int,
                            help=f"blocks of 12 frames (6 for the first; default {offline.DEFAULT_BLOCKS}, "
                                 "or the timeline's length)")
        length.add_argument("--num-frames", type=int, dest="num_frames",
                            help="an exact number of frames instead of --blocks")
        parser.add_argument("--input-video", metavar="FILE", dest="input_video",
                            help="a video to restyle (video to video; any format PyAV reads, taken at 16 fps)")
        parser.add_argument("--strength", type=float,
                            help="with --input-video: how far from it the video may go, 0-1 (default 0.8; "
                                 "1 keeps nothing of it)")
        parser.add_argument("--seed", type=int, help="noise seed (default 0, or the timeline's)")
        parser.add_argument("--steps", type=int,
                            help=f"denoising steps per block, 1-{offline.MAX_STEPS}, evenly spaced from 1000 "
                                 "(default 4: 1000, 750, 500, 250)")
        parser.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    def handle(self, *args, **options):
        output = Path(options["output"])
        if output.is_dir():
            raise CommandError(f"--output {output} is a directory: name the MP4 file to write")
        if not output.parent.is_dir():
            raise CommandError(f"--output {output}: the directory {output.parent} does not exist")
        exports = {flag: Path(options[flag]) for flag in ("scope_timeline", "scope_workflow") if options[flag]}
        for flag, path in exports.items():
            if path.is_dir() or not path.parent.is_dir():
                raise CommandError(f"--{flag.replace('_', '-')} {path}: name a file in a directory that exists")
        input_video = options["input_video"]
        if input_video is not None and not Path(input_video).is_file():
            raise CommandError(f"--input-video {input_video}: no such file")
        if options["strength"] is not None and input_video is None:
            raise CommandError("--strength goes with --input-video")
        source = self._read(options["timeline"])
        timeline, self.warnings = self._import(options["timeline"], source)  # bad files fail before the load
        for warning in self.warnings:
            self.stderr.write(f"warning: {warning}")
        request = offline.OfflineRequest(
            prompt=options["prompt"], timeline=timeline, width=options["width"],
            height=options["height"], blocks=options["blocks"], num_frames=options["num_frames"],
            seed=options["seed"], steps=options["steps"], input_video=input_video, strength=options["strength"])
        if request.width is not None and request.height is not None:
            try:  # fail before the (slow) pipeline load
                offline.check_size(request.width, request.height)
            except offline.OfflineError as exc:
                raise CommandError(str(exc)) from None
        loaded = self._pipeline()
        if source is not None:  # seconds onto this pipeline's blocks (its first block's frames)
            request.timeline, _ = self._import(options["timeline"], source,
                                               offline.frames_per_block(loaded.session.config))
        try:
            plan = offline.plan(request, loaded.session.config)
        except offline.OfflineError as exc:
            raise CommandError(str(exc)) from None
        self.tty = bool(getattr(self.stderr, "isatty", lambda: False)()) and not options["no_progress"]
        self.show_progress = not options["no_progress"]
        self.started = time.perf_counter()
        self.frames = 0
        self.block_sizes: list[int] = []
        try:
            result = offline.generate(loaded.session, plan, on_block=self._progress,
                                      metadata={"generator": "manage.py generate_video",
                                                "pipeline": loaded.name, "random_weights": loaded.random_weights})
        except KeyboardInterrupt:
            raise CommandError("interrupted: nothing was written", returncode=130) from None
        if self.tty:
            self.stderr.write("")
        output.write_bytes(result.content)
        self._export(exports, loaded.session, plan, output)
        self._report(output, plan, result, loaded, options["json"])

    # ---- input
    def _read(self, path: str | None) -> dict | None:
        """The ``--timeline`` file's JSON object (None without one)."""
        if path is None:
            return None
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise CommandError(f"--timeline {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"--timeline {path}: cannot read it ({exc})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--timeline {path} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise CommandError(f"--timeline {path} must hold a JSON object (Daydream Scope's timeline format)")
        return data

    def _import(self, path: str | None, data: dict | None,
                block_frames: tuple[int, int] | None = None) -> tuple[Timeline | None, list[str]]:
        """The file's timeline, in whichever form it comes, and what Studio cannot honour of it."""
        if data is None:
            return None, []
        try:
            return import_timeline(data, block_frames=block_frames)
        except (KeyError, TypeError, ValueError) as exc:
            raise CommandError(f"--timeline {path} is not a timeline Studio can read: {exc}") from None

    def _pipeline(self):
        from videogen.local.host import PipelineUnavailable, host

        if host.loaded is None:
            self.stderr.write(f"loading the local pipeline (STUDIO_PIPELINE={settings.STUDIO_PIPELINE}, "
                              f"device {settings.STUDIO_PIPELINE_DEVICE}) ...")
        try:
            loaded = host.get()
        except PipelineUnavailable as exc:
            raise CommandError(f"the local pipeline cannot run here: {exc}") from None
        except FileNotFoundError as exc:
            raise CommandError(f"the local pipeline's weights are incomplete: {exc} "
                               "(python manage.py download_models --check)") from None
        if loaded.random_weights:
            self.stderr.write(f"{loaded.name} has RANDOM weights: the frames are patterns, not video "
                              "(STUDIO_PIPELINE=full with the Krea weights for real video)")
        return loaded

    # ---- output
    def _export(self, exports: dict[str, Path], session, plan, output: Path) -> None:
        """Write what was generated for Scope: the session's own record of it, with the settings
        it ran with and the frames its blocks made (so the seconds are the MP4's)."""
        if not exports:
            return
        ran = Timeline.from_dict(session.timeline.to_dict())
        ran.params = {**plan.timeline.params, **ran.params}
        ran.params.setdefault("kv_cache_attention_bias", session.kv_bias)
        first, later = offline.frames_per_block(session.config)
        ran.block_frames = (self.block_sizes[0] if self.block_sizes else first,
                            max(self.block_sizes[1:], default=later))
        if "scope_timeline" in exports:
            exports["scope_timeline"].write_text(json.dumps(export_scope_timeline(ran), indent=2))
        if "scope_workflow" in exports:
            workflow = export_scope_workflow(ran, name=output.stem)
            exports["scope_workflow"].write_text(json.dumps(workflow, indent=2))

    def _progress(self, done: int, total: int, block) -> None:
        self.frames += len(block.frames)
        self.block_sizes.append(len(block.frames))
        if not self.show_progress:
            return
        elapsed = time.perf_counter() - self.started
        filled = round(BAR_WIDTH * done / total)
        eta = elapsed / done * (total - done)
        line = (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} blocks  {self.frames} frames  "
                f"{self.frames / elapsed:.1f} fps  {elapsed:.1f} s" + (f"  ETA {eta:.0f} s" if done < total else ""))
        if self.tty:
            self.stderr.write("\r" + line, ending="")
            self.stderr.flush()
        else:
            self.stderr.write(line)

    def _report(self, output: Path, plan, result, loaded, as_json: bool) -> None:
        stats = result.stats()
        if as_json:
            self.stdout.write(json.dumps({"output": str(output), "size": len(result.content), **plan.parameters(),
                                          "pipeline": loaded.describe(), **stats, "warnings": self.warnings}))
            return
        steps = len(plan.denoising_steps)
        self.stdout.write(
            f"wrote {output}: {plan.width}x{plan.height}, {result.frames} frames ({result.blocks} blocks), "
            f"{result.frames / plan.fps:.2f} s at {plan.fps} fps, {len(result.content) / 1e6:.2f} MB")
        self.stdout.write(
            f"pipeline: {loaded.name} on {loaded.device} ({loaded.attention} attention, {loaded.dtype})"
            + (", RANDOM weights" if loaded.random_weights else "") + f", loaded in {loaded.load_s:.1f} s")
        self.stdout.write(f"fps: {stats['fps']:.2f} ({result.frames} frames in {stats['wall_s']:.2f} s, "
                          f"encoding included)")
        self.stdout.write(f"time to first frame: {stats['ttff_s']:.3f} s")
        self.stdout.write(
            f"per block (ms): p50 {stats['block_ms_p50']:.1f}, p90 {stats['block_ms_p90']:.1f}, "
            f"max {stats['block_ms_max']:.1f}; mean stages: text {stats['text_ms']:.1f}, "
            f"DiT step {stats['dit_step_ms']:.1f} x {steps}, KV recompute {stats['recompute_ms']:.1f}, "
            f"VAE {stats['vae_ms']:.1f}; MP4 encoding {stats['encode_ms']:.1f} in all")
