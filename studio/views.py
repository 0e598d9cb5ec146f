"""Pages of the studio itself."""

from django.shortcuts import render

from model_control import backends
from model_control.catalog import catalog


def home(request):
    """What the studio can do here and now: each backend and whether it is configured."""
    models = catalog().all()
    rows: dict[str, dict] = {}
    for model in models:
        entry = rows.setdefault(model.backend, {"name": model.backend_title, "models": [],
                                                    "missing": backends.missing(model)})
        entry["models"].append(model)
    return render(request, "home.html", {"backends": rows.values()})
