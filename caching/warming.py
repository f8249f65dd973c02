"""Warming: fill the shared entries most requests read, through the managers.

Going through ``CacheManager.warm`` means warming takes the same lease as a request and
stores under the generation it read first, so it never races a writer (properties 3, 5).
Per-user namespaces fill on demand and are not warmed.
"""

from __future__ import annotations

import logging

from django.apps import apps

from caching.backend import CacheUnavailable
from caching.managers import course_detail_cache, course_list_cache
from chainlearn.api import PAGE_LIMIT_DEFAULT

logger = logging.getLogger("chainlearn.cache")

WARMABLE = (course_list_cache.namespace, course_detail_cache.namespace)
LIST_FILTERS: tuple[str | None, ...] = (None, "beginner", "intermediate", "advanced")


def warm(namespaces: tuple[str, ...] = WARMABLE) -> dict[str, int]:
    """Fill missing or expired entries of ``namespaces``; returns entries stored per namespace.

    Raises ``CacheUnavailable`` if Redis cannot be reached.
    """
    stored = {namespace: 0 for namespace in namespaces}
    if course_list_cache.namespace in namespaces:
        for difficulty in LIST_FILTERS:
            stored[course_list_cache.namespace] += course_list_cache.warm(
                difficulty=difficulty, page=1, limit=PAGE_LIMIT_DEFAULT
            )
    if course_detail_cache.namespace in namespaces:
        course = apps.get_model("courses", "Course")
        for course_id in course.objects.filter(is_active=True).values_list("pk", flat=True):
            stored[course_detail_cache.namespace] += course_detail_cache.warm(course_id=course_id)
    return stored


def warm_quietly() -> dict[str, int]:
    """``warm`` for start-up and schedules: a Redis outage is logged, never raised."""
    try:
        return warm()
    except CacheUnavailable:
        logger.warning("cache warming skipped: Redis unavailable")
        return {}
