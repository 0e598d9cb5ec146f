"""``manage.py download_videos``: fetch the videos of jobs the provider finished but whose
video is not here yet (a download that kept failing), now."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from videogen.jobs import tasks
from videogen.models import Job, JobStatus


class Command(BaseCommand):
    help = "Download the videos of jobs the provider has finished but the studio has not fetched yet."

    def handle(self, *args, **options) -> None:
        jobs = list(Job.objects.filter(status__in=[JobStatus.SUBMITTED, JobStatus.RUNNING],
                                       provider_completed_at__isnull=False).order_by("created_at"))
        if not jobs:
            self.stdout.write("Nothing to download: every finished job has its video.")
            return
        fetched = 0
        for job in jobs:
            tasks.fetch_video(str(job.pk))
            job.refresh_from_db()
            ok = job.status == JobStatus.COMPLETED
            fetched += ok
            self.stdout.write(f"{job.pk} {job.model_id}: {'downloaded' if ok else job.status + ' ' + job.error_message}")
        self.stdout.write(f"downloaded {fetched} of {len(jobs)}")
        if fetched < len(jobs):
            raise SystemExit(1)
