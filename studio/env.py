"""Typed access to the environment for settings.

Every setting Studio reads from the environment goes through one of these helpers, so a
bad value stops start-up with ``ImproperlyConfigured`` naming the variable instead of
failing later in a request. ``.env`` (or the file named by ``STUDIO_ENV_FILE``) is read
once; variables already set in the process environment win over the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_PERIODS = {"s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day"}


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``KEY=VALUE`` file (``#`` comments, optional quotes, optional ``export``)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ImproperlyConfigured(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


class Env:
    """The process environment layered over an optional env file."""

    def __init__(self, environ: Mapping[str, str], file_values: Mapping[str, str] | None = None):
        self._values = {**(file_values or {}), **environ}

    @classmethod
    def load(cls, base_dir: Path) -> Env:
        env_file = os.environ.get("STUDIO_ENV_FILE", str(base_dir / ".env"))
        return cls(os.environ, read_env_file(Path(env_file)) if env_file else {})

    def raw(self, name: str) -> str | None:
        value = self._values.get(name)
        return value if value not in (None, "") else None

    def str(self, name: str, default: str = "") -> str:
        value = self.raw(name)
        return default if value is None else value

    def optional_str(self, name: str, *aliases: str) -> str | None:
        for key in (name, *aliases):
            value = self.raw(key)
            if value is not None:
                return value
        return None

    def bool(self, name: str, default: bool = False) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")

    def int(self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
        self._check_range(name, number, minimum, maximum)
        return number

    def float(self, name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None
        self._check_range(name, number, minimum, maximum)
        return number

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """One of ``choices`` (compared lowercased)."""
        value = self.str(name, default).strip().lower()
        if value not in choices:
            raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def list(self, name: str, default: list[str]) -> list[str]:
        value = self.raw(name)
        if value is None:
            return list(default)
        return [item.strip() for item in value.split(",") if item.strip()]

    def rate(self, name: str, default: str) -> str:
        """A request rate as DRF reads it: ``N/second``, ``N/minute``, ``N/hour`` or ``N/day``."""
        value = self.str(name, default).strip().lower()
        count, _, period = value.partition("/")
        if not count.isdigit() or int(count) < 1 or period not in _PERIODS:
            raise ImproperlyConfigured(f"{name} must look like 60/hour (N per second, minute, hour or day), "
                                       f"got {value!r}")
        return value

    def url(self, name: str, default: str | None, *, schemes: tuple[str, ...]) -> str | None:
        """A URL with one of ``schemes`` and a host, without a trailing slash."""
        value = self.raw(name)
        if value is None:
            return default
        parts = urlsplit(value)
        located = parts.path if parts.scheme == "unix" else parts.netloc  # unix:///run/redis.sock
        if parts.scheme not in schemes or not located:
            allowed = ", ".join(f"{s}://" for s in schemes)
            raise ImproperlyConfigured(f"{name} must be a URL starting with {allowed}, got {value!r}")
        try:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ImproperlyConfigured(f"{name} has a malformed port: {value!r}") from None
        return value.rstrip("/")

    @staticmethod
    def _check_range(name: str, number: float, minimum: float | None, maximum: float | None) -> None:
        if minimum is not None and number < minimum:
            raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
        if maximum is not None and number > maximum:
            raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {number}")


def database_from_url(name: str, url: str, conn_max_age: int = 60, pool_size: int = 0,
                      pool_timeout: float = 30.0, prepared: bool = False) -> dict:
    """Django ``DATABASES`` entry for a ``postgres://`` or ``sqlite:///`` URL.

    ``pool_size`` > 0: PostgreSQL connections come from a pool of at most that many per
    process (psycopg's), shared by the process's threads; a thread waits up to
    ``pool_timeout`` seconds for one. ``conn_max_age`` then does not apply (a connection goes
    back to the pool, not away). ``prepared``: parameters bound on the server and statements
    run often prepared there (parsed and planned once per connection), which a connection
    pooler in transaction mode (PgBouncer) does not allow."""
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql", "pgsql"):
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"{name} has a malformed port: {url!r}") from None
        db_name = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not db_name:
            raise ImproperlyConfigured(
                f"{name} must look like postgres://user:password@host:5432/dbname, got a URL without "
                "a host or database name"
            )
        entry = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": db_name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname,
            "PORT": str(port or 5432),
            "CONN_MAX_AGE": conn_max_age,
            "CONN_HEALTH_CHECKS": True,
        }
        options: dict = {}
        if pool_size > 0:
            entry["CONN_MAX_AGE"] = 0
            options["pool"] = {"min_size": 1, "max_size": pool_size, "timeout": pool_timeout}
        if prepared:
            options.update(server_side_binding=True, prepare_threshold=2)
        if options:
            entry["OPTIONS"] = options
        return entry
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if not path or path == "/":
            raise ImproperlyConfigured(f"{name} must look like sqlite:////absolute/path.sqlite3")
        return sqlite_database(Path(path))
    raise ImproperlyConfigured(
        f"{name} must be a postgres:// or sqlite:/// URL, got scheme {parts.scheme!r}"
    )


def sqlite_database(path: Path) -> dict:
    """SQLite tuned for a web process whose background threads write too."""
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        # Tests use a file too (not SQLite's in-memory database): the embedded worker threads
        # then share it with the test as they share the real one.
        # Named per process: two test runs on one data directory never share it.
        "TEST": {"NAME": str(Path(path).with_name(f"test_{os.getpid()}_{Path(path).name}"))},
        "OPTIONS": {
            # Background jobs write while requests read: WAL lets them, and IMMEDIATE
            # transactions with a busy timeout queue writers instead of failing them.
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
