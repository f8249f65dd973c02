"""Receivers that keep the cache right when rows change: the only receivers in the project.

They ask the registry which generations a changed row touches and bump them after the
transaction commits. A full ``save()`` of an existing row (the admin's change form, for
instance) may move it to another course or user, so ``pre_save`` remembers the stored
row's targets as well; saves with ``update_fields`` that touch no foreign key skip that.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from caching.invalidation import invalidate_on_commit, merge, targets_for
from caching.registry import registry

_OLD_TARGETS = "_cache_old_targets"


def _touches_foreign_keys(sender: type[models.Model], update_fields: Any) -> bool:
    if update_fields is None:
        return True
    fk_names = {f.name for f in sender._meta.concrete_fields if f.is_relation}
    return bool(fk_names & set(update_fields))


def remember_old_targets(
    sender: type[models.Model],
    instance: models.Model,
    raw: bool = False,
    update_fields: Any = None,
    using: str | None = None,
    **kwargs: Any,
) -> None:
    if raw or instance._state.adding or not _touches_foreign_keys(sender, update_fields):
        return
    stored = sender._base_manager.using(using).filter(pk=instance.pk).first()
    if stored is not None:
        setattr(instance, _OLD_TARGETS, targets_for(sender, [stored]))


def row_saved(
    sender: type[models.Model],
    instance: models.Model,
    raw: bool = False,
    using: str | None = None,
    **kwargs: Any,
) -> None:
    old = instance.__dict__.pop(_OLD_TARGETS, {})
    invalidate_on_commit(merge(old, targets_for(sender, [instance])), "post_save", using)


def row_deleted(
    sender: type[models.Model], instance: models.Model, using: str | None = None, **kwargs: Any
) -> None:
    invalidate_on_commit(targets_for(sender, [instance]), "post_delete", using)


def relation_changed(
    sender: type[models.Model],
    instance: models.Model,
    action: str,
    using: str | None = None,
    **kwargs: Any,
) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        invalidate_on_commit(targets_for(type(instance), [instance]), "m2m_changed", using)


def connect() -> None:
    """Connect the receivers for every model a manager depends on (``CachingConfig.ready``)."""
    for label in sorted(registry.model_labels()):
        model = apps.get_model(label)
        pre_save.connect(remember_old_targets, sender=model, dispatch_uid=f"cache-pre-{label}")
        post_save.connect(row_saved, sender=model, dispatch_uid=f"cache-save-{label}")
        post_delete.connect(row_deleted, sender=model, dispatch_uid=f"cache-delete-{label}")
        for field in model._meta.many_to_many:
            m2m_changed.connect(
                relation_changed,
                sender=field.remote_field.through,
                dispatch_uid=f"cache-m2m-{label}-{field.name}",
            )
