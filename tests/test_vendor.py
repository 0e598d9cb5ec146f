"""The vendored front-end libraries are the registry's files, whole, with their licences
(static/vendor/vendor.json, written by scripts/vendor_js.py); no network needed."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from tests.support.processes import ROOT

VENDOR = ROOT / "static" / "vendor"
MANIFEST = json.loads((VENDOR / "vendor.json").read_text())
IMPORT = re.compile(r"""(?:import|export)\s[^;]*?from\s+["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']""")


def test_the_manifest_pins_what_scripts_vendor_js_pins():
    from scripts.vendor_js import PINNED

    assert {name: entry["version"] for name, entry in MANIFEST.items()} == \
        {name: pin["version"] for name, pin in PINNED.items()}
    assert {name: entry["integrity"] for name, entry in MANIFEST.items()} == \
        {name: pin["integrity"] for name, pin in PINNED.items()}


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_each_vendored_package_is_whole_unchanged_and_licensed(name):
    entry = MANIFEST[name]
    folder = VENDOR / entry["dir"]
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert present == set(entry["files"]), "files added or missing: run scripts/vendor_js.py"
    for path, digest in entry["files"].items():
        assert hashlib.sha256((folder / path).read_bytes()).hexdigest() == digest, f"{path} was edited"
    assert "Permission" in (folder / "LICENSE").read_text()
    package = json.loads((folder / "package.json").read_text())
    assert (package["name"], package["version"], package["license"]) == (name, entry["version"], entry["license"])
    # Every module the entry point pulls in is here (a browser would 404 on a missing one).
    seen, queue = set(), [entry["entry"]]
    while queue:
        module = queue.pop()
        if module in seen:
            continue
        seen.add(module)
        for match in IMPORT.finditer((folder / module).read_text()):
            target = match.group(1) or match.group(2)
            assert target.startswith("."), f"{module} imports a bare specifier {target!r}"
            resolved = (folder / module).parent.joinpath(target).resolve().relative_to(folder.resolve()).as_posix()
            assert resolved in entry["files"], f"{module} imports {target}, which is not vendored"
            queue.append(resolved)
    assert len(seen) > 5
