"""The generation request's OpenAPI shape, generated from the catalog.

Every Studio field some queued model accepts appears once, with the type, help and choices
its models declare (``model_control.inputs.Param``); validation itself is the model's own
``clean``, so the schema and the validation read the same declarations.
"""

from __future__ import annotations

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from model_control.backends import catalog
from model_control.inputs import FIELD_TEXT, Param
from videogen.jobs.create import FIELD_ALIASES

_FIELDS = {
    "text": serializers.CharField, "int": serializers.IntegerField, "float": serializers.FloatField,
    "bool": serializers.BooleanField, "choice": serializers.CharField, "image": serializers.CharField,
    "video": serializers.CharField, "size": serializers.CharField,
}


def _field(name: str, params: list[Param]) -> serializers.Field:
    kinds = {p.kind for p in params}
    kind = kinds.pop() if len(kinds) == 1 else "choice"
    text = FIELD_TEXT.get(name)
    notes = [text.help] if text and text.help else []
    choices = sorted({str(c) for p in params for c in p.choices})
    if choices:
        notes.append(f"one of (depending on the model): {', '.join(choices)}")
    if kind == "image":
        notes.append("an uploaded file (multipart) or an http(s) or data: URL")
    if kind == "video":
        notes.append("an uploaded file (multipart form)")
    models = len(params)
    notes.append(f"accepted by {models} model{'s' if models != 1 else ''} (GET /api/models/ lists which)")
    return _FIELDS[kind](required=False, help_text="; ".join(notes))


def job_request_serializer():
    """The request body of ``POST /api/jobs/`` and ``POST /api/videos/generate``."""
    by_name: dict[str, list[Param]] = {}
    for model in catalog().all():
        if model.realtime:
            continue
        for param in model.params:
            by_name.setdefault(param.name, []).append(param)
    fields: dict[str, serializers.Field] = {
        "model": serializers.CharField(help_text="a catalog id (GET /api/models/) or one of its aliases"),
        **{name: _field(name, params) for name, params in by_name.items()},
        **{alias: serializers.CharField(required=False, help_text=f"the i2v service's name for {name}")
           for alias, name in FIELD_ALIASES.items()},
        "preview": serializers.BooleanField(required=False,
                                            help_text="run the model's fast, cheap variant first"),
    }
    return inline_serializer("GenerationRequest", fields)
