"""Daydream Scope's files, both ways: its timeline JSON and its ``scope-workflow`` file.

Current Scope imports only ``.scope-workflow.json`` files; its earlier releases imported (and
all of its published examples are) the timeline JSON that ``timeline.py`` reads. One entry
point reads any of them, and Studio's own block-index timelines::

    timeline, warnings = import_timeline(json.loads(text))   # ValueError if unreadable
    export_scope_timeline(timeline)                            # Scope's timeline JSON (dict)
    export_scope_workflow(timeline, name="fox")                # a .scope-workflow.json (dict)

``warnings`` names, one sentence each, what the file asks for that Studio cannot do (another
pipeline, LoRAs, quantization, slerp blending, video input...). The workflow format (docs/pipeline.md,
"Daydream Scope files", which also names where in Scope it was read) follows Scope's
frontend: the main pipeline's ``params`` carry the settings under Scope's pipeline parameter
names, and ``timeline.entries`` the prompts in seconds. Plain Python only, like timeline.py.
"""

from __future__ import annotations

from typing import Any

from .timeline import (
    DEFAULT_BLOCK_FRAMES,
    DEFAULT_KV_CACHE_ATTENTION_BIAS,
    DEFAULT_TRANSITION_STEPS,
    SCOPE_PIPELINE_ID,
    ScopeSettings,
    SecondsSpan,
    Timeline,
    check_pipeline_id,
    events_in_seconds,
    iso_now,
    method_or_default,
    read_block_frames,
    read_scope_params,
    read_seconds,
    scope_prompts,
    steps_or_default,
    timeline_from_seconds,
)

WORKFLOW_FORMAT = "scope-workflow"
WORKFLOW_FORMAT_VERSION = "1.0"
# The Scope release whose workflow schema Studio writes (Scope shows it as "Scope v...").
WORKFLOW_SCOPE_VERSION = "0.2.4"
# A workflow without a timeline plays its prompt live until stopped; offline it gets 5 s
# (7 blocks, offline generation's default length).
UNTIMED_SECONDS = 5.0
_WORKFLOW_KEYS = {"format", "format_version", "metadata", "pipelines", "nodes", "timeline", "min_scope_version",
                  "prompts", "interpolation_method", "transition_steps", "temporal_interpolation_method", "graph",
                  "events", "blockFrames"}
_ENTRY_KEYS = {"start_time", "end_time", "prompts", "transition_steps", "temporal_interpolation_method"}


def import_timeline(data: Any, *, block_frames: tuple[int, int] | None = None) -> tuple[Timeline, list[str]]:
    """A Scope workflow, a Scope timeline (seconds) or a Studio timeline (blocks) -> the
    :class:`Timeline` to replay and the warnings for what Studio cannot honour.
    ``block_frames``: (frames of a stream's first block, of every later block) of the pipeline
    that will replay it, to map seconds onto its blocks (default (9, 12)).
    ``ValueError`` (its message says what is wrong) when it is none of them."""
    if isinstance(data, dict) and "format" in data:
        if data["format"] != WORKFLOW_FORMAT:
            raise ValueError(f"format {data['format']!r} is not a Scope workflow ({WORKFLOW_FORMAT!r})")
        timeline = timeline_from_workflow(data, block_frames)
    else:
        timeline = Timeline.from_dict(data, block_frames)
    return timeline, list(timeline.warnings)


def export_scope_timeline(timeline: Timeline | dict[str, Any], *, exported_at: str | None = None) -> dict[str, Any]:
    """Scope's timeline JSON (seconds at 16 fps) of ``timeline`` (a :class:`Timeline` or any
    form :func:`import_timeline` reads, e.g. a session's recorded timeline)."""
    return _timeline(timeline).to_scope_dict(exported_at=exported_at)


def export_scope_workflow(timeline: Timeline | dict[str, Any], *, name: str,
                          created_at: str | None = None) -> dict[str, Any]:
    """A ``.scope-workflow.json`` of ``timeline``: Scope's Krea pipeline with the timeline's
    settings and its prompts in seconds. ``name`` is what Scope shows; ``created_at`` an ISO
    time (default now)."""
    tl = _timeline(timeline)
    entries = []
    for entry in tl.to_scope_dict(exported_at="")["prompts"]:
        entries.append({"start_time": entry["startTime"], "end_time": entry["endTime"], "prompts": entry["prompts"],
                        "transition_steps": entry["transitionSteps"],
                        "temporal_interpolation_method": entry["temporalInterpolationMethod"]})
    workflow: dict[str, Any] = {
        "format": WORKFLOW_FORMAT,
        "format_version": WORKFLOW_FORMAT_VERSION,
        "metadata": {"name": name, "created_at": created_at or iso_now(), "scope_version": WORKFLOW_SCOPE_VERSION},
        "pipelines": [{
            "pipeline_id": SCOPE_PIPELINE_ID,
            "pipeline_version": None,
            "source": {"type": "builtin"},
            "loras": [],
            "params": {
                "height": tl.height,
                "width": tl.width,
                "base_seed": tl.seed,
                "input_mode": "text",
                "denoising_step_list": list(tl.denoising_steps),
                "manage_cache": True,
                "quantization": None,
                "kv_cache_attention_bias": tl.params.get("kv_cache_attention_bias", DEFAULT_KV_CACHE_ATTENTION_BIAS),
            },
            "role": "main",
        }],
        "timeline": {"entries": entries} if entries else None,
        # Scope's defaults for what the entries do not say (its workflow default is slerp).
        "interpolation_method": "linear",
        "transition_steps": DEFAULT_TRANSITION_STEPS,
        "temporal_interpolation_method": "linear",
    }
    if entries:
        workflow["prompts"] = entries[0]["prompts"]  # what Scope's prompt box shows first
    if tl.events:
        clock = tl.clock()
        workflow["events"] = [{"time": clock.seconds(e["block"]), **{k: v for k, v in e.items() if k != "block"}}
                              for e in tl.events]
    workflow["blockFrames"] = list(tl.block_frames)  # Studio's: its blocks back exactly (Scope ignores it)
    return workflow


def _timeline(timeline: Timeline | dict[str, Any]) -> Timeline:
    if isinstance(timeline, Timeline):
        return timeline
    return import_timeline(timeline)[0]


def check_workflow(data: dict[str, Any]) -> None:
    """Scope's own checks of an imported workflow file (its import dialog), and what its
    resolver requires of each pipeline (docs/pipeline.md, "Daydream Scope files")."""
    if data.get("format") != WORKFLOW_FORMAT:
        raise ValueError(f"not a Scope workflow file (format must be {WORKFLOW_FORMAT!r})")
    metadata = data.get("metadata")
    pipelines = data.get("pipelines")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str) or not isinstance(
            pipelines, list) or not pipelines:
        raise ValueError("malformed workflow file: missing required fields: metadata or pipelines")
    for i, pipeline in enumerate(pipelines):
        if not isinstance(pipeline, dict) or not isinstance(pipeline.get("pipeline_id"), str) or not pipeline[
                "pipeline_id"]:
            raise ValueError(f"pipelines[{i}] needs a pipeline_id")
        if not isinstance(pipeline.get("params", {}), dict) or not isinstance(pipeline.get("loras", []), list):
            raise ValueError(f"pipelines[{i}]: params must be an object and loras a list")


def timeline_from_workflow(data: dict[str, Any], block_frames: tuple[int, int] | None = None) -> Timeline:
    """A ``scope-workflow`` file -> a :class:`Timeline` (its ``warnings`` filled), the way
    Scope's perform mode loads one: the pipeline with role "main" (or the first, in files
    without roles), its params and LoRAs, the timeline entries in seconds mapped onto blocks of
    ``block_frames`` (a file's own ``blockFrames`` first: Studio's exports carry theirs)."""
    check_workflow(data)
    warnings: list[str] = []
    for key in sorted(set(data) - _WORKFLOW_KEYS):
        warnings.append(f"{key}: not part of a Scope workflow Studio knows; ignored")
    pipelines = data["pipelines"]
    has_roles = any(p.get("role") for p in pipelines)
    main_index = next((i for i, p in enumerate(pipelines) if p.get("role") == "main"), 0) if has_roles else 0
    main = pipelines[main_index]
    where = f"pipelines[{main_index}]"
    check_pipeline_id(main["pipeline_id"], f"{where}.pipeline_id", warnings)
    others = [p["pipeline_id"] + (f" ({p['role']})" if p.get("role") else "")
              for i, p in enumerate(pipelines) if i != main_index]
    if others:
        warnings.append(f"pipelines {', '.join(others)}: Studio runs its one Krea pipeline only")
    if data.get("graph"):
        warnings.append("graph: Studio runs the main pipeline, not a graph")
    if data.get("nodes"):
        warnings.append(f"nodes ({', '.join(str(n.get('node_type_id')) for n in data['nodes'] if isinstance(n, dict))})"
                        ": Studio has no graph nodes")
    params = {key: (f"{where}.params.{key}", value) for key, value in main.get("params", {}).items()}
    if main.get("loras"):
        params["loras"] = (f"{where}.loras", main["loras"])
    settings: ScopeSettings = read_scope_params(params, warnings)
    transition = steps_or_default(data.get("transition_steps"), "transition_steps", DEFAULT_TRANSITION_STEPS)
    temporal = method_or_default(data.get("temporal_interpolation_method"), "temporal_interpolation_method", "slerp")
    interpolation = method_or_default(data.get("interpolation_method"), "interpolation_method", "linear")
    spans = _workflow_spans(data, warnings, transition, temporal)
    if "blockFrames" in data:
        block_frames = read_block_frames(data["blockFrames"], "blockFrames")
    return timeline_from_seconds(spans, settings, events_in_seconds(data.get("events")), warnings, interpolation,
                                 read_block_frames(block_frames or DEFAULT_BLOCK_FRAMES, "block_frames"))


def _workflow_spans(data: dict[str, Any], warnings: list[str], transition: int, temporal: str) -> list[SecondsSpan]:
    timeline = data.get("timeline")
    entries = timeline.get("entries") if isinstance(timeline, dict) else None
    if timeline is not None and not isinstance(entries, list):
        raise ValueError("timeline must be {\"entries\": [...]} or null")
    spans = []
    for i, entry in enumerate(entries or [], 1):
        label = f"timeline entry {i}"
        if not isinstance(entry, dict):
            raise ValueError(f"{label} is not a JSON object")
        for key in sorted(set(entry) - _ENTRY_KEYS):
            warnings.append(f"{label}: {key} is not a timeline field Studio knows; ignored")
        spans.append(SecondsSpan(
            label, read_seconds(entry.get("start_time"), f"{label} start_time"),
            read_seconds(entry.get("end_time"), f"{label} end_time"), scope_prompts(entry, label),
            steps_or_default(entry.get("transition_steps"), f"{label} transition_steps", transition),
            method_or_default(entry.get("temporal_interpolation_method"), f"{label} temporal_interpolation_method",
                              temporal)))
    if spans:
        return spans
    if not data.get("prompts"):
        raise ValueError("the workflow has neither a timeline nor prompts")
    warnings.append(f"the workflow has no timeline: its prompt plays for {UNTIMED_SECONDS:g} s "
                    "(ask for more blocks for a longer video)")
    return [SecondsSpan("prompts", 0.0, UNTIMED_SECONDS, scope_prompts(data, "the workflow's"), transition, temporal)]
