"""Per-user limits on what costs money: request rates, and the answer to a full cap.

Rates count in Django's cache: Redis in the services mode, so every web process shares the
counts; the in-process cache in the embedded mode, which has one web process. The cap on
unfinished generations is counted in the database, across every door
(``model_control.generations``). Rates and the cap are settings (``STUDIO_THROTTLE_RATES``,
``STUDIO_MAX_UNFINISHED_GENERATIONS``), read at request time.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from rest_framework.exceptions import Throttled
from rest_framework.throttling import UserRateThrottle

logger = logging.getLogger(__name__)

# How long to tell a capped user to wait before trying again, seconds.
CAP_RETRY_AFTER_S = 10


class StudioRateThrottle(UserRateThrottle):
    """DRF's per-user throttle with its rate read from ``settings.STUDIO_THROTTLE_RATES``.

    While the cache (Redis) cannot be reached the rate is not enforced (logged), so a Redis
    outage does not turn every paid request into an error: what protects the bill then is the
    cap on unfinished generations, counted in the database, and a job created meanwhile is
    dispatched by the sweep once the broker is back."""

    def get_rate(self) -> str | None:
        return settings.STUDIO_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # noqa: BLE001 - the cache backend's connection errors vary
            if not _cache_unreachable(exc):
                raise
            logger.warning("the %s rate is not enforced: the cache cannot be reached (%s)", self.scope,
                           type(exc).__name__)
            return True


def _cache_unreachable(exc: BaseException) -> bool:
    try:
        import redis
    except ImportError:  # pragma: no cover - redis is a dependency
        return False
    return isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError | ConnectionError)


class GenerationRateThrottle(StudioRateThrottle):
    """Paid generations started (any door: jobs, sync generate, TT Studio's endpoint, proxy submits).

    Only accepted requests count: DRF's throttle counts before the view runs, so the count it
    takes is noted on the request, and :func:`uncount_unless_accepted` (called by
    ``studio.middleware.GenerationCountMiddleware`` with the answer's status) takes it back
    when the answer is not a 2xx: bad input, an unknown model or a refusal never uses up the
    rate. Counting first and taking back (rather than counting after success) keeps
    concurrent requests and minutes-long synchronous generations inside the rate.
    """

    scope = "generation"

    def allow_request(self, request, view) -> bool:
        allowed = super().allow_request(request, view)
        if allowed and self.rate is not None and getattr(self, "key", None) is not None and hasattr(self, "now"):
            counted = request._request.__dict__.setdefault(_COUNTED, [])
            counted.append((self.key, self.now, self.duration))
        return allowed


_COUNTED = "studio_generation_counts"


def uncount_unless_accepted(request: HttpRequest, status: int) -> None:
    """Take back what :class:`GenerationRateThrottle` counted for ``request`` unless ``status``
    is a 2xx (the generation was accepted)."""
    counted = request.__dict__.pop(_COUNTED, ())
    if 200 <= status < 300:
        return
    for key, stamp, duration in counted:
        try:
            history = cache.get(key, [])
            if stamp in history:
                history.remove(stamp)
                cache.set(key, history, duration)
        except Exception as exc:  # noqa: BLE001
            if not _cache_unreachable(exc):
                raise
            logger.warning("a refused generation could not be taken back from the rate: %s", type(exc).__name__)


class _SessionGenerationThrottle(StudioRateThrottle):
    scope = "generation"


def allow_generation(user) -> bool:
    """Count one paid generation that starts outside an HTTP request (a paid realtime session
    on the socket) against the user's hourly generation rate; False when the rate is used up."""
    return _SessionGenerationThrottle().allow_request(SimpleNamespace(user=user), None)


class FalTokenRateThrottle(StudioRateThrottle):
    """Temporary fal tokens minted by ``POST /api/fal``."""

    scope = "fal_token"


def unfinished_cap_reached() -> Throttled:
    """The 429 for a user who has ``STUDIO_MAX_UNFINISHED_GENERATIONS`` unfinished already."""
    cap = settings.STUDIO_MAX_UNFINISHED_GENERATIONS
    return Throttled(wait=CAP_RETRY_AFTER_S, detail=(
        f"You have {cap} generations unfinished, the most one user may have at once "
        "(STUDIO_MAX_UNFINISHED_GENERATIONS): wait for one to finish."))
