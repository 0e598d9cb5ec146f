"""``manage.py bulk_generate``: many image-to-video jobs from a prompts file and a folder of images.

The i2v service's bulk tool as a Studio command. Every job is a durable ``Job`` made through
``videogen.jobs.create``, exactly as ``POST /api/jobs/`` makes one, so it lands in the owner's
gallery and survives this command being stopped.

1. Read the prompts (see ``parse_prompts``) and the images (jpg, jpeg, png, webp in the
   folder, sorted by name); pair them: every image with every prompt, or with
   ``--one-to-one`` image *i* with prompt *i*.
2. Validate every job's input with ``model.clean`` and print the plan with its estimated
   cost (``model.price_of``). Nothing is created if any job is invalid. ``--dry-run`` stops
   here.
3. Ask ``Proceed? [y/N]`` (``--yes`` skips it; without a terminal on stdin the command
   refuses rather than waits).
4. Enqueue the jobs. The per-user cap ``STUDIO_MAX_UNFINISHED_GENERATIONS`` applies: when it
   is reached (the 429 ``Throttled``) the command does not fail and does not raise the cap;
   it waits, and creates the rest as earlier jobs finish.
5. Show a progress bar read from the ``Job`` rows until every job has finished, then a
   summary; the exit status is non-zero when any job failed or was cancelled. Ctrl-C stops
   waiting (and creating): the jobs already created keep going.
"""

from __future__ import annotations

import io
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from PIL import Image, UnidentifiedImageError
from rest_framework.exceptions import Throttled

from model_control import backends
from model_control.backends import catalog
from model_control.catalog import IMAGE_TO_VIDEO, VideoModel
from model_control.errors import ProviderNotConfigured
from model_control.inputs import CatalogError, ImageInput
from videogen.jobs import create
from videogen.jobs.inputs import store_values
from videogen.models import FINISHED, Job, JobStatus

IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
DEFAULT_MODEL = "wan"
POLL_S = 1.0  # how often the progress bar re-reads the jobs (tests lower it)
BAR_WIDTH = 30
PLAN_ROWS = 50  # rows of the plan shown before asking (all of them with --dry-run or -v 2)
PROMPT_SHOWN = 60


def parse_prompts(text: str) -> list[str]:
    """The prompts in a prompts file (the i2v service's format).

    * A line that is exactly ``---`` (surrounding spaces allowed) or one or more blank lines
      end a prompt; both may be used in the same file.
    * A line whose first non-space character is ``#`` is a comment: dropped, and it does not
      end a prompt.
    * A prompt spread over several lines is joined with single spaces; surrounding
      whitespace is stripped and empty entries are ignored.
    """
    prompts: list[str] = []
    current: list[str] = []

    def end() -> None:
        joined = " ".join(current).strip()
        if joined:
            prompts.append(joined)
        current.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if not stripped or stripped == "---":
            end()
        else:
            current.append(stripped)
    end()
    return prompts


def image_files(folder: Path) -> list[Path]:
    """Every image (jpg, jpeg, png, webp; any case) directly in ``folder``, sorted by name."""
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_TYPES),
                  key=lambda p: p.name)


def i2v_models() -> list[VideoModel]:
    return [m for m in catalog().all() if m.kind == IMAGE_TO_VIDEO]


def resolve_model(name: str) -> VideoModel:
    """A catalog id or an alias (``VideoModel.aliases``) of an image-to-video model."""
    model = catalog().get(name)
    choices = ", ".join([*(a for m in i2v_models() for a in m.aliases), *(m.id for m in i2v_models())])
    if model is None:
        raise CommandError(f"Unknown model {name!r}. Image-to-video models: {choices} "
                           "(--list-models shows them with prices).")
    if model.kind != IMAGE_TO_VIDEO:
        raise CommandError(f"{model.id} is a {model.kind} model; bulk_generate needs an image-to-video "
                           f"model: {choices}.")
    return model


def money(value: Decimal | None) -> str:
    return "no price" if value is None else f"${value:.2f}"


@dataclass
class Entry:
    """One job of the plan."""

    number: int
    image: Path
    prompt: str
    values: dict[str, Any]
    cost: Decimal | None
    basis: str
    stored: dict[str, Any] | None = None
    job_id: Any = None


class Command(BaseCommand):
    help = ("Make image-to-video jobs for every image in a folder and every prompt in a file (or "
            "image i with prompt i), after showing the plan and its estimated cost.")
    stealth_options = ("stdin",)

    def add_arguments(self, parser) -> None:
        parser.add_argument("prompts", nargs="?", help="the prompts file: prompts separated by a '---' line or "
                                                       "blank lines; '#' lines are comments")
        parser.add_argument("--images-dir", help="a folder of images (jpg, jpeg, png, webp), used in name order")
        parser.add_argument("--model", default=DEFAULT_MODEL,
                            help=f"an image-to-video model id or alias ({', '.join(a for m in i2v_models() for a in m.aliases)}); "
                                 f"default {DEFAULT_MODEL}")
        parser.add_argument("--one-to-one", action="store_true",
                            help="pair image i with prompt i (the counts must match) instead of every "
                                 "image with every prompt")
        parser.add_argument("--resolution", help="e.g. 480p, 720p (what the model accepts)")
        parser.add_argument("--duration", help="seconds, e.g. 5 (what the model accepts)")
        parser.add_argument("--user", help="the owner of the jobs (username); default: the first superuser")
        parser.add_argument("--dry-run", action="store_true", help="print the plan and its cost, create nothing")
        parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
        parser.add_argument("--list-models", action="store_true",
                            help="list the image-to-video models with their prices and exit")

    # -- the plan ---------------------------------------------------------------------------

    def handle(self, *args, **options) -> None:
        self.stdin = options.get("stdin") or sys.stdin
        if options["list_models"]:
            self.list_models()
            return
        if not options["prompts"] or not options["images_dir"]:
            raise CommandError("Give a prompts file and --images-dir (or --list-models).")
        model = resolve_model(options["model"])
        prompts = self.read_prompts(Path(options["prompts"]))
        images = self.read_images(Path(options["images_dir"]))
        if options["one_to_one"]:
            if len(images) != len(prompts):
                raise CommandError(f"--one-to-one pairs image i with prompt i, but there are {len(images)} "
                                   f"images and {len(prompts)} prompts: make the counts match, or drop "
                                   "--one-to-one for every combination.")
            pairs = list(zip(images, prompts, strict=True))
            pairing = f"one to one: {len(pairs)} images with {len(prompts)} prompts"
        else:
            pairs = [(image, prompt) for image in images for prompt in prompts]
            pairing = f"all combinations: {len(images)} images x {len(prompts)} prompts"
        extra = {k: options[k] for k in ("resolution", "duration") if options[k] not in (None, "")}
        entries = self.validate(model, pairs, images, extra)
        user = self.owner(options["user"], required=not options["dry_run"])
        self.print_plan(model, entries, user, pairing, extra, everything=options["dry_run"]
                        or options["verbosity"] >= 2)
        if options["dry_run"]:
            self.stdout.write("Dry run: no jobs were created.")
            return
        try:
            backends.require_configured(model)
        except ProviderNotConfigured as exc:
            raise CommandError(str(exc)) from None
        if settings.STUDIO_MAX_UNFINISHED_GENERATIONS < 1:
            raise CommandError("STUDIO_MAX_UNFINISHED_GENERATIONS is below 1: no job can be created.")
        if not options["yes"]:
            self.confirm()
        self.run(model, entries, user)

    def list_models(self) -> None:
        self.stdout.write("Image-to-video models (price with the model's defaults; USD, estimates):")
        for model in i2v_models():
            price = model.price_of({})
            cost = price["estimated_cost"]
            reason = backends.missing(model)
            names = f" (alias: {', '.join(model.aliases)})" if model.aliases else ""
            priced = f"${cost} per job ({price['basis']})" if cost is not None else "no published price"
            self.stdout.write(f"  {model.id}{names}\n"
                              f"      {model.title}\n"
                              f"      price: {priced}\n"
                              f"      configured: {'yes' if reason is None else 'no (' + reason + ')'}")

    def read_prompts(self, path: Path) -> list[str]:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot read the prompts file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise CommandError(f"The prompts file {path} is not UTF-8 text.") from None
        prompts = parse_prompts(text)
        if not prompts:
            raise CommandError(f"No prompts in {path}: separate prompts with a '---' line or a blank line.")
        return prompts

    def read_images(self, folder: Path) -> list[Path]:
        if not folder.is_dir():
            raise CommandError(f"--images-dir {folder} is not a folder.")
        images = image_files(folder)
        if not images:
            raise CommandError(f"No images in {folder} (looked for {', '.join(sorted(IMAGE_TYPES))}).")
        return images

    def validate(self, model: VideoModel, pairs: list[tuple[Path, str]], images: list[Path],
                 extra: dict[str, Any]) -> list[Entry]:
        """Every job's cleaned values, or a ``CommandError`` listing what is wrong (nothing spent)."""
        problems: list[str] = []
        uploads: dict[Path, ImageInput] = {}
        for image in images:
            data = image.read_bytes()
            try:
                with Image.open(io.BytesIO(data)) as opened:
                    opened.verify()
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                problems.append(f"{image.name}: not a readable image ({exc})")
                continue
            uploads[image] = ImageInput(data=data, content_type=IMAGE_TYPES[image.suffix.lower()],
                                        file_name=image.name)
        entries: list[Entry] = []
        seen: dict[str, str] = {}
        for number, (image, prompt) in enumerate(pairs, start=1):
            if image not in uploads:
                continue
            try:
                values = model.clean({"prompt": prompt, "image": uploads[image], **extra})
            except CatalogError as exc:
                message = "; ".join(f"{name}: {text}" for name, text in exc.errors.items())
                if message not in seen:  # the same bad --duration would repeat for every job
                    seen[message] = f"job {number} ({image.name}, {short(prompt)!r})"
                    problems.append(f"{seen[message]}: {message}")
                continue
            price = model.price_of(values)
            cost = price["estimated_cost"]
            entries.append(Entry(number, image, prompt, values, Decimal(cost) if cost is not None else None,
                                 price["basis"]))
        if problems:
            raise CommandError("Nothing was created; fix these first:\n  " + "\n  ".join(problems))
        return entries

    def owner(self, username: str | None, *, required: bool):
        users = get_user_model().objects
        if username:
            user = users.filter(**{users.model.USERNAME_FIELD: username}).first()
            if user is None:
                raise CommandError(f"No user {username!r}.")
            return user
        user = users.filter(is_superuser=True, is_active=True).order_by("pk").first()
        if user is None and required:
            raise CommandError("There is no superuser to own the jobs: pass --user NAME "
                               "(or python manage.py createsuperuser).")
        return user

    def print_plan(self, model: VideoModel, entries: list[Entry], user, pairing: str, extra: dict[str, Any],
                   *, everything: bool) -> None:
        write = self.stdout.write
        reason = backends.missing(model)
        write("Bulk generation plan")
        write(f"  model:    {model.id} ({model.title})" + ("" if reason is None else
                                                           f"  NOT CONFIGURED: {reason}"))
        write(f"  user:     {user.get_username() if user is not None else '(none: pass --user)'}")
        write(f"  pairing:  {pairing}")
        write(f"  settings: {' '.join(f'{k}={v}' for k, v in extra.items()) or 'the model defaults'}")
        write(f"  jobs:     {len(entries)}")
        write("")
        width = max(len("image"), *(len(e.image.name) for e in entries))
        write(f"  {'#':>4}  {'image':<{width}}  {'est. cost':>9}  prompt")
        shown = entries if everything else entries[:PLAN_ROWS]
        for entry in shown:
            write(f"  {entry.number:>4}  {entry.image.name:<{width}}  {money(entry.cost):>9}  {short(entry.prompt)}")
        if len(shown) < len(entries):
            write(f"  ... and {len(entries) - len(shown)} more (--dry-run lists them all)")
        write("")
        priced = [e.cost for e in entries if e.cost is not None]
        bases = sorted({e.basis for e in entries})
        if not priced:
            write(f"Estimated cost: unknown: {model.id} has no published price.")
        else:
            total = sum(priced, Decimal(0))
            per_job = {e.cost for e in entries if e.cost is not None}
            each = money(per_job.pop()) + " per job" if len(per_job) == 1 else "varies per job"
            unpriced = len(entries) - len(priced)
            write(f"Estimated cost: {each} ({'; '.join(bases)}), {money(total)} in total for {len(entries)} "
                  f"jobs (USD, an estimate{f'; {unpriced} jobs have no price' if unpriced else ''}).")

    def confirm(self) -> None:
        isatty = getattr(self.stdin, "isatty", None)
        if not (callable(isatty) and isatty()):
            raise CommandError("Not confirmed: stdin is not a terminal, so nobody can answer 'Proceed? "
                               "[y/N]'. Pass --yes to create the jobs (or --dry-run to only see the plan).")
        self.stdout.write("Proceed? [y/N] ", ending="")
        self.stdout.flush()
        try:
            answer = self.stdin.readline()
        except KeyboardInterrupt:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            raise CommandError("Not confirmed: no jobs were created.")

    # -- the run ----------------------------------------------------------------------------

    def run(self, model: VideoModel, entries: list[Entry], user) -> None:
        waiting = list(entries)  # not created yet
        created: list[Entry] = []
        started = time.monotonic()
        capped_once = False
        self.last_line = ""
        self.tty = bool(getattr(self.stdout, "isatty", lambda: False)())
        try:
            while True:
                while waiting:
                    entry = waiting[0]
                    if entry.stored is None:
                        entry.stored = store_values(model, entry.values)
                    try:
                        job = create.create(user, create.JobRequest(model, entry.values), stored_input=entry.stored)
                    except Throttled:
                        if not capped_once:
                            capped_once = True
                            self.note(f"{user.get_username()} has {settings.STUDIO_MAX_UNFINISHED_GENERATIONS} "
                                      "unfinished jobs, the most STUDIO_MAX_UNFINISHED_GENERATIONS allows: "
                                      "the rest are created as jobs finish.")
                        break
                    entry.job_id = job.pk
                    created.append(waiting.pop(0))
                counts = self.counts(created)
                self.bar(counts, len(entries), len(waiting), started)
                if not waiting and counts["finished"] == len(created):
                    break
                pause(POLL_S)
        except KeyboardInterrupt:
            self.stopped(created, waiting)
        self.end_bar()
        self.summary(created, started)

    def counts(self, created: list[Entry]) -> dict[str, int]:
        counts = {"completed": 0, "failed": 0, "running": 0, "queued": 0, "finished": 0}
        ids = [e.job_id for e in created]
        for status in Job.objects.filter(pk__in=ids).values_list("status", flat=True):
            if status == JobStatus.COMPLETED:
                counts["completed"] += 1
            elif status in (JobStatus.FAILED, JobStatus.CANCELLED):
                counts["failed"] += 1
            elif status == JobStatus.RUNNING:
                counts["running"] += 1
            else:
                counts["queued"] += 1
            counts["finished"] += status in FINISHED
        counts["finished"] += len(ids) - sum(counts[k] for k in ("completed", "failed", "running", "queued"))
        return counts  # a job deleted meanwhile counts as finished

    def bar(self, counts: dict[str, int], total: int, waiting: int, started: float) -> None:
        done = counts["completed"] + counts["failed"]
        filled = round(BAR_WIDTH * done / total) if total else BAR_WIDTH
        elapsed = int(time.monotonic() - started)
        line = (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} finished: "
                f"{counts['completed']} done, {counts['failed']} failed, {counts['running']} running, "
                f"{counts['queued']} queued" + (f", {waiting} waiting for the cap" if waiting else ""))
        stamp = f"  {elapsed // 60}:{elapsed % 60:02d}"
        if self.tty:
            self.stdout.write("\r" + line + stamp + " " * max(len(self.last_line) - len(line), 0), ending="")
            self.stdout.flush()
        elif line != self.last_line:  # a log or a pipe: one line per change
            self.stdout.write(line + stamp)
        self.last_line = line

    def end_bar(self) -> None:
        if self.tty and self.last_line:
            self.stdout.write("")

    def note(self, text: str) -> None:
        self.end_bar()
        self.last_line = ""
        self.stdout.write(text)

    def stopped(self, created: list[Entry], waiting: list[Entry]) -> None:
        unfinished = Job.objects.filter(pk__in=[e.job_id for e in created]).exclude(status__in=FINISHED).count()
        self.note("Stopped waiting (Ctrl-C).")
        if settings.STUDIO_EMBEDDED:
            where = ("In the embedded mode they ran on this command's threads: the studio (python manage.py "
                     "runstudio) picks the unfinished ones up when it next starts.")
        else:
            where = "They keep running on the Celery workers."
        self.stdout.write(f"{unfinished} jobs are unfinished and were left as they are (jobs are durable). {where} "
                          "Follow them at GET /api/jobs/ or on the gallery page (/gallery/).")
        if waiting:
            self.stdout.write(f"{len(waiting)} planned jobs were not created.")
        raise CommandError("Stopped before every job finished.", returncode=130)

    def summary(self, created: list[Entry], started: float) -> None:
        jobs = {job.pk: job for job in Job.objects.filter(pk__in=[e.job_id for e in created])
                .select_related("video")}
        completed = [e for e in created if getattr(jobs.get(e.job_id), "status", None) == JobStatus.COMPLETED]
        done = {e.job_id for e in completed}
        failed = [e for e in created if e.job_id not in done]
        elapsed = int(time.monotonic() - started)
        self.stdout.write(f"Finished in {elapsed // 60}:{elapsed % 60:02d}: {len(completed)} completed, "
                          f"{len(failed)} failed, of {len(created)} jobs.")
        for entry in completed:
            video = getattr(jobs[entry.job_id], "video", None)
            self.stdout.write(f"  ok     #{entry.number} {entry.image.name} {short(entry.prompt)!r} -> "
                              f"{video.file.name if video is not None else '(no video)'}")
        for entry in failed:
            job = jobs.get(entry.job_id)
            reason = "the job was deleted" if job is None else (
                "cancelled" if job.status == JobStatus.CANCELLED else
                f"{job.error_type or 'error'}: {job.error_message or 'no message'}")
            self.stdout.write(f"  FAILED #{entry.number} {entry.image.name} {short(entry.prompt)!r} "
                              f"(job {entry.job_id}): {reason}")
        if completed:
            self.stdout.write("The videos are in the owner's gallery: GET /api/videos/ or the gallery page "
                              f"(/gallery/); files under {settings.MEDIA_ROOT}.")
        if failed:
            raise CommandError(f"{len(failed)} of {len(created)} jobs failed (see above); retry one with "
                               "POST /api/jobs/<id>/retry.")


def pause(seconds: float) -> None:
    """Between two looks at the jobs (a test replaces it to press Ctrl-C)."""
    time.sleep(seconds)


def short(prompt: str) -> str:
    return prompt if len(prompt) <= PROMPT_SHOWN else prompt[:PROMPT_SHOWN - 3] + "..."
