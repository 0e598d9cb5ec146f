"""Daydream Scope's own checks of an imported timeline and workflow, transcribed from its
frontend and server, so a test can ask "would Scope load this file, and play every setting of
it?" without running Scope. docs/pipeline.md ("Daydream Scope files") states the rules and
names where in Scope each was read: the timeline importer and the settings it merges, the
playback that submits each entry to Scope's server, the workflow import dialog, the
workflow resolver and the frontend's settings mapping.

Each function returns the problems found (an empty list: Scope loads it all). Where Scope
itself would skip a value silently (a mapped param of the wrong type), that is a problem too:
the point of an export is that every setting arrives.
"""

from __future__ import annotations

import json
from typing import Any

NUMBER = (int, float)


def _number(value: Any) -> bool:
    return isinstance(value, NUMBER) and not isinstance(value, bool)


def _prompt_items(items: Any, where: str) -> list[str]:
    """Scope's PromptItem: ``text`` a string, ``weight`` a number >= 0 (schema.py)."""
    if not isinstance(items, list) or not items:
        return [f"{where}: prompts must be a non-empty list"]
    problems = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            problems.append(f"{where}: a prompt needs a text")
        elif not _number(item.get("weight", 1.0)) or item.get("weight", 1.0) < 0:
            problems.append(f"{where}: a prompt weight must be a number >= 0")
    return problems


def _transition(steps: Any, method: Any, where: str) -> list[str]:
    """PromptTransition: num_steps an int >= 0, temporal_interpolation_method linear|slerp."""
    problems = []
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 0):
        problems.append(f"{where}: transition steps must be an integer >= 0")
    if method is not None and method not in ("linear", "slerp"):
        problems.append(f"{where}: temporal interpolation must be linear or slerp")
    return problems


def _playback(spans: list[tuple[Any, Any]], where: str) -> list[str]:
    """useTimelinePlayback: numeric start/end; the first entry holding the playhead plays."""
    problems = []
    previous_end = None
    for i, (start, end) in enumerate(spans, 1):
        if not _number(start) or not _number(end):
            problems.append(f"{where} {i}: start and end must be numbers (seconds)")
            continue
        if end <= start:
            problems.append(f"{where} {i}: empty (Scope drops zero-length boxes)")
        if previous_end is not None and start < previous_end:
            problems.append(f"{where} {i}: starts before the previous one ends")
        previous_end = end
    return problems


def timeline_problems(data: Any) -> list[str]:
    """What keeps Scope's timeline importer from loading ``data`` and every setting in it."""
    try:
        data = json.loads(json.dumps(data))  # JSON.parse of what would be the file
    except (TypeError, ValueError) as exc:
        return [f"not JSON: {exc}"]
    if not isinstance(data, dict) or not isinstance(data.get("prompts"), list) or not data["prompts"]:
        return ["Invalid timeline file format"]
    problems = []
    spans = []
    for i, entry in enumerate(data["prompts"], 1):
        if not isinstance(entry, dict):
            problems.append(f"prompt {i}: not an object")
            continue
        if not entry.get("prompts") and not entry.get("text"):
            problems.append(f"prompt {i}: neither prompts nor text")
        if entry.get("prompts"):
            problems += _prompt_items(entry["prompts"], f"prompt {i}")
        problems += _transition(entry.get("transitionSteps"), entry.get("temporalInterpolationMethod"),
                                f"prompt {i}")
        spans.append((entry.get("startTime"), entry.get("endTime")))
    problems += _playback(spans, "prompt")
    settings = data.get("settings")
    if settings is None:
        return problems
    if not isinstance(settings, dict):
        return [*problems, "settings must be an object"]
    # Scope's SettingsState types (docs/pipeline.md); updateSettings takes them as they are.
    if not isinstance(settings.get("pipelineId"), str):
        problems.append("settings.pipelineId must be a string")
    resolution = settings.get("resolution")
    if resolution is not None and not (isinstance(resolution, dict) and _number(resolution.get("height"))
                                       and _number(resolution.get("width"))):
        problems.append("settings.resolution must be {height, width} numbers")
    checks = {
        "seed": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "denoisingSteps": lambda v: isinstance(v, list) and v and all(isinstance(s, int) for s in v),
        "noiseScale": lambda v: _number(v) and 0 <= v <= 1,
        "noiseController": lambda v: isinstance(v, bool),
        "manageCache": lambda v: isinstance(v, bool),
        "quantization": lambda v: v in (None, "fp8_e4m3fn"),
        "kvCacheAttentionBias": lambda v: _number(v) and 0.01 <= v <= 1.0,  # server: ge 0.01, le 1.0
        "loras": lambda v: isinstance(v, list),
        "inputMode": lambda v: v in ("text", "video"),
    }
    for key, ok in checks.items():
        if key in settings and not ok(settings[key]):
            problems.append(f"settings.{key} = {settings[key]!r} is not what Scope takes")
    return problems


# WorkflowImportDialog + resolve.py + workflowToSettings's PARAM_MAPPINGS types.
_PARAM_TYPES = {
    "noise_scale": _number,
    "noise_controller": lambda v: isinstance(v, bool),
    "manage_cache": lambda v: isinstance(v, bool),
    "kv_cache_attention_bias": lambda v: _number(v) and 0.01 <= v <= 1.0,
    "vace_enabled": lambda v: isinstance(v, bool),
    "vace_context_scale": _number,
    "vace_use_input_video": lambda v: isinstance(v, bool),
    "input_mode": lambda v: v in ("text", "video"),
    "height": _number,
    "width": _number,
    "denoising_step_list": lambda v: isinstance(v, list) and v and all(isinstance(s, int) for s in v),
    "base_seed": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
}


def workflow_problems(data: Any) -> list[str]:
    """What keeps Scope's workflow import from loading ``data`` and every setting in it."""
    try:
        data = json.loads(json.dumps(data))
    except (TypeError, ValueError) as exc:
        return [f"not JSON: {exc}"]
    if not isinstance(data, dict) or data.get("format") != "scope-workflow":
        return ["Not a Scope workflow file"]
    metadata, pipelines = data.get("metadata"), data.get("pipelines")
    if (not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str)
            or not isinstance(pipelines, list) or not pipelines):
        return ["Malformed workflow file: Missing required fields: metadata or pipelines"]
    problems = []
    if len(pipelines) > 150:
        problems.append("more than 150 nodes")
    for i, pipeline in enumerate(pipelines):
        where = f"pipelines[{i}]"
        if not isinstance(pipeline, dict) or not isinstance(pipeline.get("pipeline_id"), str) or not pipeline.get(
                "pipeline_id"):
            problems.append(f"{where}: pipeline_id must be a non-empty string")
            continue
        source = pipeline.get("source")
        if not isinstance(source, dict) or source.get("type") not in ("builtin", "pypi", "git", "local"):
            problems.append(f"{where}: source.type must be builtin, pypi, git or local")
        elif source.get("plugin_name") is not None and not source["plugin_name"]:
            problems.append(f"{where}: source.plugin_name must not be empty")
        loras = pipeline.get("loras")
        if not isinstance(loras, list) or len(loras) > 100 or not all(
                isinstance(lora, dict) and isinstance(lora.get("filename"), str) and len(lora["filename"]) <= 255
                for lora in loras):
            problems.append(f"{where}: loras must be a list of at most 100 {{filename}}")
        params = pipeline.get("params")
        if not isinstance(params, dict):
            problems.append(f"{where}: params must be an object")
            continue
        for key, ok in _PARAM_TYPES.items():
            if key in params and not ok(params[key]):
                problems.append(f"{where}.params.{key} = {params[key]!r} would be skipped by Scope")
    timeline = data.get("timeline")
    if timeline is not None:
        entries = timeline.get("entries") if isinstance(timeline, dict) else None
        if not isinstance(entries, list):
            problems.append("timeline must be {entries: [...]}")
        else:
            for i, entry in enumerate(entries, 1):
                problems += _prompt_items(entry.get("prompts"), f"timeline entry {i}")
                problems += _transition(entry.get("transition_steps"), entry.get("temporal_interpolation_method"),
                                        f"timeline entry {i}")
            problems += _playback([(e.get("start_time"), e.get("end_time")) for e in entries], "timeline entry")
    if data.get("prompts") is not None:
        problems += _prompt_items(data["prompts"], "prompts")
    problems += _transition(data.get("transition_steps"), data.get("temporal_interpolation_method"), "workflow")
    if data.get("interpolation_method") not in (None, "linear", "slerp"):
        problems.append("interpolation_method must be linear or slerp")
    return problems
