"""Admin for learners, staff and their bearer tokens."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpRequest

from users.models import ApiToken, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Django's user admin plus the learner profile.

    ``credits`` is read-only: credits change only through reward claims, so the ledger
    (one reward row per credit grant) stays the source of truth.
    """

    fieldsets = (
        *(DjangoUserAdmin.fieldsets or ()),
        (
            "Learner profile",
            {
                "fields": (
                    "stellar_address",
                    "display_name",
                    "background",
                    "learning_goal",
                    "pace",
                    "language",
                    "credits",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )
    readonly_fields = ("credits", "created_at", "updated_at", "last_login", "date_joined")
    list_display = ("username", "display_name", "stellar_address", "credits", "is_staff")
    search_fields = ("username", "display_name", "email", "stellar_address")
    ordering = ("-created_at",)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Bearer tokens, listed for auditing; deleting one logs that session out."""

    list_display = ("user", "created_at")
    list_select_related = ("user",)
    search_fields = ("user__username",)
    ordering = ("-created_at",)
    fields = ("user", "created_at")
    readonly_fields = ("user", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False
