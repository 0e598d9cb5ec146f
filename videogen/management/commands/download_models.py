"""``manage.py download_models``: the Krea pipeline's weights, fetched or imported, and verified.

::

    python manage.py download_models                   # fetch what is missing from the Hugging Face Hub
    python manage.py download_models --check           # verify what is here: size and SHA-256 of each file
    python manage.py download_models --check --quick   # sizes only (seconds, not minutes)
    python manage.py download_models --from-dir DIR    # import files copied from elsewhere, verified
    python manage.py download_models --list            # what is needed, from where, and what is here

Files go to ``STUDIO_MODELS_DIR/krea-realtime-video`` (``--models-dir`` to choose another
root) in the layout ``videogen.pipeline.weights.ModelLayout`` reads, with a ``manifest.json``
of their sizes and SHA-256. What is verified against what is in ``videogen/model_files.py``
and docs/pipeline.md. Without the network (``HF_HUB_OFFLINE=1``, or the hub does not answer)
it names what is missing and how to import it, and exits with status 1. Any file missing,
corrupted or not verifiable exits with status 1 too.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from videogen.local import model_files
from videogen.local.model_files import COMPONENTS, Manifest, ModelFilesError, Offline


class Command(BaseCommand):
    help = "Download (or import with --from-dir) and verify the local Krea pipeline's weights."

    def add_arguments(self, parser):
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--check", action="store_true",
                          help="only verify the files here against their manifest (size and SHA-256)")
        mode.add_argument("--from-dir", metavar="DIR",
                          help="import the files from DIR (copied, or hard-linked when on the same filesystem)")
        mode.add_argument("--list", action="store_true", help="list the files, their sources and what is here")
        parser.add_argument("--quick", action="store_true", help="with --check: compare sizes only")
        parser.add_argument("--manifest", metavar="FILE",
                            help="with --from-dir: the manifest to verify against (default DIR/manifest.json)")
        parser.add_argument("--allow-unverified", action="store_true",
                            help="with --from-dir: import files no manifest knows (structure checked, recorded "
                                 "as unverified)")
        parser.add_argument("--copy", action="store_true", help="with --from-dir: copy even where a hard link works")
        parser.add_argument("--revision", default="main", help="the hub revision to fetch (default main)")
        parser.add_argument("--models-dir", metavar="DIR", help="the models root (default STUDIO_MODELS_DIR)")

    def handle(self, *args, **options):
        models_dir = Path(options["models_dir"] or settings.MODELS_DIR)
        for flag, allowed in (("quick", "check"), ("manifest", "from_dir"), ("allow_unverified", "from_dir"),
                              ("copy", "from_dir")):
            if options[flag] and not options[allowed]:
                raise CommandError(f"--{flag.replace('_', '-')} goes with --{allowed.replace('_', '-')}")
        try:
            if options["list"]:
                return self._list(models_dir)
            if options["check"]:
                self.stdout.write(f"checking {model_files.model_dir(models_dir)}"
                                  + (" (sizes only)" if options["quick"] else ""))
                outcomes = model_files.check(models_dir, quick=options["quick"], say=self.stdout.write)
                return self._finish(outcomes, "verified")
            if options["from_dir"]:
                reference = None
                if options["manifest"]:
                    try:
                        reference = Manifest.read(Path(options["manifest"]))
                    except FileNotFoundError:
                        raise CommandError(f"--manifest {options['manifest']}: no such file") from None
                self.stdout.write(f"importing from {options['from_dir']} into {model_files.model_dir(models_dir)}")
                outcomes = model_files.import_dir(models_dir, Path(options["from_dir"]), reference=reference,
                                                  allow_unverified=options["allow_unverified"],
                                                  link=not options["copy"], say=self.stdout.write)
                return self._finish(outcomes, "imported and verified")
            return self._download(models_dir, options["revision"])
        except Offline as exc:
            raise CommandError(self._offline_message(models_dir, str(exc))) from None
        except ModelFilesError as exc:
            raise CommandError(str(exc)) from None

    def _download(self, models_dir: Path, revision: str) -> None:
        root = model_files.model_dir(models_dir)
        missing = model_files.missing_components(models_dir)
        if not missing and (root / model_files.MANIFEST_NAME).is_file():
            outcomes = model_files.check(models_dir, quick=True)
            if all(o.ok for o in outcomes):
                self.stdout.write(f"every file is in {root} and matches its manifest by size "
                                  "(download_models --check also compares SHA-256)")
                return
        reason = model_files.hub_offline_reason()
        if reason:
            raise Offline(reason)
        self.stdout.write(f"fetching the Krea pipeline's files from the Hugging Face Hub into {root}")
        hub = model_files.Hub(endpoint=os.environ.get("HF_ENDPOINT") or None,
                              token=os.environ.get("HF_TOKEN") or None)
        outcomes = model_files.download(models_dir, hub, revision=revision, say=self.stdout.write)
        self._finish(outcomes, "downloaded and verified")

    def _list(self, models_dir: Path) -> None:
        root = model_files.model_dir(models_dir)
        self.stdout.write(f"the local Krea pipeline's files, under {root}:")
        for component in COMPONENTS:
            here = "here" if model_files.present(models_dir, component) else "MISSING"
            self.stdout.write(f"  {here:<8} {component.path:<40} {component.what}, {component.approx_size}, "
                              f"from huggingface.co/{component.repo}")
        manifest = root / model_files.MANIFEST_NAME
        self.stdout.write(f"manifest: {manifest if manifest.is_file() else 'none yet'}")

    def _finish(self, outcomes: list[model_files.Outcome], done: str) -> None:
        for outcome in outcomes:
            self.stdout.write(f"  {'ok' if outcome.ok else 'FAILED':<7} {outcome.path}: {outcome.message}")
        failed = [o for o in outcomes if not o.ok]
        if failed:
            raise CommandError(f"{len(failed)} of {len(outcomes)} files missing or failed verification: "
                               + ", ".join(o.path for o in failed))
        self.stdout.write(f"all {len(outcomes)} files {done}")

    @staticmethod
    def _offline_message(models_dir: Path, reason: str) -> str:
        root = model_files.model_dir(models_dir)
        missing = model_files.missing_components(models_dir)
        listing = model_files.describe_missing(missing, models_dir) if missing else \
            f"the files in {root} are there but have no verified manifest yet"
        return (f"cannot reach the Hugging Face Hub ({reason}).\n{listing}\n"
                "To install them without the network here: run `python manage.py download_models` where the hub "
                f"can be reached (it writes the files and a manifest.json of their sizes and SHA-256 into "
                "MODELS_DIR/krea-realtime-video), copy that folder here, and import it, verified:\n"
                "  python manage.py download_models --from-dir /path/to/krea-realtime-video")
