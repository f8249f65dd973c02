"""Writes for the users app: registration, tokens and the learner's profile."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.db import IntegrityError, transaction

from chainlearn.errors import Conflict, Unauthorized, constraint_name
from users.models import ApiToken, User, hash_token

PROFILE_FIELDS = ("display_name", "background", "learning_goal", "pace", "language")


def user_register(
    *, username: str, password: str, stellar_address: str | None = None
) -> tuple[User, str]:
    """Create a learner and their first bearer token.

    Returns ``(user, raw_token)``. Raises ``Conflict`` when the username or the Stellar
    address is taken; the database's unique constraints decide, so two concurrent
    registrations of one name cannot both succeed.
    """
    with transaction.atomic():
        user = User(username=username, stellar_address=stellar_address)
        user.set_password(password)
        try:
            with transaction.atomic():
                user.save(force_insert=True)
        except IntegrityError as exc:
            name = constraint_name(exc)
            if "stellar_address" in name:
                raise Conflict(
                    "Stellar address already registered",
                    details={"stellarAddress": ["Already registered."]},
                ) from None
            if "username" in name:
                raise Conflict(
                    "Username already taken", details={"username": ["Already taken."]}
                ) from None
            raise
        return user, ApiToken.issue(user)


def token_obtain(*, username: str, password: str) -> tuple[User, str]:
    """Log a learner in: check the password and issue a new bearer token.

    Returns ``(user, raw_token)``; raises ``Unauthorized`` for a wrong username or
    password, or an inactive account, without saying which.
    """
    user = authenticate(username=username, password=password)
    if not isinstance(user, User):
        raise Unauthorized("Invalid username or password")
    with transaction.atomic():
        return user, ApiToken.issue(user)


def token_revoke(*, raw_token: str) -> None:
    """Delete the token row for ``raw_token``: that token stops working at once.

    Other tokens of the same user (other logins) are left alone.
    """
    with transaction.atomic():
        ApiToken.objects.filter(key_hash=hash_token(raw_token)).delete()


def user_update_profile(*, user: User, changes: dict[str, Any]) -> User:
    """Apply ``changes`` (model field name → value, profile fields only) to ``user``.

    Saves only the changed fields (plus ``updated_at``) and returns the user. An empty
    ``changes`` writes nothing.
    """
    unknown = set(changes) - set(PROFILE_FIELDS)
    if unknown:
        raise ValueError(f"not profile fields: {sorted(unknown)}")
    if not changes:
        return user
    with transaction.atomic():
        for field, value in changes.items():
            setattr(user, field, value)
        user.save(update_fields=[*changes, "updated_at"])
    return user
