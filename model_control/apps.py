from django.apps import AppConfig


class ModelControlConfig(AppConfig):
    name = "model_control"
    verbose_name = "Model control"

    def ready(self) -> None:
        from model_control import backends
        from model_control.backends.fal_queue import FalQueueBackend
        from model_control.backends.fal_realtime import FalRealtimeBackend
        from model_control.backends.tenstorrent import TenstorrentBackend

        for backend in (FalQueueBackend(), TenstorrentBackend(), FalRealtimeBackend()):
            backends.register(backend)
