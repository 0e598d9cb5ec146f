"""Creating a job: the one use case every door calls (the API, the synchronous door, the
pages' form, the bulk command, retry).

Two steps, so a caller that validates many requests before creating any (``bulk_generate``)
uses the same code as one that does both at once:

- :func:`prepare` reads a request in Studio's shape (or the i2v service's names), finds the
  model (an id or an alias), refuses realtime models, validates the values against the model
  (``CatalogError`` naming each bad field) and checks the backend can run here
  (``ProviderNotConfigured``). Nothing is written.
- :func:`create` stores the inputs and enqueues the job (and its preview, in the same
  transaction: both or neither), under the owner's cap on unfinished generations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from model_control import backends
from model_control.backends import catalog
from model_control.catalog import VideoModel
from model_control.errors import CatalogError
from videogen.jobs import services
from videogen.jobs.inputs import load_values, store_values
from videogen.models import Job

# The i2v job service's names for Studio's fields.
FIELD_ALIASES = {"image_url": "image", "motion_prompt": "prompt", "duration_sec": "duration"}


@dataclass(frozen=True)
class JobRequest:
    """A validated request: the model, its cleaned values, and its preview's when asked for."""

    model: VideoModel
    values: dict[str, Any]
    preview: tuple[VideoModel, dict[str, Any]] | None = None


def prepare(model_id: Any, fields: Mapping[str, Any], *, preview: bool = False) -> JobRequest:
    """Validate a generation request (see the module docstring); raises ``CatalogError``,
    ``UnknownModel`` or ``ProviderNotConfigured``."""
    if not model_id or not isinstance(model_id, str):
        raise CatalogError({"model": "model is required: one of the ids from GET /api/models/"})
    fields = dict(fields)
    for alias, name in FIELD_ALIASES.items():
        if alias in fields and name not in fields:
            fields[name] = fields.pop(alias)
    model = catalog().require(model_id)
    if model.realtime:
        raise CatalogError({"model": f"{model.id} is a realtime model: stream it over the realtime WebSocket"})
    values = model.clean(fields)
    backends.require_configured(model)
    variant = None
    if preview:
        found = catalog().preview_for(model, values)
        if found is None:
            raise CatalogError({"preview": f"{model.id} has no faster variant for a preview"})
        variant = (found[0], found[0].clean(found[1]))
    return JobRequest(model, values, variant)


def create(owner, request: JobRequest, *, stored_input: dict[str, Any] | None = None,
           retry_of: Job | None = None) -> Job:
    """Store the inputs and enqueue the job (its preview first, both in one transaction).

    Raises DRF's ``Throttled`` (429) when the owner has ``STUDIO_MAX_UNFINISHED_GENERATIONS``
    unfinished: then nothing was created, not even the preview."""
    stored = stored_input if stored_input is not None else store_values(request.model, request.values)
    with transaction.atomic():
        preview = None
        if request.preview is not None:
            preview_model, preview_values = request.preview
            preview = services.enqueue_job(owner, preview_model, preview_values,
                                           store_values(preview_model, preview_values))
        return services.enqueue_job(owner, request.model, request.values, stored, retry_of=retry_of,
                                    preview=preview)


def create_job(owner, model_id: Any, fields: Mapping[str, Any], *, preview: bool = False) -> Job:
    """:func:`prepare` then :func:`create`."""
    return create(owner, prepare(model_id, fields, preview=preview))


def retry_job(owner, job: Job) -> Job:
    """Run a finished job again as a new job with the same inputs (its uploads reused)."""
    if not job.finished:
        raise CatalogError({"job": f"the job is still {job.status}: cancel it first or wait"})
    model = catalog().require(job.model_id)
    backends.require_configured(model)
    values = load_values(model, job.input)
    return create(owner, JobRequest(model, values), stored_input=job.input, retry_of=job)
