"""A queryset whose signal-less bulk writes still invalidate the cache."""

from __future__ import annotations

from typing import Any

from django.db import models


class InvalidatingQuerySet(models.QuerySet):  # type: ignore[type-arg]
    """TEMPORARY: plain queryset until the invalidation registry lands."""

    def update(self, **kwargs: Any) -> int:
        return super().update(**kwargs)
