"""Helpers shared by the benchmark scripts (bench/jobs.py, bench/relay.py, bench/relay_worker.py).

Kept import-light: psycopg and redis are imported only when a helper runs."""

from __future__ import annotations

import struct

# What bench/relay.py's frames carry after the JPEG's end (decoders ignore bytes after EOI):
# send time (unix s), frame index, marker.
STAMP = struct.Struct("!dQ8s")
MARKER = b"STUDIOBN"


def postgres(sql: str) -> None:
    """Run ``sql`` (CREATE / DROP DATABASE) on the local server's ``postgres`` database."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(sql)


def delete_redis_keys(url: str, pattern: str) -> None:
    """Delete every key of the Redis at ``url`` that matches ``pattern`` (a bench run's keys)."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=pattern, count=1000))
    if keys:
        client.delete(*keys)
