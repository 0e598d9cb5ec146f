"""``manage.py import_gallery``: gallery folders from before jobs become ``Video`` rows."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from videogen.gallery.folders import import_folders


class Command(BaseCommand):
    help = "Import MP4s (and their JSON sidecars) from MEDIA_ROOT/videos/<user id>/ into the gallery."

    def handle(self, *args, **options) -> None:
        counts = import_folders()
        self.stdout.write(f"imported {counts['imported']}, already known {counts['known']}, "
                          f"skipped {counts['skipped']} (unreadable)")
