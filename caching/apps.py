from django.apps import AppConfig


class CachingConfig(AppConfig):
    name = "caching"
    default_auto_field = "django.db.models.BigAutoField"
