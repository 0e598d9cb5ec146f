"""The port every way of making a video plugs into (docs/architecture.md, "Backends").

A backend is one module: its models (with their inputs and limits), what it still needs
before it can run here, and its calls. Two shapes of queued generation:

- :class:`RemoteBackend`: a provider over the network. ``submit`` (the paid call, made once
  per job) answers a request id, or the video itself when the provider answers inside the
  call; then ``check``, ``fetch`` and ``cancel`` by request id, and optionally ``webhook``.
- :class:`WorkerBackend`: runs inside a Celery worker of its ``queue`` (the local pipeline on
  a GPU worker): ``prepare`` (load what it needs once), then ``run`` with a progress callback
  that also says whether to go on.

And one shape of realtime streaming, :class:`StreamBackend`: ``open`` a stream for a
session, then ``update`` and ``stop`` it; frames and the end are reported to a
:class:`StreamListener`.

The job and session lifecycles (videogen) are written once against these classes and never
ask which backend they hold. Backends raise only ``model_control.errors`` types.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from model_control.catalog import VideoModel
from model_control.errors import ProviderError
from model_control.inputs import ImageInput, Param


@dataclass(frozen=True)
class GeneratedVideo:
    """A finished video: its bytes and what was sent to make it."""

    content: bytes
    content_type: str
    model_id: str
    backend: str
    request_id: str | None
    fields: dict[str, Any]  # what was sent (images as URLs or "<upload>"); kept with the video
    output: dict[str, Any] | None = None  # the provider's output JSON, when it has one


@dataclass(frozen=True)
class Submitted:
    """What a paid submit left: the provider's request id, or the video itself when the
    provider answered inside the call (then there is nothing to poll or resume)."""

    request_id: str | None
    fields: dict[str, Any]
    video: GeneratedVideo | None = None


@dataclass(frozen=True)
class ProviderStatus:
    state: str  # queued | running | completed
    queue_position: int | None = None
    logs: tuple[str, ...] = ()
    progress: float | None = None


@dataclass(frozen=True)
class WebhookNews:
    """What a verified provider webhook says: these request ids finished (``error`` when the
    provider says it failed)."""

    request_ids: tuple[str, ...]
    error: ProviderError | None = None


ImageResolver = Callable[[ImageInput], str]
# ``progress(done, total, log) -> go on?``: False when the job was cancelled meanwhile.
Progress = Callable[[int, int, str | None], bool]


class Backend(ABC):
    """What every backend declares: a name (``Job.backend``), a title, its models, and what
    it is missing to run here."""

    name: str
    title: str

    @abstractmethod
    def models(self) -> Sequence[VideoModel]:
        """The catalog entries this backend serves (each with ``backend == self.name``)."""

    @abstractmethod
    def missing(self) -> str | None:
        """What this backend still needs before it can run here (a setting, weights), or None."""

    def not_configured_message(self) -> str:
        """The error a user sees when a generation is refused for ``missing()``."""
        return f"{self.title} cannot run here: {self.missing()}."

    def demo(self) -> str | None:
        """A note for every page that names this backend while what it runs here is a stand-in
        for its models (the local pipeline's tiny random-weights model), or None."""
        return None


class QueuedBackend(Backend):
    """A backend whose generations are durable jobs."""

    # Concurrency bound per backend across every worker, from settings (None: the defaults).
    remote: bool = True


class RemoteBackend(QueuedBackend):
    """A provider over the network (module docstring)."""

    @abstractmethod
    def submit(self, model: VideoModel, values: dict[str, Any], *, timeout: float,
               resolve_image: ImageResolver | None = None, webhook_url: str | None = None) -> Submitted:
        """The paid call, made once per job: ``values`` are ``model.clean``'s output."""

    @abstractmethod
    def check(self, model: VideoModel, request_id: str) -> ProviderStatus:
        """Where the provider is with ``request_id``; raises the provider's error when it failed."""

    @abstractmethod
    def fetch(self, model: VideoModel, request_id: str, fields: dict[str, Any], *,
              timeout: float) -> GeneratedVideo:
        """A completed request's output, its video downloaded."""

    @abstractmethod
    def cancel(self, model: VideoModel, request_id: str) -> str:
        """Ask the provider to stop ``request_id``; returns what it said."""

    def upload(self, image: ImageInput) -> str:
        """Put an uploaded image where the provider can read it; returns its URL. Backends that
        take the image itself in ``submit`` keep this default."""
        raise NotImplementedError(f"{self.title} takes images in the submit itself")

    def webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNews:
        """A provider's signed webhook, verified; raises ``WebhookRefused`` when it is not
        one. Backends without webhooks keep this default."""
        raise WebhookRefused(404, f"{self.title} sends no webhooks.", "no_webhooks")

    def webhook_url(self, public_url: str) -> str | None:
        """Where the provider should send its webhook for a job (None: it sends none)."""
        return None


class WorkerBackend(QueuedBackend):
    """A generator that runs inside a Celery worker of ``queue`` (module docstring)."""

    remote = False
    queue: str = "default"
    # A running job whose row has not changed for this long lost its worker: run it again.
    lease_s: float = 120.0

    def prepare(self) -> None:
        """Load what ``run`` needs (once per process); raises ``ProviderUnavailable`` when it
        cannot be loaded here."""

    @abstractmethod
    def run(self, model: VideoModel, values: dict[str, Any], *, progress: Progress) -> GeneratedVideo | None:
        """Make the video; None when ``progress`` said to stop (the job was cancelled)."""


class WebhookRefused(Exception):
    """A webhook delivery that is not accepted: ``status`` (400, 401, 404, 503), a short
    ``kind`` and why."""

    def __init__(self, status: int, message: str, kind: str = "refused") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


# --- realtime --------------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamLimits:
    """What one realtime backend accepts: the socket validates against these, the catalog
    describes them, the pages show them. Each number is defined once, by its backend."""

    size_multiple: int
    min_size: int = 64
    max_size: int = 2048
    default_width: int = 832
    default_height: int = 480
    max_prompt: int = 2000
    max_seed: int = 2**24
    max_steps: int = 8
    default_steps: int = 4
    first_block_frames: int = 9
    block_frames: int = 12
    max_blocks: int = 50
    default_blocks: int = 10
    takes_images: bool = False

    def frames_for_blocks(self, blocks: int) -> int:
        return self.first_block_frames + self.block_frames * (blocks - 1) if blocks > 0 else 0

    def blocks_for_frames(self, frames: int) -> int:
        """Blocks a stream needs for ``frames`` frames (the first block is shorter)."""
        extra = max(frames - self.first_block_frames, 0)
        return 1 + -(-extra // self.block_frames)


def realtime_params(limits: StreamLimits) -> tuple[Param, ...]:
    """A realtime model's catalog inputs, from its backend's limits (so the REST schema, the
    pages and the socket read the same numbers)."""
    return (
        Param("prompt", "prompt", "text", required=True, maximum=limits.max_prompt),
        Param("resolution", "width,height", "size", default=f"{limits.default_width}x{limits.default_height}",
              minimum=limits.min_size, maximum=limits.max_size, multiple_of=limits.size_multiple, label="Size",
              help=f"Width x height in pixels, {limits.min_size}-{limits.max_size}, each rounded to a "
                   f"multiple of {limits.size_multiple}."),
        Param("num_frames", "num_blocks", "int", minimum=limits.first_block_frames,
              maximum=limits.frames_for_blocks(limits.max_blocks),
              default=limits.frames_for_blocks(limits.default_blocks), encode=limits.blocks_for_frames,
              help=f"How many frames to stream; they are made {limits.block_frames} at a time."),
        Param("steps", "num_denoising_steps", "int", default=limits.default_steps, minimum=1,
              maximum=limits.max_steps),
        Param("seed", "seed", "int", minimum=0, maximum=limits.max_seed),
        Param("strength", "strength", "float", default=1.0, minimum=0.0, maximum=1.0),
        Param("image", "start_frame", "image", label="Start frame",
              help="An optional picture the stream starts from."),
    )


class StreamListener(Protocol):
    """What a stream reports to (the session's socket)."""

    async def upstream_loading(self) -> None: ...
    async def upstream_started(self, info: dict[str, Any]) -> None: ...
    def upstream_frame(self, jpeg: bytes) -> None: ...
    async def upstream_error(self, error: str, recorded: dict[str, Any] | None = None) -> None: ...
    async def upstream_completed(self, recorded: dict[str, Any]) -> None: ...


class Stream(Protocol):
    """One open realtime stream."""

    started: bool

    async def start(self) -> None: ...
    async def update(self, update: dict[str, Any]) -> None: ...
    async def keepalive(self) -> None: ...
    async def stop(self) -> None: ...
    async def close(self) -> None: ...


class StreamBackend(ABC):
    """A realtime backend: ``?backend=<key>`` on ``/ws/realtime/``."""

    key: str  # the socket's ?backend= value and RealtimeSession.backend
    title: str
    model_id: str  # its catalog model
    description: str = ""
    # Whether the place that makes the frames also records them (the GPU worker): else the
    # studio records what it relays.
    records_at_source: bool = False
    # Whether a session costs money: then it counts against the owner's unfinished paid
    # generations and the hourly generation rate, as the other paid doors do.
    paid: bool = True

    @property
    @abstractmethod
    def limits(self) -> StreamLimits:
        """What this backend accepts."""

    @abstractmethod
    def missing(self) -> str | None:
        """What it still needs before it can stream here, or None."""

    async def capacity(self) -> int | None:
        """Streams it can take now (GPUs), 0 when none, None when it cannot tell or need not."""
        return None

    @abstractmethod
    def open(self, listener: Any, session: Any, params: Any) -> Stream:
        """A stream for ``session`` (a RealtimeSession row) with validated ``params``; frames
        and its end go to ``listener``. Nothing is sent until ``start``."""
