"""Admin for rewards and stored idempotent responses: both are records, read-only here."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from rewards.models import IdempotencyRecord, Reward


@admin.register(Reward)
class RewardAdmin(admin.ModelAdmin):
    """Rewards are granted only by claims (which also credit the user), so staff can look
    but not add, edit or delete: a deleted reward would let its submission be claimed again.
    """

    list_display = ("user", "amount", "status", "claimed_at", "submission")
    list_filter = ("status",)
    list_select_related = ("user", "submission")
    search_fields = ("user__username",)
    ordering = ("-claimed_at",)
    date_hierarchy = "claimed_at"
    fields = ("id", "user", "submission", "amount", "status", "tx_hash", "claimed_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Reward | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Reward | None = None) -> bool:
        return False


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ("key", "user", "status_code", "created_at")
    list_select_related = ("user",)
    search_fields = ("key", "user__username")
    ordering = ("-created_at",)
    fields = ("id", "user", "key", "request_hash", "status_code", "response_body", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: IdempotencyRecord | None = None
    ) -> bool:
        return False
