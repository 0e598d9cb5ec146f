"""Errors are the studio's own pages (templates/404.html, 403.html, 500.html): styled, with the
navigation and somewhere to go, never Django's bare "Not Found". DEBUG is off here, as in
production (pytest-django turns it off; studio/settings.py defaults it to False).
tests/test_browser.py looks at the 404 in chromium."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.test import Client, RequestFactory
from django.urls import include, path
from django.views import defaults

pytestmark = pytest.mark.django_db

NAV = ["Home", "Video Generation", "Realtime", "Gallery"]


def boom(request):
    raise RuntimeError("a bug in a view")


# For the 500 test: the studio's own addresses plus one view that fails (@pytest.mark.urls).
urlpatterns = [path("boom/", boom), path("", include(settings.ROOT_URLCONF))]


def header_nav(html: str) -> list[str]:
    nav = re.search(r'<nav class="nav" aria-label="Studio">(.*?)</nav>', html, re.S)
    return re.findall(r">([^<]+)</a>", nav.group(1)) if nav else []


def where_to_go(html: str) -> list[str]:
    nav = re.search(r'<nav class="error-links" aria-label="Where to go">(.*?)</nav>', html, re.S)
    return re.findall(r'href="([^"]+)"', nav.group(1))


def styled(html: str) -> bool:
    return '<link rel="stylesheet" href="/static/studio/studio.css">' in html and 'class="topbar"' in html


def test_an_address_that_is_not_here_is_the_studios_404_with_the_navigation(logged_in):
    response = logged_in.get("/no-such-page/")
    assert response.status_code == 404
    assert [t.name for t in response.templates][0] == "404.html"
    html = response.content.decode()
    assert styled(html) and "<title>Not found · Studio</title>" in html
    assert header_nav(html) == NAV
    assert "There is no page at <code>/no-such-page/</code> in this studio." in html
    assert where_to_go(html) == ["/", "/video-generation/", "/realtime/", "/gallery/"]
    assert "Resolver404" not in html and "Not Found</h1>" not in html


def test_a_404_raised_by_a_view_says_its_own_words(logged_in):
    response = logged_in.get("/video-generation/?model=nope/nope")
    assert response.status_code == 404
    html = response.content.decode()
    assert styled(html) and header_nav(html) == NAV
    assert '<p class="lead">No model &#x27;nope/nope&#x27; on this page.</p>' in html
    assert "Asked for: <code>/video-generation/</code>" in html


def test_someone_not_logged_in_gets_the_404_without_the_navigation_but_with_the_way_home(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert styled(html) and header_nav(html) == [] and where_to_go(html)[0] == "/"


def test_the_403_page_names_the_refusal_and_keeps_the_navigation(user):
    request = RequestFactory().get("/gallery/")
    request.user = user
    response = defaults.permission_denied(request, PermissionDenied("That recording is not yours."))
    assert response.status_code == 403
    html = response.content.decode()
    assert styled(html) and "<title>Not allowed · Studio</title>" in html and header_nav(html) == NAV
    assert '<p class="lead">That recording is not yours.</p>' in html


@pytest.mark.urls("tests.test_error_pages")
def test_a_failing_view_gets_the_500_page_rendered_without_any_context(user):
    client = Client(raise_request_exception=False)
    client.force_login(user)
    response = client.get("/boom/")
    assert response.status_code == 500
    html = response.content.decode()
    assert styled(html) and "<title>Something went wrong · Studio</title>" in html
    assert "a bug in a view" not in html and "Traceback" not in html  # nothing of the failure leaks
    assert header_nav(html) == []  # no request, so no user: the links below stand in for it
    assert where_to_go(html) == ["/", "/video-generation/", "/realtime/", "/gallery/"]
