"""Template filters of the studio's pages: dates a person reads at a glance, money, lengths."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()


def ago(moment: datetime, now: datetime | None = None) -> str:
    """``just now``, ``3 min ago``, ``5 h ago``, ``yesterday``, ``4 days ago``, then the date."""
    now = now or timezone.now()
    seconds = (now - moment).total_seconds()
    if seconds < 45:
        return "just now"
    if seconds < 3600:
        return f"{max(round(seconds / 60), 1)} min ago"
    if seconds < 86400:
        return f"{round(seconds / 3600)} h ago"
    days = (timezone.localdate(now) - timezone.localdate(moment)).days
    if days <= 1:
        return "yesterday"
    if days < 7:
        return f"{days} days ago"
    local = timezone.localtime(moment)
    return f"{local.day} {local:%b %Y}"


@register.filter
def when(moment: datetime | None) -> str:
    """A ``<time>`` saying how long ago, the exact moment in its title (pages localize both)."""
    if moment is None:
        return ""
    local = timezone.localtime(moment)
    return format_html('<time datetime="{}" title="{}" data-relative>{}</time>', moment.isoformat(),
                       f"{local:%Y-%m-%d %H:%M} {local.tzname()}", ago(moment))


@register.filter
def money(amount: Decimal | None) -> str:
    if amount is None:
        return ""
    return f"${Decimal(amount).quantize(Decimal('0.01'))}"


@register.filter
def seconds(value: float | None) -> str:
    """``8.0 s``, ``1:05`` for a minute or more."""
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f} s"
    whole = round(value)
    return f"{whole // 60}:{whole % 60:02d}"
