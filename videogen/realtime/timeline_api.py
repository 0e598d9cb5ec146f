"""``GET /api/realtime/sessions/<id>/timeline``: a recording's timeline, to replay it here or
load it into Daydream Scope.

``?as=`` ``scope`` (Scope's timeline: prompts in seconds of the recording at its own
16 fps, weighted prompts, transitions, resolution, seed, denoising steps, the attention
bias), ``scope-workflow`` (Scope's ``.scope-workflow.json``: its Krea pipeline with the
timeline), or ``studio`` (the session's own, block by block, what ``manage.py generate_video
--timeline`` replays exactly). Answered as a JSON download; owner only. (Not ``?format=``:
DRF reads that one as the answer's renderer.)
"""

from __future__ import annotations

from django.http import Http404, JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.views import APIView

from model_control.openapi import error_responses
from videogen.models import RealtimeSession
from videogen.pipeline.scope import export_scope_timeline, export_scope_workflow

FORMATS = ("scope", "scope-workflow", "studio")


class RealtimeSessionTimelineView(APIView):
    @extend_schema(summary="A realtime recording's timeline (Daydream Scope's formats or Studio's)",
                   operation_id="api_realtime_session_timeline",
                   parameters=[OpenApiParameter("as", str, enum=list(FORMATS), description="default: scope")],
                   responses={(200, "application/json"): OpenApiTypes.OBJECT, **error_responses(400, 401, 404)})
    def get(self, request: Request, session_id: str) -> JsonResponse:
        wanted = request.query_params.get("as", "scope")
        if wanted not in FORMATS:
            raise ValidationError({"as": f"one of {', '.join(FORMATS)}; got {wanted!r}"})
        session = RealtimeSession.objects.filter(owner=request.user, pk=session_id).first()
        if session is None:
            raise Http404("No such realtime session of yours.")
        if not session.timeline:
            raise Http404("This session recorded no timeline (it made no frames).")
        name = f"studio-{str(session.pk)[:8]}"
        if wanted == "scope":
            body, file_name = export_scope_timeline(session.timeline), f"{name}.timeline.json"
        elif wanted == "scope-workflow":
            body = export_scope_workflow(session.timeline, name=name)
            file_name = f"{name}.scope-workflow.json"
        else:
            body, file_name = session.timeline, f"{name}.studio-timeline.json"
        response = JsonResponse(body, json_dumps_params={"indent": 2})
        response["Content-Disposition"] = f'attachment; filename="{file_name}"'
        return response
