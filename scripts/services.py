"""`python scripts/services.py check REDIS_URL DATABASE_URL`: exit 0 when both answer."""

from __future__ import annotations

import sys
from urllib.parse import urlsplit


def main(redis_url: str, database_url: str) -> int:
    import psycopg
    import redis

    ok = True
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        print(f"Redis at {redis_url}: {exc}", file=sys.stderr)
        ok = False
    parts = urlsplit(database_url)
    try:
        psycopg.connect(host=parts.hostname, port=parts.port or 5432, user=parts.username or "postgres",
                        password=parts.password or None, dbname="postgres", connect_timeout=3).close()
    except psycopg.Error as exc:
        print(f"PostgreSQL at {parts.hostname}:{parts.port or 5432}: {exc}", file=sys.stderr)
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "check":
        sys.exit(__doc__)
    sys.exit(main(sys.argv[2], sys.argv[3]))
