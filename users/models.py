"""Learners and staff, and the bearer tokens they log in with."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import ClassVar

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models

from caching.querysets import InvalidatingQuerySet


class InvalidatingUserManager(UserManager.from_queryset(InvalidatingQuerySet)):  # type: ignore[misc]
    """Django's user manager whose bulk writes (e.g. the credit ``update``) invalidate too."""


class User(AbstractUser):
    class Pace(models.TextChoices):
        SLOW = "slow"
        MEDIUM = "medium"
        FAST = "fast"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    stellar_address = models.CharField(max_length=56, unique=True, null=True, blank=True)
    display_name = models.CharField(max_length=100, blank=True, default="")
    background = models.CharField(max_length=1000, blank=True, default="")
    learning_goal = models.CharField(max_length=500, blank=True, default="")
    pace = models.CharField(max_length=10, choices=Pace.choices, default=Pace.MEDIUM)
    language = models.CharField(max_length=10, default="en")
    credits = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects: ClassVar[InvalidatingUserManager] = InvalidatingUserManager()  # type: ignore[assignment]

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(credits__gte=0), name="user_credits_gte_0"),
            models.CheckConstraint(
                condition=models.Q(pace__in=["slow", "medium", "fast"]), name="user_pace_valid"
            ),
        ]


def hash_token(raw: str) -> str:
    """The stored form of a bearer token: a leaked table does not leak live tokens."""
    return hashlib.sha256(raw.encode()).hexdigest()


def token_user_id(raw: str) -> uuid.UUID | None:
    """The user id a token names (``<user id hex>.<secret>``), or None for a token without
    one (issued before tokens named their user). Naming the user lets the principal's cache
    entry be scoped by user and found in the same round trip as the user's own entries; the
    name is checked against the stored token on every load, so it grants nothing by itself.
    """
    head, sep, _ = raw.partition(".")
    if not sep or len(head) != 32:
        return None
    try:
        return uuid.UUID(hex=head)
    except ValueError:
        return None


class ApiToken(models.Model):
    """One bearer token per login; logout deletes it."""

    key_hash = models.CharField(max_length=64, primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"token of {self.user_id}"

    @classmethod
    def issue(cls, user: User) -> str:
        """Create a token for ``user`` and return its raw value (shown once)."""
        raw = f"{user.pk.hex}.{secrets.token_urlsafe(32)}"
        cls.objects.create(key_hash=hash_token(raw), user=user)
        return raw
