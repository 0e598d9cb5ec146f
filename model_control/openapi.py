"""How the API's error replies look in the OpenAPI schema (drf-spectacular)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorReply = inline_serializer("Error", {
    "error": serializers.CharField(help_text="what went wrong, in words a user can act on"),
    "fields": serializers.DictField(required=False, help_text="per-field messages, for invalid input"),
    "error_type": serializers.CharField(required=False, help_text="timeout, rejected, unavailable, ..."),
})

_MEANING = {
    400: "Invalid input: `error` says what, `fields` names each bad field.",
    401: "Not logged in: send `Authorization: Token <key>` or a session cookie.",
    403: "Not allowed.",
    404: "No such thing (or not yours).",
    405: "Method not allowed here.",
    413: "The body is too large.",
    422: "The provider rejected the input.",
    429: "Too many requests, or too many unfinished generations: wait `Retry-After` seconds.",
    502: "The provider failed or refused the studio's credentials.",
    503: "The backend is not configured.",
    504: "The provider did not finish in time.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """``responses`` entries for the error replies an operation can give."""
    return {code: OpenApiResponse(ErrorReply, description=_MEANING[code]) for code in codes}
