from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "users"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from users.authentication import bearer_scheme_extension

        bearer_scheme_extension()
