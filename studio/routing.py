"""Every WebSocket route of the studio (apps add theirs here)."""

from django.urls import path

from runtime.consumers import EventsConsumer
from videogen.realtime.consumer import RealtimeConsumer

websocket_urlpatterns = [
    path("ws/events/", EventsConsumer.as_asgi()),
    path("ws/realtime/", RealtimeConsumer.as_asgi()),
]
