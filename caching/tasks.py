"""Celery tasks of the caching layer (thin and idempotent)."""

from __future__ import annotations

from celery import shared_task

from caching.warming import warm_quietly


@shared_task(name="caching.tasks.cache_warm", ignore_result=True)
def cache_warm() -> dict[str, int]:
    """Fill the missing or expired course-list and course-detail entries."""
    return warm_quietly()
