"""One count of each user's unfinished paid generations, whatever door they came through.

``take(owner_id, door, ref)`` checks ``STUDIO_MAX_UNFINISHED_GENERATIONS`` and records the
generation in one transaction (the caller's, when it has one: a job and its ledger row are
created together or not at all); ``give_back(door, ref)`` ends it. Concurrent takes of one
user are serialized by a per-user transaction lock (PostgreSQL's advisory lock; SQLite
serializes writers itself), so the cap holds across web processes and doors under
concurrency. The statements are plain SQL: this runs on every paid request.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from model_control.limits import unfinished_cap_reached
from model_control.models import UnfinishedGeneration
from runtime.db import give_back_connection

TABLE = UnfinishedGeneration._meta.db_table
_LOCK_SPACE = 0x5354  # "ST": the advisory lock namespace of these per-user locks

JOB, TT, FAL_PROXY, REALTIME = "job", "tt", "fal-proxy", "realtime"


def take(owner_id: int, door: str, ref: str, *, lease_s: float | None = None, savepoint: bool = True) -> None:
    """Record generation ``ref`` of ``owner_id``, or raise DRF's ``Throttled`` (429) when the
    owner has the most unfinished generations allowed already (nothing is recorded then).
    ``savepoint=False``: inside a transaction that a refusal rolls back whole anyway (a job's
    create), without the two round trips of a savepoint of its own."""
    now = timezone.now()
    expires = now + timedelta(seconds=lease_s) if lease_s is not None else None
    with transaction.atomic(savepoint=savepoint), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_SPACE, owner_id])
        cursor.execute(f"SELECT count(*) FROM {TABLE} WHERE owner_id = %s AND (expires_at IS NULL OR expires_at > %s)",
                       [owner_id, now])
        if cursor.fetchone()[0] >= settings.STUDIO_MAX_UNFINISHED_GENERATIONS:
            raise unfinished_cap_reached()
        cursor.execute(f"INSERT INTO {TABLE} (owner_id, door, ref, started_at, expires_at) VALUES (%s, %s, %s, %s, %s)",
                       [owner_id, door, ref, now, expires])


def give_back(door: str, ref: str) -> None:
    """The generation ended (finished, failed, cancelled, refused): it stops counting."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE door = %s AND ref = %s", [door, ref])


def rename(door: str, ref: str, new_ref: str) -> None:
    """The generation is known by ``new_ref`` from now on (a proxied request's fal id)."""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET ref = %s WHERE door = %s AND ref = %s", [new_ref, door, ref])


@contextlib.contextmanager
def held(owner_id: int, door: str) -> Iterator[str]:
    """One generation for the duration of a synchronous call (TT Studio's door): taken, or a
    429; given back however the call ends. Leased, so a killed process's row stops counting."""
    ref = uuid.uuid4().hex
    take(owner_id, door, ref, lease_s=call_lease_s())
    give_back_connection()  # the call is long and reads nothing from the database
    try:
        yield ref
    finally:
        give_back(door, ref)


def call_lease_s() -> float:
    """How long a generation the studio may never see end keeps counting: the longest a
    provider call may take, plus a margin."""
    return settings.VIDEO_GENERATION_TIMEOUT + 60


def unfinished(owner_id: int) -> int:
    """How many generations count against ``owner_id``'s cap now."""
    return UnfinishedGeneration.objects.filter(owner_id=owner_id).exclude(expires_at__lte=timezone.now()).count()


def forget_expired() -> int:
    """Remove the rows whose lease ran out (they no longer count anyway)."""
    return UnfinishedGeneration.objects.filter(expires_at__lte=timezone.now()).delete()[0]
