"""The vendored front-end libraries and fonts are the registry's files, whole, with their
licences (static/vendor/vendor.json, written by scripts/vendor_js.py); no network needed."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from tests.support.processes import ROOT

VENDOR = ROOT / "static" / "vendor"
MANIFEST = json.loads((VENDOR / "vendor.json").read_text())
IMPORT = re.compile(r"""(?:import|export)\s[^;]*?from\s+["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']""")
CSS_URL = re.compile(r"""url\(\s*["']?([^"')]+)["']?\s*\)""")
CODE = (".mjs", ".js", ".css")


def test_the_manifest_pins_what_scripts_vendor_js_pins():
    from scripts.vendor_js import PINNED

    assert {name: (entry["version"], entry["integrity"], entry["dir"], entry["entries"])
            for name, entry in MANIFEST.items()} == \
        {name: (pin["version"], pin["integrity"], pin["dir"], pin["entries"]) for name, pin in PINNED.items()}


def references(path: str, text: str) -> list[str]:
    """What a module imports or a stylesheet loads (``url()``), as written."""
    if path.endswith(".css"):
        return [url for url in CSS_URL.findall(text) if not url.startswith("data:")]
    return [m.group(1) or m.group(2) for m in IMPORT.finditer(text)]


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_each_vendored_package_is_whole_unchanged_and_licensed(name):
    entry = MANIFEST[name]
    folder = VENDOR / entry["dir"]
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert present == set(entry["files"]), "files added or missing: run scripts/vendor_js.py"
    for path, digest in entry["files"].items():
        assert hashlib.sha256((folder / path).read_bytes()).hexdigest() == digest, f"{path} was edited"
    licence = (folder / "LICENSE").read_text()
    assert "Permission" in licence or "Open Font License" in licence
    package = json.loads((folder / "package.json").read_text())
    assert (package["name"], package["version"], package["license"]) == (name, entry["version"], entry["license"])
    # Everything an entry pulls in is here (a browser would 404 on a missing module or font).
    seen, queue = set(), list(entry["entries"])
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        if not path.endswith(CODE):
            continue
        for target in references(path, (folder / path).read_text()):
            assert target.startswith("."), f"{path} loads a bare specifier or an address {target!r}"
            resolved = (folder / path).parent.joinpath(target).resolve().relative_to(folder.resolve()).as_posix()
            assert resolved in entry["files"], f"{path} loads {target}, which is not vendored"
            queue.append(resolved)
    assert len(seen) > len(entry["entries"])


def test_the_font_is_the_sil_open_font_licence_and_each_weight_has_its_files():
    entry = MANIFEST["@fontsource/jetbrains-mono"]
    folder = VENDOR / entry["dir"]
    assert entry["license"] == "OFL-1.1"
    assert "SIL Open Font License, Version 1.1" in (folder / "LICENSE").read_text()
    for weight in (400, 700):
        css = (folder / f"latin-{weight}.css").read_text()
        assert "font-family: 'JetBrains Mono'" in css and f"font-weight: {weight}" in css
        for kind in ("woff2", "woff"):
            font = (folder / "files" / f"jetbrains-mono-latin-{weight}-normal.{kind}").read_bytes()
            assert font[:4] == (b"wOF2" if kind == "woff2" else b"wOFF")
