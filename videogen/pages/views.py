"""Pages of the video feature. Each needs a logged-in user (PagesRequireLoginMiddleware)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET

from model_control import backends
from model_control.backends import catalog
from model_control.catalog import KIND_TITLES, REALTIME
from videogen.models import Job, JobStatus, Video
from videogen.pages import presentation
from videogen.pages import realtime as realtime_page

HISTORY_LIMIT = 12  # recent jobs listed under the form; the gallery has every one


@require_GET
def generate(request):
    """Pick a model, fill in its inputs from the catalog, start a job, follow it to the video.

    ``?model=<id>`` preselects a model; ``?from=<job id>`` fills the form in with one of the
    user's jobs (the gallery's "reuse settings"); ``?job=<id>`` shows that job's progress.
    Under the form, the user's ``HISTORY_LIMIT`` newest jobs (the script fetches them).
    """
    models = [{**backends.describe(m), "demo": backends.backend_of(m).demo()} for m in catalog().all()
              if m.kind != REALTIME]
    order = [b.name for b in backends.backends()]
    groups: dict[str, dict] = {}
    for model in models:
        groups.setdefault(model["backend"], {"title": model["backend_title"], "models": []})["models"].append(model)
    for group in groups.values():
        group["models"].sort(key=lambda m: not m["configured"])  # stable: catalog order within
        group["configured"] = any(m["configured"] for m in group["models"])
    ordered = sorted(groups.items(), key=lambda item: (not item[1]["configured"], order.index(item[0])))
    prefill = None
    if request.GET.get("from"):
        job = _owned(Job, request, request.GET["from"])
        if job is None:
            raise Http404("No such job of yours.")
        if catalog().get(job.model_id) is None or job.kind == REALTIME:
            raise Http404("That job's model is not in this studio's catalog.")
        prefill = {"job": str(job.pk), "model": job.model_id, "values": presentation.reuse_values(job)}
    wanted = prefill["model"] if prefill else request.GET.get("model", "")
    if wanted and wanted not in (m["id"] for m in models):
        raise Http404(f"No model {wanted!r} on this page.")
    selected = wanted or next((m for _, g in ordered for m in g["models"] if m["configured"]), models[0])["id"]
    page = {"models": models, "selected": selected, "prefill": prefill,
            "errors": {kind: {"headline": h, "advice": a} for kind, (h, a) in presentation.ERROR_TEXTS.items()},
            "statuses": {status.value: text for status, text in presentation.STATUS_TEXTS.items()},
            "history_limit": HISTORY_LIMIT}
    return render(request, "videogen/generate.html", {
        "groups": [group for _, group in ordered], "selected": selected, "page": page})


def _owned(model, request, pk: str):
    """The user's row of ``model`` with this id, or None (also when ``pk`` is not a UUID)."""
    try:
        return model.objects.filter(owner=request.user, pk=pk).first()
    except ValidationError:  # not a UUID
        return None


@require_GET
def realtime(request):
    """Stream Krea frames through the studio's own ``/ws/realtime/`` (the local pipeline or fal;
    ``?backend=`` preselects one); no provider token or key reaches the page."""
    reuse = None
    if request.GET.get("from"):  # "reuse settings" of one of the user's recordings
        video = _owned(Video, request, request.GET["from"])
        parameters = video.parameters if video is not None and isinstance(video.parameters, dict) else {}
        if parameters.get("kind") != REALTIME:
            raise Http404("No such realtime recording of yours.")
        reuse = realtime_page.reuse_values(video)
    return render(request, "videogen/realtime.html", realtime_page.page_context(request.GET.get("backend"), reuse))


@require_GET
def gallery_page(request):
    """Every job and job-less video (realtime recordings, imports) of the user, newest first."""
    context = {"statuses": [(s.value, presentation.STATUS_TEXTS[s]) for s in JobStatus],
               "kinds": list(KIND_TITLES.items()), "models": [(m.id, m.title) for m in catalog().all()]}
    try:
        filters = presentation.Filters.from_query(request.GET)
        page = int(request.GET.get("page") or 1)
        if not 1 <= page <= presentation.MAX_PAGE:
            raise ValueError
    except ValueError as exc:  # BadFilter is a ValueError that says what was wrong
        bad_filter = str(exc) if isinstance(exc, presentation.BadFilter) else (
            f"page must be a whole number from 1 to {presentation.MAX_PAGE}.")
        return render(request, "videogen/gallery.html", {**context, "filters": presentation.Filters(),
                                                         "bad_filter": bad_filter, "items": []}, status=400)
    items, more = presentation.gallery_items(request.user, filters, page)
    query = {k: v for k, v in (("status", filters.status), ("model", filters.model), ("kind", filters.kind)) if v}
    return render(request, "videogen/gallery.html", {
        **context, "filters": filters, "items": items, "page": page, "more": more,
        "query": urlencode(query)})


@require_GET
def gallery_item(request, item_id):
    """One card of the gallery (the page refreshes a card with it when its job changes)."""
    item = presentation.find_item(request.user, item_id)
    if item is None:
        raise Http404("No such job or video of yours.")
    return render(request, "videogen/_gallery_item.html", {"item": item})
