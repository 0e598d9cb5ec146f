"""Studio project package: settings, URL map, ASGI routing, the Celery app and health."""

from runtime.celery import app as celery_app

__all__ = ["celery_app"]
