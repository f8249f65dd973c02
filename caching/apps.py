from importlib import import_module

from django.apps import AppConfig
from django.conf import settings


class CachingConfig(AppConfig):
    name = "caching"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from caching import checks, signals  # noqa: F401  (registers the system checks)

        # The project's manager declarations (its invalidation matrix) register themselves
        # on import; every app's models are loaded by now, so they may import selectors.
        import_module(settings.CACHE_MANAGERS_MODULE)
        signals.connect()
