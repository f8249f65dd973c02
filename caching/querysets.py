"""A queryset whose signal-less writes invalidate through the same registry as signals.

``update``, ``bulk_create`` and ``bulk_update`` send no ``post_save``; without this they
would leave stale entries. Rows are read before (and, for ``update``, after) the write, so
both the old and the new owners of a moved row are invalidated; models no manager depends
on pay nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models

from caching.invalidation import invalidate_on_commit, merge, targets_for
from caching.registry import registry


class InvalidatingQuerySet(models.QuerySet):  # type: ignore[type-arg]
    def _watched(self) -> bool:
        return self.model._meta.label in registry.model_labels()

    def update(self, **kwargs: Any) -> int:
        if not self._watched():
            return super().update(**kwargs)
        before = list(self.model._base_manager.using(self.db).filter(pk__in=self.values("pk")))
        count = super().update(**kwargs)
        pks = [row.pk for row in before]
        after = list(self.model._base_manager.using(self.db).filter(pk__in=pks))
        invalidate_on_commit(
            merge(targets_for(self.model, before), targets_for(self.model, after)),
            "update",
            self.db,
        )
        return count

    def bulk_create(self, objs: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        created = super().bulk_create(objs, *args, **kwargs)
        if self._watched():
            invalidate_on_commit(targets_for(self.model, created), "bulk_create", self.db)
        return created

    def bulk_update(  # type: ignore[override]
        self, objs: Iterable[Any], fields: Iterable[str], *args: Any, **kwargs: Any
    ) -> int:
        objs = list(objs)
        if not self._watched():
            return super().bulk_update(objs, fields, *args, **kwargs)
        before = list(
            self.model._base_manager.using(self.db).filter(pk__in=[obj.pk for obj in objs])
        )
        count = super().bulk_update(objs, fields, *args, **kwargs)
        invalidate_on_commit(
            merge(targets_for(self.model, before), targets_for(self.model, objs)),
            "bulk_update",
            self.db,
        )
        return count
