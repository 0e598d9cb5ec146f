"""The code's shape, enforced: the layers (import-linter contracts in pyproject.toml), no
import cycles, no branch on a backend's name outside the backend modules, and each limit
defined once (what the REST API describes, what the realtime socket accepts and what the
pipeline is built for agree)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("studio", "videogen", "model_control", "runtime")
# The modules that are backends: the only places that may know a backend by its name (with
# the port and the registry beside them in model_control/backends/).
BACKEND_MODULES = {"model_control/backends/fal_queue.py", "model_control/backends/tenstorrent.py",
                   "model_control/backends/fal_realtime.py", "videogen/local/backend.py"}


def test_the_import_linter_contracts_hold():
    result = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan), largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    def visit(module: str) -> None:
        index[module] = low[module] = counter[0]
        counter[0] += 1
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return sorted(found, key=len, reverse=True)


def test_no_module_imports_itself_round_a_circle():
    """Imports inside functions count too: a circle hidden in a function is still a circle
    (those only a type checker reads do not)."""
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False, exclude_type_checking_imports=True)
    assert _cycles(graph) == []


def _sources() -> list[Path]:
    return [p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts]


def test_no_code_outside_the_backend_modules_branches_on_a_backend_name():
    names = "|".join(re.escape(n) for n in ("fal", "fal-realtime", "tenstorrent", "local"))
    branch = re.compile(rf"""backend\w*\s*(==|!=)|(==|!=)\s*\w*\.?backend\b|backend=['"]({names})['"]|"""
                        rf"""['"]({names})['"]\s*(==|!=|in\b)|\.backend\s+in\s""")
    found = []
    for path in _sources():
        relative = path.relative_to(ROOT).as_posix()
        if relative in BACKEND_MODULES or relative.startswith(("videogen/pipeline/", "model_control/backends/")):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if branch.search(code):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert found == []


@pytest.mark.django_db
def test_each_realtime_limit_is_one_number_for_the_api_the_socket_and_the_pipeline(api):
    """The local backend: /api/models/ describes it, /ws/realtime/'s validation applies it and
    the pipeline's config is built for it, from one definition each."""
    from model_control import backends
    from videogen.local import offline
    from videogen.pipeline.config import KREA_14B_CONFIG
    from videogen.realtime import protocol

    limits = backends.stream_backend("local").limits
    described = {i["name"]: i for i in api.get("/api/models/local/krea-realtime/").json()["inputs"]}
    config = KREA_14B_CONFIG
    # the size: a multiple of the VAE's 8 x the DiT's patch, Krea's 832x480 by default
    assert described["resolution"]["step"] == limits.size_multiple == config.spatial_factor
    assert described["resolution"]["default"] == f"{config.width}x{config.height}"
    started = protocol.parse_params({"prompt": "x", "width": 840}, limits)
    assert (started.width, started.height) == (848, config.height)
    # frames: a block's frames, the first block's, and how many blocks a stream may have
    first, later = offline.frames_per_block(config)
    assert (limits.first_block_frames, limits.block_frames) == (first, later)
    assert described["num_frames"]["minimum"] == first
    assert described["num_frames"]["maximum"] == first + later * (limits.max_blocks - 1)
    assert protocol.parse_params({"prompt": "x", "num_blocks": limits.max_blocks}, limits).num_blocks == limits.max_blocks
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_params({"prompt": "x", "num_blocks": limits.max_blocks + 1}, limits)
    # steps, seed and prompt
    assert described["steps"]["maximum"] == limits.max_steps == offline.MAX_STEPS
    assert described["steps"]["default"] == limits.default_steps == len(config.denoising_steps)
    for message in ({"num_denoising_steps": limits.max_steps + 1}, {"seed": limits.max_seed + 1},
                    {"prompt": "x" * (limits.max_prompt + 1)}):
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_params({"prompt": "x", **message}, limits)
    assert described["seed"]["maximum"] == limits.max_seed
    assert described["prompt"]["maximum"] == limits.max_prompt
    with pytest.raises(offline.OfflineError):
        offline.denoising_steps(limits.max_steps + 1)


@pytest.mark.django_db
def test_the_offline_model_takes_what_the_offline_planner_takes(api):
    from videogen.local import offline
    from videogen.pipeline.config import KREA_14B_CONFIG

    described = {i["name"]: i for i in api.get("/api/models/local/krea-offline/").json()["inputs"]}
    assert described["seed"]["maximum"] == offline.MAX_SEED
    assert described["prompt"]["maximum"] == offline.MAX_PROMPT
    assert described["num_frames"]["maximum"] == offline.frames_for_blocks(offline.MAX_BLOCKS, KREA_14B_CONFIG)
    assert described["steps"]["maximum"] == offline.MAX_STEPS
