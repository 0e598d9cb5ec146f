"""Durable generation jobs, the videos they produce, and the CDN uploads they reuse."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models


class JobStatus(models.TextChoices):
    PENDING = "pending", "pending"
    SUBMITTED = "submitted", "submitted"
    RUNNING = "running", "running"
    COMPLETED = "completed", "completed"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


UNFINISHED = (JobStatus.PENDING, JobStatus.SUBMITTED, JobStatus.RUNNING)
FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)

# The moves a job may make; anything else is a bug (or a duplicate message, which is dropped).
TRANSITIONS: dict[str, set[str]] = {
    JobStatus.PENDING: {JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED},
    JobStatus.SUBMITTED: {JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED},
    JobStatus.RUNNING: {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED},
    JobStatus.COMPLETED: set(),
    JobStatus.FAILED: set(),
    JobStatus.CANCELLED: set(),
}


class Job(models.Model):
    """One generation, from the request to the video on disk. The row is the truth.

    State machine::

        pending -> submitted -> running -> completed (video downloaded, thumbnail, metadata)
           |           |           \\----> failed (error_type + error_message kept)
           \\-----------+-----------------> cancelled (from any unfinished state)

    * ``pending``: accepted, nothing sent to the provider yet.
    * ``submitted``: the provider has it; ``provider_request_id`` was stored in the same
      transaction that made this move, so a paid submit happens at most once: a task that
      finds a request id resumes polling instead of submitting again. (Tenstorrent's
      legacy endpoint has no id: it goes ``pending -> running`` and is not resumable.)
    * ``running``: the provider reports progress.
    * ``completed`` / ``failed`` / ``cancelled``: final; ``retry`` makes a new job.

    Every change goes through ``videogen.jobs.services``; each one increments
    ``status_sequence`` so clients can order the events they receive.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    backend = models.CharField(max_length=32)
    model_id = models.CharField(max_length=200)
    kind = models.CharField(max_length=32)
    input = models.JSONField(default=dict, help_text="the cleaned Studio request (images as URLs or stored uploads)")
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING, db_index=True)
    status_sequence = models.PositiveIntegerField(default=0)
    provider_request_id = models.CharField(max_length=128, blank=True, default="", db_index=True)
    submit_started_at = models.DateTimeField(null=True, blank=True,
                                             help_text="set just before the paid submit call")
    queue_position = models.IntegerField(null=True, blank=True)
    progress = models.FloatField(default=0.0, help_text="0..1")
    logs_tail = models.JSONField(default=list, blank=True)
    estimated_cost = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    actual_cost = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=8, default="USD")
    error_type = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    error_details = models.JSONField(null=True, blank=True, help_text="per-field messages from the provider")
    attempts = models.PositiveIntegerField(default=0, help_text="submit attempts")
    polls = models.PositiveIntegerField(default=0)
    provider_completed_at = models.DateTimeField(null=True, blank=True,
                                                 help_text="when the provider finished; the video may not be here yet")
    download_attempts = models.PositiveIntegerField(default=0)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    webhook_expected = models.BooleanField(default=False,
                                           help_text="the provider was asked to call back when done: polls are sparse")
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")
    preview = models.OneToOneField("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="final",
                                   help_text="the fast, cheap variant run first; replaced when this job completes")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"]), models.Index(fields=["status", "next_poll_at"]),
                   models.Index(fields=["owner", "status"])]

    def __str__(self) -> str:
        return f"{self.model_id} {self.status} ({self.id})"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def can_move_to(self, status: str) -> bool:
        return status in TRANSITIONS[self.status]

    def event(self) -> dict[str, Any]:
        """What the owner's sockets receive about this job (``job.status`` events)."""
        return {"job": str(self.id), "status": self.status, "sequence": self.status_sequence,
                "model": self.model_id, "progress": self.progress, "queue_position": self.queue_position,
                "error_type": self.error_type or None, "error": self.error_message or None}


class Video(models.Model):
    """A finished video in its owner's gallery (a job's output, or an imported file)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="videos")
    job = models.OneToOneField(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="video")
    file = models.FileField(upload_to="videos/", max_length=300)
    thumbnail = models.FileField(upload_to="thumbnails/", max_length=300, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    parameters = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.file.name

    @property
    def name(self) -> str:
        return self.file.name.rsplit("/", 1)[-1]


class UploadCache(models.Model):
    """An image already on the provider's CDN, by content hash: uploaded once, reused."""

    sha256 = models.CharField(max_length=64)
    provider = models.CharField(max_length=32, default="fal")
    url = models.URLField(max_length=1000)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "sha256"], name="upload_cache_unique")]

    def __str__(self) -> str:
        return f"{self.provider} {self.sha256[:12]}"


class SessionStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    STREAMING = "streaming", "streaming"
    COMPLETED = "completed", "completed"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


OPEN_SESSION = (SessionStatus.QUEUED, SessionStatus.STREAMING)


class EndReason(models.TextChoices):
    """How a realtime session ended (empty while it runs)."""

    COMPLETED = "completed", "completed"  # every block asked for was made
    STOPPED = "stopped", "stopped"  # the client said stop, or left
    TIMEOUT = "timeout", "timeout"  # no frame in time, the session's time limit, or no GPU in time
    ERROR = "error", "error"  # the pipeline, the provider or a worker failed


class RecordingState(models.TextChoices):
    """Where a session's recording is: its parts are written to storage while it streams, so
    whoever finishes the session (the producer, its socket, the sweep) can save it."""

    NONE = "", "none"
    WRITING = "writing", "writing"  # parts in storage, the producer still at it
    SAVING = "saving", "saving"  # one finisher claimed it
    SAVED = "saved", "saved"  # a Video (``video``), or nothing to save


class RealtimeSession(models.Model):
    """One realtime stream on ``/ws/realtime/``, from the first parameters to its recording.

    State machine::

        queued -> streaming -> completed (recording saved as a Video)
           |          \\-----> failed (error kept; what streamed is still recorded)
           \\----------------> cancelled / failed (the client left, or no GPU came)

    * ``queued``: parameters accepted; waiting for the upstream (a GPU worker takes it with
      an atomic ``queued -> streaming`` update, so two workers never run one session).
    * ``streaming``: frames flow; ``frames`` counts those generated, ``dropped`` those a
      slow client never received.
    * final states keep the timeline of prompt changes (Daydream Scope's format) and link
      the recording.

    ``end_reason`` says why a final session ended (``completed``, ``stopped``, ``timeout``,
    ``error``): the first reason given wins, so a session its client stopped stays
    ``stopped`` when the producer then finishes it.
    ``recording``: its parts are written to storage while it streams (``RecordingState``).

    Changes go through ``videogen.realtime.sessions``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="realtime_sessions")
    backend = models.CharField(max_length=16, help_text="local | fal")
    model_id = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=SessionStatus.choices, default=SessionStatus.QUEUED,
                              db_index=True)
    params = models.JSONField(default=dict, help_text="the validated parameters (no image bytes)")
    timeline = models.JSONField(null=True, blank=True, help_text="prompt changes, Daydream Scope's format")
    frames = models.PositiveIntegerField(default=0, help_text="frames generated")
    dropped = models.PositiveIntegerField(default=0, help_text="frames a slow client never received")
    error_message = models.TextField(blank=True, default="")
    worker = models.CharField(max_length=200, blank=True, default="", help_text="who generated it")
    video = models.OneToOneField(Video, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="realtime_session")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True,
                                        help_text="last sign of life of the socket that owns it")
    end_reason = models.CharField(max_length=16, choices=EndReason.choices, blank=True, default="",
                                  help_text="completed | stopped | timeout | error (empty while open)")
    recording = models.CharField(max_length=16, choices=RecordingState.choices, blank=True, default="",
                                 help_text="where the recording is (parts written while it streams)")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["backend", "status", "created_at"])]

    def __str__(self) -> str:
        return f"realtime {self.backend} {self.status} ({self.id})"


class RealtimeTokenCounter(models.Model):
    """How many times a user revoked their realtime tokens (``videogen.realtime.auth``).

    Every token the studio mints carries the count at its minting and opens sockets only
    while the count is unchanged: one increment revokes all of a user's tokens at once, and
    verifying a token reads one row. A user who never revoked has no row (count 0).
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True,
                                related_name="realtime_token_counter")
    revocations = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"realtime tokens of user {self.user_id}: revoked {self.revocations} times"
