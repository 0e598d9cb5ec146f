"""What model_control keeps: the fal requests each user submitted through the proxy."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ProxiedFalRequest(models.Model):
    """A fal queue request a user submitted through ``/api/fal/proxy``.

    The proxy forwards status, result and cancel only for request ids recorded here for the
    same user (fal's key could read anyone's). The jobs' own table takes this over once
    generations become durable jobs.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="proxied_fal_requests")
    app_id = models.CharField(max_length=200)
    request_id = models.CharField(max_length=128, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.app_id} {self.request_id}"

    @property
    def alias(self) -> str:
        """``owner/alias`` of the app, as fal's status and result URLs name it."""
        return "/".join(self.app_id.split("/")[:2])
