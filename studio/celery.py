"""``celery -A studio``: the Celery app lives in ``runtime.celery``; the studio wires it."""

from runtime.celery import app

__all__ = ["app"]
