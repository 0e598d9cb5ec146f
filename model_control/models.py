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


class UnfinishedGeneration(models.Model):
    """One paid generation a user has in flight, through any door: a job, a synchronous call
    of TT Studio's endpoint, a submit through the fal proxy, a fal realtime session.

    ``STUDIO_MAX_UNFINISHED_GENERATIONS`` caps the rows per user; ``model_control.generations``
    takes a row (checking the cap in the same transaction) and gives it back when the
    generation ends. A row whose end the studio may never see (a proxied fal request nobody
    asks about again) has a lease, ``expires_at``, after which it stops counting.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="unfinished_generations")
    door = models.CharField(max_length=16, help_text="job | tt | fal-proxy | realtime")
    ref = models.CharField(max_length=128, help_text="the job, request or session id")
    started_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="stops counting after this (null: never)")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["door", "ref"], name="unfinished_generation_unique")]
        indexes = [models.Index(fields=["owner", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.door} {self.ref}"
