"""Admin for credentials: staff review and revoke them."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from credentials.models import Credential
from credentials.services import credential_revoke


@admin.register(Credential)
class CredentialAdmin(admin.ModelAdmin):
    """Credentials are issued by the mint endpoint; here staff only revoke them."""

    list_display = ("asset_code", "user", "course", "score", "revoked", "issued_at")
    list_filter = ("revoked",)
    list_select_related = ("user", "course")
    search_fields = ("asset_code", "user__username", "course__title")
    ordering = ("-issued_at",)
    fields = ("id", "user", "course", "score", "asset_code", "issued_at", "revoked", "revoked_at")
    readonly_fields = fields
    actions = ["revoke_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Credential | None = None) -> bool:
        return False

    @admin.action(description="Revoke selected credentials", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        # One model save per credential (not queryset.update) so cache receivers see each.
        revoked = 0
        for credential in queryset.filter(revoked=False):
            credential_revoke(credential=credential)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} credential(s).", messages.SUCCESS)
