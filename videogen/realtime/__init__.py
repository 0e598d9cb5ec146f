"""Realtime video on ``/ws/realtime/``: fal's Krea WAN-14B protocol, served by Studio.

- ``protocol``: what a client may send, validated (no Django);
- ``consumer``: the Channels consumer that owns each client socket;
- ``upstreams``: where frames come from, local GPU workers (``local``) or fal (``fal``);
- ``producer``: the GPU side of a local session (a Celery task on queue ``gpu``);
- ``recording``: every session saved as an MP4 with its timeline;
- ``sessions``: every change to a ``RealtimeSession`` row;
- ``auth``: who may open a socket (session cookie, API token, short-lived token).

See docs/realtime.md.
"""
