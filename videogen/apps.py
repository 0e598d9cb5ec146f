from django.apps import AppConfig


class VideogenConfig(AppConfig):
    name = "videogen"
    verbose_name = "Video generation"

    def ready(self) -> None:
        from model_control import backends
        from model_control.fal_views import REQUEST_OWNERS
        from runtime.consumers import CONNECT_EVENTS
        from videogen.jobs import tasks as job_tasks  # noqa: F401 - registers the job tasks
        from videogen.local import tasks as gpu_tasks  # noqa: F401 - registers the GPU tasks
        from videogen.local.backend import LocalBackend

        backends.register(LocalBackend())
        REQUEST_OWNERS.append(owns_provider_request)
        CONNECT_EVENTS.append(unfinished_job_events)


def owns_provider_request(user_id: int, request_id: str, alias: str) -> bool:
    """Whether ``request_id`` is the provider request of one of the user's jobs, for a model
    whose app alias is ``alias`` (for /api/fal/proxy's status, result and cancel)."""
    from model_control.backends import catalog
    from model_control.fal import app_alias
    from videogen.models import Job

    for model_id in Job.objects.filter(owner_id=user_id, provider_request_id=request_id
                                       ).values_list("model_id", flat=True):
        model = catalog().get(model_id)
        if model is not None and model.endpoint.count("/") >= 1 and app_alias(model.endpoint) == alias:
            return True
    return False


def unfinished_job_events(user_id: int) -> list[dict]:
    """What a page that (re)connects to /ws/events/ hears first: each unfinished job's state."""
    from videogen.models import UNFINISHED, Job

    return [{"type": "job.status", **job.event()}
            for job in Job.objects.filter(owner_id=user_id, status__in=UNFINISHED).order_by("created_at")]
