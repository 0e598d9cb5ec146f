"""Test support: services the tests start themselves (Celery workers, Redis, the studio)."""
