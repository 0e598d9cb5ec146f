"""Pages of the video feature. Each needs a logged-in user (PagesRequireLoginMiddleware)."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import render

from model_control import backends
from model_control.catalog import REALTIME, catalog
from videogen.models import Job, JobStatus, Video


def generate(request):
    """Pick a catalog model, fill in its inputs, get the video back (POST /api/videos/generate)."""
    models = [backends.describe(m) for m in catalog().all() if m.kind != REALTIME]
    return render(request, "videogen/generate.html", {"models": models})


def realtime(request):
    """Stream Krea WAN-14B frames from fal with a minted token (the key stays on the server)."""
    models = [backends.describe(m) for m in catalog().all() if m.kind == REALTIME]
    return render(request, "videogen/realtime.html", {
        "models": models,
        "realtime_url": settings.FAL_REALTIME_URL,
        "fal_configured": bool(settings.FAL_KEY),
    })


def gallery_page(request):
    """The user's videos (newest first) and the jobs still running or failed."""
    videos = Video.objects.filter(owner=request.user)[:200]
    jobs = Job.objects.filter(owner=request.user).exclude(status=JobStatus.COMPLETED)[:50]
    return render(request, "videogen/gallery.html", {"videos": videos, "jobs": jobs})
