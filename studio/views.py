"""Pages of the studio itself: home, the API token page, logout, the favicon."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django.views.generic import RedirectView
from rest_framework.authtoken.models import Token

from model_control import backends
from model_control.backends import catalog


def home(request):
    """The catalog as cards (configured models first) and each backend's state: ready, not
    ready (and what it misses), or running a demo in place of its models (and how to get them)."""
    cards, states = [], {}
    for model in catalog().all():
        owner = backends.backend_of(model)
        missing = owner.missing()
        demo = owner.demo() if missing is None else None
        href = reverse("videogen:realtime") if model.realtime else \
            f"{reverse('videogen:generate')}?model={model.id}"
        cards.append({"model": model, "missing": missing, "demo": demo, "price": model.price_of({}), "href": href})
        state = states.setdefault(model.backend, {"name": model.backend_title, "count": 0, "missing": missing,
                                                  "demo": demo})
        state["count"] += 1
    cards.sort(key=lambda card: card["missing"] is not None)  # stable: catalog order within each
    order = [b.name for b in backends.backends()]
    backend_rows = [states[key] for key in sorted(states, key=lambda k: (states[k]["missing"] is not None,
                                                                         order.index(k)))]
    ready = sum(1 for card in cards if card["missing"] is None)
    demos = sum(1 for card in cards if card["demo"])
    return render(request, "home.html", {"cards": cards, "ready": ready, "demos": demos, "backends": backend_rows})


@require_http_methods(["GET", "POST"])
def account_token(request):
    """The user's REST API token (``Authorization: Token <key>``); POST makes a new one."""
    if request.method == "POST":
        with transaction.atomic():
            replaced = Token.objects.filter(user=request.user).delete()[0] > 0
            Token.objects.create(user=request.user)
        messages.success(request, "A new token was made; the old one no longer works." if replaced
                         else "Your API token was made.")
        return redirect("account-token")
    token = Token.objects.filter(user=request.user).first()
    return render(request, "account/token.html", {"token": token})


class LogoutView(auth_views.LogoutView):
    """Django's logout (POST only), saying so on the login page it leads to."""

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You are logged out.")
        return response


# Browsers ask for /favicon.ico on their own; every page also links the SVG.
favicon = login_not_required(RedirectView.as_view(url=static("studio/favicon.svg"), permanent=True))
