from django.apps import AppConfig


class VideogenConfig(AppConfig):
    name = "videogen"
    verbose_name = "Video generation"

    def ready(self) -> None:
        from model_control.fal_views import REQUEST_OWNERS

        REQUEST_OWNERS.append(owns_fal_request)


def owns_fal_request(user_id: int, request_id: str, alias: str) -> bool:
    """Whether ``request_id`` is the fal request of one of the user's jobs (for /api/fal/proxy)."""
    from model_control.catalog import catalog
    from videogen.models import Job

    for model_id in Job.objects.filter(owner_id=user_id, backend="fal", provider_request_id=request_id
                                       ).values_list("model_id", flat=True):
        model = catalog().get(model_id)
        if model is not None and "/".join(model.endpoint.split("/")[:2]) == alias:
            return True
    return False
