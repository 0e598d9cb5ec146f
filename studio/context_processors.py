"""The studio's navigation, shared by every page: only pages that exist and work."""

from __future__ import annotations

from django.urls import reverse

NAV = [
    ("Home", "home"),
    ("Video Generation", "videogen:generate"),
    ("Realtime", "videogen:realtime"),
    ("Gallery", "videogen:gallery"),
]


def navigation(request) -> dict:
    current = request.path
    items = []
    for title, url_name in NAV:
        href = reverse(url_name)
        active = current == href if href == "/" else current.startswith(href)
        items.append({"title": title, "href": href, "active": active})
    return {"studio_nav": items}
