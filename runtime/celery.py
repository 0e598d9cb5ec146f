"""The Celery app shared by the web process and the workers.

In the services mode tasks go through Redis to ``celery worker`` processes (queues
``default`` and ``gpu``) and ``celery beat`` runs ``CELERY_BEAT_SCHEDULE``. In the embedded
mode the very same task code runs on background threads of the web process
(``runtime.embedded``): ``delay()`` returns at once, so a request never waits for a job, and
the beat schedule runs on timers there.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")


class StudioTask(Task):
    """A task that runs in-process on the embedded executor when there is no broker."""

    def apply_async(self, args=None, kwargs=None, task_id=None, producer=None, link=None,
                    link_error=None, shadow=None, **options):
        from django.conf import settings

        if settings.STUDIO_EMBEDDED and not self.app.conf.task_always_eager:
            from runtime import embedded

            queue = options.get("queue") or self.app.amqp.router.route(
                {}, self.name, args, kwargs)["queue"].name
            return embedded.executor().submit(self, args or (), kwargs or {}, queue, task_id,
                                              countdown=options.get("countdown"))
        return super().apply_async(args, kwargs, task_id, producer, link, link_error, shadow,
                                   **options)


app = Celery("studio", task_cls=StudioTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _fresh_database_connections(**kwargs: Any) -> None:
    """Before each task: give back the connections that broke (a database restart) or grew
    old, as a web request does; healthy ones are kept (``CELERY_DB_REUSE_MAX``)."""
    from django.db import close_old_connections

    close_old_connections()


def dispatch(task_name: str, *args: Any, countdown: float | None = None, queue: str | None = None) -> None:
    """Run the registered task ``task_name`` with ``args`` (after ``countdown`` seconds).

    Callers name tasks instead of importing them, so a module that changes state (services)
    and the tasks that call it do not import each other.
    """
    options: dict[str, Any] = {}
    if countdown:
        options["countdown"] = countdown
    if queue:
        options["queue"] = queue
    app.tasks[task_name].apply_async(args, **options)


# Imported here so every worker process connects the census signals (``worker_ready``).
from runtime import workers  # noqa: E402,F401
