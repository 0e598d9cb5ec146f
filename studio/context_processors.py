"""The studio's navigation, shared by every page."""

from __future__ import annotations

from django.urls import reverse

# Other studio capabilities appear in the navigation, disabled, until they exist.
_NAV = [
    ("Home", "home", True),
    ("Video Generation", "videogen:generate", True),
    ("Realtime", "videogen:realtime", True),
    ("Gallery", "videogen:gallery", True),
    ("Chat", None, False),
    ("Image Generation", None, False),
    ("Speech", None, False),
]


def navigation(request) -> dict:
    current = request.path
    items = []
    for title, url_name, enabled in _NAV:
        href = reverse(url_name) if url_name else None
        active = bool(href) and (current == href if href == "/" else current.startswith(href))
        items.append({"title": title, "href": href, "enabled": enabled, "active": active})
    return {"studio_nav": items}
