"""The Celery app shared by the web process and the workers.

In the services mode tasks go through Redis to ``celery worker`` processes (queues
``default`` and ``gpu``). In the embedded mode the very same task code runs on background
threads of the web process (``studio.embedded``): ``delay()`` returns at once, so a request
never waits for a job.
"""

from __future__ import annotations

import os

from celery import Celery, Task

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")


class StudioTask(Task):
    """A task that runs in-process on the embedded executor when there is no broker."""

    def apply_async(self, args=None, kwargs=None, task_id=None, producer=None, link=None,
                    link_error=None, shadow=None, **options):
        from django.conf import settings

        if settings.STUDIO_EMBEDDED and not self.app.conf.task_always_eager:
            from studio import embedded

            queue = options.get("queue") or self.app.amqp.router.route(
                {}, self.name, args, kwargs)["queue"].name
            return embedded.executor().submit(self, args or (), kwargs or {}, queue, task_id,
                                              countdown=options.get("countdown"))
        return super().apply_async(args, kwargs, task_id, producer, link, link_error, shadow,
                                   **options)


app = Celery("studio", task_cls=StudioTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
