"""How the pages show jobs and videos: the gallery's items and filters, settings in the
catalog's words, and what each kind of failure means to the person who asked for it.

Views and templates use this module; it reads rows and never changes them.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet
from django.urls import reverse

from model_control import backends
from model_control.backends import catalog
from model_control.catalog import IMAGE_TO_VIDEO, KIND_TITLES, REALTIME, TEXT_TO_VIDEO, VideoModel
from videogen.models import UNFINISHED, Job, JobStatus, Video


def realtime_models() -> dict[str, str]:
    """Each realtime backend's key (a recording's ``backend``) -> its catalog model id."""
    return {key: stream.model_id for key, stream in backends.stream_backends().items()}

# error_type -> (headline, what to do). The generation page gets the same table (json_script).
ERROR_TEXTS: dict[str, tuple[str, str]] = {
    "timeout": ("The provider took too long",
                "Nothing came back in time. Try again, perhaps shorter or at a lower resolution."),
    "rejected": ("The provider rejected an input",
                 "Change the setting it names and generate again."),
    "unavailable": ("The provider is down or cannot be reached",
                    "This is on the provider's side: try again in a few minutes."),
    "unauthorized": ("The provider refused the studio's key",
                     "An administrator needs to check the provider's key in the studio's settings."),
    "not_configured": ("This model's provider is not configured",
                       "An administrator needs to set its key in the studio's settings."),
    "failed": ("The generation failed at the provider", "Try again; if it keeps failing, change the prompt."),
    "interrupted": ("The studio stopped while sending this job",
                    "It was not sent again, so you are not charged twice: retry it if no video arrived."),
    "download_failed": ("The video could not be downloaded",
                        "The provider made it, but fetching it kept failing."),
    "cancelled": ("The provider cancelled the job", "Generate again when you are ready."),
}
DEFAULT_ERROR = ("The job failed", "Try again.")

STATUS_TEXTS = {
    JobStatus.PENDING: "Queued",
    JobStatus.SUBMITTED: "Waiting at the provider",
    JobStatus.RUNNING: "Generating",
    JobStatus.COMPLETED: "Done",
    JobStatus.FAILED: "Failed",
    JobStatus.CANCELLED: "Cancelled",
}

# How a realtime session ended (RealtimeSession.end_reason) -> the recording's badge and its
# colour (a status whose badge looks the same).
END_TEXTS = {"completed": ("Completed", JobStatus.COMPLETED), "stopped": ("Stopped", JobStatus.CANCELLED),
             "timeout": ("Timed out", JobStatus.FAILED), "error": ("Ended by an error", JobStatus.FAILED)}

PAGE_SIZE = 24
MAX_PAGE = 1_000  # 24,000 items deep; filters narrow a bigger gallery


class BadFilter(ValueError):
    """A gallery filter the page cannot take (the message says which and what is allowed)."""


@dataclass(frozen=True)
class Filters:
    status: str = ""
    model: str = ""
    kind: str = ""

    @classmethod
    def from_query(cls, query) -> Filters:
        status, model, kind = (query.get(name, "").strip() for name in ("status", "model", "kind"))
        if status and status not in JobStatus.values:
            raise BadFilter(f"Unknown status {status!r}: choose one of {', '.join(JobStatus.values)}.")
        if kind and kind not in KIND_TITLES:
            raise BadFilter(f"Unknown kind {kind!r}: choose one of {', '.join(KIND_TITLES)}.")
        if model and catalog().get(model) is None:
            raise BadFilter(f"Unknown model {model!r}: choose one from the list.")
        return cls(status, model, kind)

    @property
    def active(self) -> bool:
        return bool(self.status or self.model or self.kind)


@dataclass
class Item:
    """One entry of the gallery: a job (with its video once done) or a video without a job
    (a realtime recording, or one imported from before jobs)."""

    id: str
    type: str  # job | recording | video
    status: str
    created_at: datetime
    model_id: str = ""
    kind: str = ""
    prompt: str = ""
    job: Job | None = None
    video: Video | None = None
    settings: list[tuple[str, str]] = field(default_factory=list)
    cost: Decimal | None = None
    end_reason: str = ""  # a recording's session: how it ended (END_TEXTS), when known
    end_message: str = ""  # ... and the error, when one ended it
    partial: bool = False  # a recording saved from its parts after its GPU worker died

    @property
    def model_title(self) -> str:
        model = catalog().get(self.model_id) if self.model_id else None
        return model.title if model else (self.model_id or "Imported video")

    @property
    def kind_title(self) -> str:
        return KIND_TITLES.get(self.kind, "")

    @property
    def status_text(self) -> str:
        if self.end_reason in END_TEXTS:
            return END_TEXTS[self.end_reason][0]
        return STATUS_TEXTS.get(self.status, self.status)

    @property
    def badge(self) -> str:
        """The status whose colour the badge takes (a stopped recording is not "completed")."""
        return END_TEXTS[self.end_reason][1] if self.end_reason in END_TEXTS else self.status

    @property
    def unfinished(self) -> bool:
        return self.status in UNFINISHED

    @property
    def queue_text(self) -> str:
        return queue_text(self.job.queue_position if self.job is not None else None)

    @property
    def can_retry(self) -> bool:
        return self.job is not None and self.status in (JobStatus.FAILED, JobStatus.CANCELLED)

    @property
    def can_reuse(self) -> bool:
        if self.type == "recording":
            return True  # the Realtime page takes its settings back (realtime_page.reuse_values)
        return self.job is not None and catalog().get(self.model_id) is not None and self.kind != REALTIME

    @property
    def reuse_url(self) -> str:
        page = "videogen:realtime" if self.type == "recording" else "videogen:generate"
        return f"{reverse(page)}?from={self.id}"

    @property
    def error(self) -> dict[str, Any] | None:
        if self.job is None or self.status != JobStatus.FAILED:
            return None
        return describe_error(self.job)


def queue_text(position: int | None) -> str:
    """Where a submitted job waits at its provider, in words (static/studio/studio.js's
    ``queueText`` says the same on live updates)."""
    if position is None:
        return ""
    if position == 0:
        return "next in line at the provider"
    return f"{position} {'job' if position == 1 else 'jobs'} ahead of it at the provider"


def describe_error(job: Job) -> dict[str, Any]:
    """Headline, the provider's message, advice and per-field messages in the catalog's words."""
    headline, advice = ERROR_TEXTS.get(job.error_type, DEFAULT_ERROR)
    model = catalog().get(job.model_id)
    fields = []
    for detail in job.error_details or []:
        if isinstance(detail, dict) and detail.get("message"):
            fields.append({"label": _field_label(model, str(detail.get("field") or "")),
                           "message": str(detail["message"])})
    return {"type": job.error_type, "headline": headline, "message": job.error_message, "advice": advice,
            "fields": fields}


def _field_label(model: VideoModel | None, name: str) -> str:
    """A provider's field name (``image_url``) or a Studio one (``image``) as the page's label."""
    if model is not None:
        for param in model.params:
            if name in (param.name, param.target) or name in param.target.split(","):
                return param.text.label
    return name.replace("_", " ").capitalize() if name else "Input"


def job_settings(model_id: str, values: dict[str, Any]) -> list[tuple[str, str]]:
    """A job's stored input as (label, value) pairs, prompt left out, in the model's order."""
    model = catalog().get(model_id)
    if model is None:
        return [(name.replace("_", " ").capitalize(), _plain(value)) for name, value in values.items()
                if name != "prompt"]
    pairs = []
    for param in model.params:
        if param.name == "prompt" or param.name not in values:
            continue
        value = values[param.name]
        if param.kind in ("image", "video"):
            shown = _upload_text(value, param.kind)
        elif param.kind == "bool":
            shown = "yes" if value else "no"
        elif param.kind == "choice" and value in param.choices:
            shown = param.choice_label(value)
        elif param.kind == "size" and isinstance(value, list | tuple):
            shown = "x".join(map(str, value))
        else:
            unit = param.text.unit
            shown = f"{_plain(value)} {unit}" if unit else _plain(value)
        pairs.append((param.text.label, shown))
    return pairs


def _upload_text(value: Any, kind: str) -> str:
    if isinstance(value, dict) and "upload" in value:
        return value.get("file_name") or f"uploaded {kind}"
    if isinstance(value, dict):
        return str(value.get("url", ""))
    return str(value)


def recording_settings(parameters: dict[str, Any]) -> list[tuple[str, str]]:
    stream = backends.stream_backend(str(parameters.get("backend") or ""))
    pairs = [("Backend", stream.title if stream else str(parameters.get("backend") or "?"))]
    if parameters.get("width") and parameters.get("height"):
        pairs.append(("Size", f"{parameters['width']}x{parameters['height']}"))
    if parameters.get("seed") is not None:
        pairs.append(("Seed", str(parameters["seed"])))
    if parameters.get("frames"):
        pairs.append(("Frames", f"{parameters['frames']} frames"))
    if parameters.get("num_denoising_steps"):
        pairs.append(("Inference steps", f"{parameters['num_denoising_steps']} steps"))
    timeline = parameters.get("timeline")
    spans = timeline.get("prompts") if isinstance(timeline, dict) else None
    if isinstance(spans, list) and len(spans) > 1:
        pairs.append(("Prompt changes", str(len(spans) - 1)))
    return pairs


def _prompt_text(prompt: Any) -> str:
    """A prompt as text: weighted prompts (``[{"text", "weight"}]``) joined with their weights."""
    if isinstance(prompt, list):
        parts = [f"{p.get('text', '')} ({p.get('weight', 1):g})" if isinstance(p, dict) else str(p) for p in prompt]
        return " | ".join(parts)
    return str(prompt or "")


def _plain(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def job_item(job: Job) -> Item:
    video = getattr(job, "video", None)
    values = job.input if isinstance(job.input, dict) else {}
    prompt = values.get("prompt") if isinstance(values.get("prompt"), str) else ""
    return Item(id=str(job.pk), type="job", status=job.status, created_at=job.created_at, model_id=job.model_id,
                kind=job.kind, prompt=prompt, job=job, video=video, settings=job_settings(job.model_id, values),
                cost=job.actual_cost if job.actual_cost is not None else job.estimated_cost)


def video_item(video: Video) -> Item:
    """A video without a job: a realtime recording, or a file imported from before jobs."""
    parameters = video.parameters if isinstance(video.parameters, dict) else {}
    if parameters.get("kind") == REALTIME:
        model = catalog().get(str(parameters.get("model") or "")) if isinstance(parameters.get("model"), str) else None
        session = getattr(video, "realtime_session", None)  # recordings from before sessions have none
        return Item(id=str(video.pk), type="recording", status=JobStatus.COMPLETED, created_at=video.created_at,
                    model_id=model.id if model else realtime_models().get(parameters.get("backend"), ""), kind=REALTIME,
                    prompt=_prompt_text(parameters.get("prompt")), video=video,
                    settings=recording_settings(parameters), end_reason=getattr(session, "end_reason", "") or "",
                    end_message=getattr(session, "error_message", "") or "", partial=parameters.get("partial") is True)
    request = parameters.get("request") if isinstance(parameters.get("request"), dict) else {}
    model_id = str(parameters.get("model") or "")
    model = catalog().get(model_id)
    return Item(id=str(video.pk), type="video", status=JobStatus.COMPLETED, created_at=video.created_at,
                model_id=model_id, kind=model.kind if model else "", prompt=str(request.get("prompt") or ""),
                video=video, settings=job_settings(model_id, {k: v for k, v in request.items() if k != "image"}))


def _jobs(user, filters: Filters) -> QuerySet[Job]:
    jobs = Job.objects.filter(owner=user).select_related("video")
    if filters.status:
        jobs = jobs.filter(status=filters.status)
    if filters.model:
        jobs = jobs.filter(model_id=filters.model)
    if filters.kind:
        jobs = jobs.filter(kind=filters.kind)
    return jobs.order_by("-created_at")


def _loose_videos(user, filters: Filters) -> QuerySet[Video]:
    videos = Video.objects.filter(owner=user, job__isnull=True).select_related("realtime_session")
    if filters.status and filters.status != JobStatus.COMPLETED:
        return videos.none()
    realtime = Q(parameters__kind=REALTIME)
    # A missing key compares as NULL in SQL, so "not realtime" names that case itself.
    not_realtime = ~realtime | Q(parameters__kind__isnull=True)
    if filters.kind == REALTIME:
        videos = videos.filter(realtime)
    elif filters.kind in (TEXT_TO_VIDEO, IMAGE_TO_VIDEO):
        ids = [m.id for m in catalog().all() if m.kind == filters.kind]
        videos = videos.filter(not_realtime, parameters__model__in=ids)
    if filters.model:
        backend = next((b for b, m in realtime_models().items() if m == filters.model), None)
        if backend:  # a recording names its model, or (older ones) only its backend
            videos = videos.filter(realtime).filter(
                Q(parameters__model=filters.model) | Q(parameters__model__isnull=True, parameters__backend=backend))
        else:
            videos = videos.filter(not_realtime, parameters__model=filters.model)
    return videos.order_by("-created_at")


def gallery_items(user, filters: Filters, page: int) -> tuple[list[Item], bool]:
    """One page of the user's jobs and job-less videos, newest first, and whether more follow."""
    offset = (page - 1) * PAGE_SIZE
    wanted = offset + PAGE_SIZE + 1
    jobs = (job_item(job) for job in _jobs(user, filters)[:wanted])
    videos = (video_item(video) for video in _loose_videos(user, filters)[:wanted])
    merged = list(heapq.merge(jobs, videos, key=lambda item: item.created_at, reverse=True))
    return merged[offset:offset + PAGE_SIZE], len(merged) > offset + PAGE_SIZE


def find_item(user, item_id) -> Item | None:
    """The user's job or job-less video with this id (one card of the gallery), or None."""
    job = Job.objects.filter(owner=user, pk=item_id).select_related("video").first()
    if job is not None:
        return job_item(job)
    video = Video.objects.filter(owner=user, pk=item_id, job__isnull=True).select_related("realtime_session").first()
    return video_item(video) if video is not None else None


def reuse_values(job: Job) -> dict[str, Any]:
    """A job's input as the generation page fills it in: uploads as the URL that serves them."""
    values: dict[str, Any] = {}
    model = catalog().get(job.model_id)
    for name, value in (job.input or {}).items():
        param = model.param(name) if model else None
        if param is None:
            continue
        if param.kind in ("image", "video") and isinstance(value, dict):
            if "upload" in value:
                fallback = "image/png" if param.kind == "image" else "video/mp4"
                values[name] = {"src": f"/api/jobs/{job.pk}/inputs/{name}",
                                "file_name": value.get("file_name") or f"{name}.{fallback.split('/')[1]}",
                                "content_type": value.get("content_type") or fallback}
            elif value.get("url"):
                values[name] = {"url": value["url"]}
        elif param.kind == "size" and isinstance(value, list):
            values[name] = "x".join(map(str, value))
        else:
            values[name] = value
    return values
