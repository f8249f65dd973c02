from django.apps import AppConfig


class CachingConfig(AppConfig):
    name = "caching"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from caching import checks, managers, signals  # noqa: F401  (registers managers)

        signals.connect()
