"""``/api/realtime/``: a short-lived token for ``/ws/realtime/?token=``, and your sessions."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from model_control.openapi import error_responses
from videogen.models import RealtimeSession
from videogen.realtime.auth import mint_token


class RealtimeTokenView(APIView):
    """A token that opens realtime sockets as the caller for STUDIO_REALTIME_TOKEN_TTL seconds."""

    @extend_schema(
        summary="Mint a short-lived token for the realtime WebSocket (/ws/realtime/?token=...)",
        request=None,
        responses={200: inline_serializer("RealtimeToken", {
            "token": serializers.CharField(), "expires_in": serializers.IntegerField(),
            "url": serializers.CharField(help_text="the socket's path with the token")})},
    )
    def post(self, request: Request) -> Response:
        token = mint_token(request.user)
        return Response({"token": token, "expires_in": settings.STUDIO_REALTIME_TOKEN_TTL,
                         "url": f"/ws/realtime/?token={token}"})


def session_data(session: RealtimeSession) -> dict[str, Any]:
    return {"id": str(session.id), "backend": session.backend, "model_id": session.model_id,
            "status": session.status, "params": session.params, "frames": session.frames,
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
