"""Keep provider secrets out of every log line."""

from __future__ import annotations

import logging
import re

_HEADER_SECRET = re.compile(r"(?i)\b(authorization|x-fal-[a-z-]*token)(['\"]?\s*[:=]\s*['\"]?)(key|bearer|token)?\s*[^\s'\",}]+")
_QUERY_SECRET = re.compile(r"(?i)\b(fal_jwt_token|token|key|api_key)=([^&\s'\"]+)")


def secret_values() -> list[str]:
    from django.conf import settings

    values = [getattr(settings, "FAL_KEY", None), getattr(settings, "CLOUD_VIDEO_GENERATION_AUTH_TOKEN", None)]
    return [v for v in values if v and len(v) >= 4]


def redact(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with configured secrets, auth headers and token query values masked."""
    for value in secrets if secrets is not None else secret_values():
        text = text.replace(value, "[redacted]")
    text = _HEADER_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)
    return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}=[redacted]", text)


class RedactSecretsFilter(logging.Filter):
    """Rewrites each record's final message with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
