"""Vendor the pages' front-end libraries and fonts from the npm registry: pinned, verified, licensed.

    .venv/bin/python scripts/vendor_js.py           # fetch each pinned package and (re)write static/vendor/
    .venv/bin/python scripts/vendor_js.py --check   # fetch them and say whether static/vendor/ matches

Each package is fetched with ``npm pack <name>@<version>`` (the registry's tarball, checked
against the integrity pinned below), and only the files a page loads are copied, byte for
byte, with the package's LICENSE and package.json, under ``static/vendor/<dir>/``.
``entries`` are what the pages link (an ES module, or a stylesheet); everything they pull in
(``import``/``export ... from``, CSS ``url()``) must be among the copied files.
``static/vendor/vendor.json`` records the name, version, integrity, licence and the sha256 of
every copied file; tests/test_vendor.py checks the files against it without the network.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "static" / "vendor"
MANIFEST = VENDOR / "vendor.json"

# name -> version, the registry's integrity for that version's tarball, where it goes, what is copied.
PINNED = {
    "@msgpack/msgpack": {
        "version": "3.1.3",
        "integrity": "sha512-47XIizs9XZXvuJgoaJUIE2lFoID8ugvc0jzSHP+Ptfk8nTbnR8g788wv48N03Kx0UkAv559HWRQ3yzOgzlRNUA==",
        "dir": "msgpack",
        "files": ["LICENSE", "package.json", "dist.esm/*.mjs", "dist.esm/utils/*.mjs"],
        "entries": ["dist.esm/index.mjs"],
    },
    # The Realtime page's typeface (the seed app's): Latin, regular and bold, woff2 with woff
    # as the stylesheets' fallback. SIL Open Font License 1.1 (LICENSE beside the files).
    "@fontsource/jetbrains-mono": {
        "version": "5.3.0",
        "integrity": "sha512-fqDfB5I9f1p1TV486aUgB9t8zP84P0O1FtQR5Ol9vjwPy+S+EIGlVYm1cvj2W5shcZMTg2nZFdVMoH5wFu8a1A==",
        "dir": "jetbrains-mono",
        "files": ["LICENSE", "package.json", "latin-400.css", "latin-700.css",
                  "files/jetbrains-mono-latin-400-normal.woff*", "files/jetbrains-mono-latin-700-normal.woff*"],
        "entries": ["latin-400.css", "latin-700.css"],
    },
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(name: str, pin: dict, workdir: Path) -> dict[str, bytes]:
    """The package's files that are vendored, from the registry's tarball (integrity checked)."""
    out = subprocess.run(["npm", "pack", f"{name}@{pin['version']}", "--json", "--pack-destination", str(workdir)],
                         cwd=workdir, check=True, capture_output=True, text=True).stdout
    tarball = workdir / json.loads(out)[0]["filename"]
    algorithm, expected = pin["integrity"].split("-", 1)
    actual = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
    if actual != expected:
        raise SystemExit(f"{name}@{pin['version']}: the tarball's {algorithm} is {actual}, pinned {expected}")
    files: dict[str, bytes] = {}
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            path = member.name.removeprefix("package/")
            if member.isfile() and any(fnmatch.fnmatchcase(path, pattern) for pattern in pin["files"]):
                files[path] = archive.extractfile(member).read()
    missing = [path for path in ("LICENSE", *pin["entries"]) if path not in files]
    if missing:
        raise SystemExit(f"{name}@{pin['version']}: {', '.join(missing)} missing from the tarball")
    return dict(sorted(files.items()))


def manifest_entry(name: str, pin: dict, files: dict[str, bytes]) -> dict:
    package = json.loads(files["package.json"])
    return {"version": pin["version"], "integrity": pin["integrity"], "license": package.get("license"),
            "dir": pin["dir"], "entries": pin["entries"],
            "files": {path: sha256(data) for path, data in files.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare static/vendor/ with the registry; write nothing")
    args = parser.parse_args()
    manifest: dict[str, dict] = {}
    differences: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, pin in PINNED.items():
            files = fetch(name, pin, Path(tmp))
            manifest[name] = manifest_entry(name, pin, files)
            target = VENDOR / pin["dir"]
            for path, data in files.items():
                here = target / path
                if args.check:
                    if not here.is_file() or here.read_bytes() != data:
                        differences.append(f"{name}: {here.relative_to(ROOT)} differs from the registry's")
                else:
                    here.parent.mkdir(parents=True, exist_ok=True)
                    here.write_bytes(data)
            if target.is_dir():
                extra = [p for p in target.rglob("*") if p.is_file()
                         and p.relative_to(target).as_posix() not in files]
                differences += [f"{name}: {p.relative_to(ROOT)} is not in the package" for p in extra]
    text = json.dumps(manifest, indent=2) + "\n"
    if args.check:
        if MANIFEST.read_text() != text:
            differences.append(f"{MANIFEST.relative_to(ROOT)} is out of date")
        for line in differences:
            print(line)
        print("static/vendor/ matches the registry" if not differences else f"{len(differences)} differences")
        return 1 if differences else 0
    MANIFEST.write_text(text)
    for line in differences:
        print(f"warning: {line} (remove it)")
    print(f"wrote {MANIFEST.relative_to(ROOT)}: " + ", ".join(f"{n}@{p['version']}" for n, p in PINNED.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
