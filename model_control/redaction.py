"""Provider secrets (FAL_KEY, the Tenstorrent token) never leave the server.

Upstream error bodies can echo what they were sent (a debug page listing the request's
headers puts ``Bearer <token>`` in its text). Everything that may carry such text on its
way out (error messages, replies, WebSocket frames, log lines) goes through :func:`redact`.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"
_HEADER_SECRET = re.compile(
    r"(?i)\b(authorization|x-fal-[a-z-]*token|x-api-key|api-key)(['\"]?\s*[:=]\s*['\"]?)"
    r"(?:(?:key|bearer|token|basic)\s+)?[^\s'\",;}]+")
# "Bearer abc123..." in free text: a credential-looking word (12+ characters, a digit in it).
_SCHEME_SECRET = re.compile(r"(?i)\b(bearer|key|token|basic)\s+(?=[A-Za-z._~+/=:-]*\d)([A-Za-z0-9._~+/=:-]{12,})")
_QUERY_SECRET = re.compile(r"(?i)\b(fal_jwt_token|token|key|api_key|access_token)=([^&\s'\"]+)")
# host:port (and the URL around it) of a server: where the studio's providers live is
# nobody's business but the operator's (logs keep it).
_HOST_PORT = re.compile(r"(?i)(?:\b[a-z][a-z0-9+.-]*://)?(?<![\w.])"
                        r"(?:\d{1,3}(?:\.\d{1,3}){3}|[a-z0-9-]*[a-z][a-z0-9-]*(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])"
                        r":\d{2,5}\b[^\s'\",;)}]*")


def secret_values() -> list[str]:
    """The configured secrets (empty when Django's settings are not there)."""
    try:
        from django.conf import settings

        values = [getattr(settings, name, None) for name in
                  ("FAL_KEY", "CLOUD_VIDEO_GENERATION_AUTH_TOKEN", "STUDIO_S3_SECRET_KEY")]
    except Exception:  # settings not configured: a client used on its own
        return []
    return [v for v in values if isinstance(v, str) and len(v) >= 4]


def redact(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with configured secrets, auth headers and token query values masked."""
    for value in secrets if secrets is not None else secret_values():
        text = text.replace(value, REDACTED)
    text = _HEADER_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _SCHEME_SECRET.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


def hide_hosts(text: str) -> str:
    """``text`` with every ``host:port`` (and the URL it is part of) replaced by ``[server]``."""
    return _HOST_PORT.sub("[server]", text)


def redact_value(value: Any, secrets: list[str] | None = None) -> Any:
    """:func:`redact` applied to every string inside lists and dicts."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v, secrets) for v in value]
    return value
