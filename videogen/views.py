"""Pages of the video feature. Each needs a logged-in user (PagesRequireLoginMiddleware)."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import render

from model_control import backends
from model_control.catalog import REALTIME, catalog
from videogen import gallery


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
    return render(request, "videogen/gallery.html", {"videos": gallery.list_videos(request.user.pk)})
