"""``/api/realtime/sessions/``: your realtime sessions (the tokens: ``videogen.realtime.token_api``)."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from model_control.openapi import error_responses
from videogen.models import RealtimeSession


def session_data(session: RealtimeSession) -> dict[str, Any]:
    return {"id": str(session.id), "backend": session.backend, "model_id": session.model_id,
            "status": session.status, "end_reason": session.end_reason or None, "params": session.params,
            "frames": session.frames,
            "dropped": session.dropped, "error_message": session.error_message or None,
            "timeline": session.timeline,
            "video": {"id": str(session.video_id), "url": f"/api/videos/{session.video_id}/file"}
            if session.video_id else None,
            "created_at": session.created_at, "started_at": session.started_at,
            "finished_at": session.finished_at}


class RealtimeSessionListView(APIView):
    @extend_schema(summary="Your realtime sessions, newest first (the last 100)", operation_id="api_realtime_sessions_list",
                   responses={200: OpenApiTypes.OBJECT, **error_responses(401)})
    def get(self, request: Request) -> Response:
        sessions = RealtimeSession.objects.filter(owner=request.user)[:100]
        return Response({"results": [session_data(s) for s in sessions]})


class RealtimeSessionDetailView(APIView):
    @extend_schema(summary="One of your realtime sessions", operation_id="api_realtime_sessions_detail", responses={200: OpenApiTypes.OBJECT,
                                                                       **error_responses(401, 404)})
    def get(self, request: Request, session_id: str) -> Response:
        session = RealtimeSession.objects.filter(owner=request.user, pk=session_id).first()
        if session is None:
            raise Http404("No such realtime session of yours.")
        return Response(session_data(session))
