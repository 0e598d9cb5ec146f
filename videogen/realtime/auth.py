"""Who may open the studio's realtime socket, and the tokens the studio mints for it.

The socket is served at ``/ws/realtime/`` and at fal's paths for the app,
``/fal-ai/krea-wan-14b/ws`` and ``/fal-ai/krea-wan-14b/realtime`` (studio/routing.py):

- A browser: its logged-in session (the cookie), from the studio's own origin only
  (studio/origins.py), so another site cannot open a socket in its name.
- A program: ``?token=<key>`` with its API token (``Authorization: Token``'s key), or a token
  the studio minted, in ``?token=`` or, as fal's clients send it, ``?fal_jwt_token=``.

Minted tokens (``POST /api/realtime/token``, ``POST /fal/tokens/``, ``POST /api/fal``) are the
studio's own, good only for the studio's socket, never a fal key or a fal token:

- signed with the studio's secret key (``django.core.signing``, a salt of their own): they
  cannot be forged or altered;
- short-lived: the expiry is inside the signed payload (at most ``FAL_TOKEN_MAX_EXPIRATION``
  seconds from minting);
- scoped to the user who minted them and to the apps they name (``krea-wan-14b``): the
  socket of another app refuses them;
- revocable: each carries the user's revocation count (``RealtimeTokenCounter``) at minting;
  ``revoke_tokens`` raises it and every token minted before stops working.

A token that does not verify refuses the socket, whatever cookie comes with it.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db.models import F
from django.utils import timezone

from model_control import backends
from videogen.models import RealtimeTokenCounter

logger = logging.getLogger(__name__)

SALT = "studio.realtime.token.v2"
PREFIX = "rt2."
# Query parameters that carry a token; either one makes the socket token-authenticated.
TOKEN_PARAMS = ("fal_jwt_token", "token")
API_KEY_LENGTH = 40  # DRF's authtoken keys


def served_apps() -> list[str]:
    """The fal app aliases the studio's socket serves (``krea-wan-14b``): those of the
    registered realtime backends that declare apps. A token names some of these."""
    return sorted({app for stream in backends.stream_backends().values()
                   for app in getattr(stream, "apps", list)()})


def _revocations(user_id: int) -> int:
    count = RealtimeTokenCounter.objects.filter(user_id=user_id).values_list("revocations", flat=True).first()
    return count or 0


def mint_token(user, apps: list[str] | None = None, ttl_s: int | None = None) -> str:
    """A token that opens the studio's realtime socket as ``user`` for the ``apps`` it names
    (default: every app served) during ``ttl_s`` seconds, at most ``FAL_TOKEN_MAX_EXPIRATION``
    (default: ``STUDIO_REALTIME_TOKEN_TTL``)."""
    ttl = settings.STUDIO_REALTIME_TOKEN_TTL if ttl_s is None else min(ttl_s, settings.FAL_TOKEN_MAX_EXPIRATION)
    payload = {"u": user.pk, "a": list(apps or served_apps()), "e": int(time.time()) + ttl,
               "r": _revocations(user.pk)}
    return PREFIX + signing.dumps(payload, salt=SALT, compress=True)


def revoke_tokens(user) -> int:
    """Every token minted for ``user`` so far stops working; returns the new revocation count."""
    RealtimeTokenCounter.objects.get_or_create(user=user)
    # One UPDATE: two revocations at once both count.
    RealtimeTokenCounter.objects.filter(user=user).update(revocations=F("revocations") + 1, revoked_at=timezone.now())
    logger.info("realtime tokens of user %s revoked", user.pk)
    return _revocations(user.pk)


def _refuse(reason: str) -> None:
    """Log why a socket is refused (never the token); returns None, the refusal."""
    logger.info("realtime socket refused: %s", reason)


def _user_of_minted(token: str, app: str | None):
    try:
        data = signing.loads(token[len(PREFIX):], salt=SALT)
    except signing.BadSignature:
        return _refuse("a token that does not verify")
    if not isinstance(data, dict) or not isinstance(data.get("e"), int) or not isinstance(data.get("a"), list):
        return _refuse("a token of another format")
    if data["e"] <= time.time():
        return _refuse("an expired token")
    apps = data["a"]
    if app is not None and app not in apps or app is None and not set(apps) & set(served_apps()):
        return _refuse(f"a token for {', '.join(map(str, apps)) or 'no app'}, not for {app or 'this socket'}")
    user = get_user_model().objects.filter(pk=data.get("u")).first()
    if user is None:
        return _refuse("a token of a user who is gone")
    if data.get("r") != _revocations(user.pk):
        return _refuse(f"a revoked token of user {user.pk}")
    return user


def _user_of_api_key(key: str):
    from rest_framework.authtoken.models import Token

    found = Token.objects.select_related("user").filter(key=key).first() if len(key) == API_KEY_LENGTH else None
    if found is None:
        return _refuse("a token that is neither the studio's nor an API token")
    return found.user


def user_of_token(token: str, app: str | None = None, *, api_key: bool = True):
    """The active user ``token`` opens the socket of ``app`` as (None: every app the studio
    serves), or None. ``api_key``: an API token is accepted too (``?token=``, not fal's
    ``?fal_jwt_token=``, which only ever carries a minted token)."""
    if token.startswith(PREFIX):
        user = _user_of_minted(token, app)
    elif api_key:
        user = _user_of_api_key(token)
    else:
        user = _refuse("a fal_jwt_token the studio did not mint")
    if user is not None and not user.is_active:
        return _refuse(f"a token of inactive user {user.pk}")
    return user


def query_token(scope: dict[str, Any]) -> tuple[str, str] | None:
    """``(parameter, token)`` of the socket's query, or None; ``fal_jwt_token`` wins over ``token``."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    for name in TOKEN_PARAMS:
        if query.get(name):
            return name, query[name][-1]
    return None


def socket_app(scope: dict[str, Any]) -> str | None:
    """The app the socket's path names (``/fal-ai/<app>/ws``), or None (``/ws/realtime/``)."""
    return (scope.get("url_route") or {}).get("kwargs", {}).get("app")


@database_sync_to_async
def user_for(scope: dict[str, Any]):
    """The user this socket acts as, or None to refuse it."""
    found = query_token(scope)
    if found is not None:
        name, token = found
        return user_of_token(token, socket_app(scope), api_key=name == "token")
    user = scope.get("user")
    return user if user is not None and user.is_authenticated else None
