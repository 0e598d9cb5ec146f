"""Who may open ``/ws/realtime/``.

- A browser: its logged-in session (the cookie), with its ``Origin`` checked against the
  studio's hosts (studio/asgi.py), so another site cannot open a socket in its name.
- An API client: ``?token=<key>``, either the user's API token (``Authorization: Token``'s
  key) or a short-lived token from ``POST /api/realtime/token`` (signed, expires after
  ``STUDIO_REALTIME_TOKEN_TTL`` seconds). A token that does not verify refuses the socket,
  whatever cookie comes with it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing

SALT = "studio.realtime.token"
PREFIX = "rt1."


def mint_token(user) -> str:
    """A token that opens realtime sockets as ``user`` for ``STUDIO_REALTIME_TOKEN_TTL`` seconds."""
    return PREFIX + signing.dumps({"u": user.pk}, salt=SALT, compress=True)


def _user_of_token(token: str):
    from rest_framework.authtoken.models import Token

    User = get_user_model()
    if token.startswith(PREFIX):
        try:
            data = signing.loads(token[len(PREFIX):], salt=SALT, max_age=settings.STUDIO_REALTIME_TOKEN_TTL)
        except signing.BadSignature:  # SignatureExpired is one
            return None
        user = User.objects.filter(pk=data.get("u")).first()
    else:
        found = Token.objects.select_related("user").filter(key=token[:40]).first() if len(token) == 40 else None
        user = found.user if found else None
    return user if user is not None and user.is_active else None


def query_token(scope: dict[str, Any]) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[-1] if values else None


@database_sync_to_async
def user_for(scope: dict[str, Any]):
    """The user this socket acts as, or None to refuse it."""
    token = query_token(scope)
    if token is not None:
        return _user_of_token(token)
    user = scope.get("user")
    return user if user is not None and user.is_authenticated else None
