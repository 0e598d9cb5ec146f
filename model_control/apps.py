from django.apps import AppConfig


class ModelControlConfig(AppConfig):
    name = "model_control"
    verbose_name = "Model control"
