"""The project's cache managers: the six hot reads and what makes each one stale.

This module is the invalidation matrix (caching.md), row by row, and the one place that
names domain models and selectors for the caching engine. One row is kept live instead of
invalidated: an enrollment changes its course's ``enrolledCount`` (``enrolled_counts``),
which list pages and details show from a live count (``caching.counts``), so an enrollment
makes neither of them cold. ``caching`` imports it when its
app is ready (``settings.CACHE_MANAGERS_MODULE``), after every model has loaded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from django.db import models

from caching.counts import Counter, LiveCount
from caching.manager import CacheManager, Dependency, Params, by_field, every_entry
from caching.registry import registry
from chainlearn.api import PAGE_LIMIT_DEFAULT
from courses import selectors as course_selectors
from courses.models import Course, Difficulty, Module
from credentials.selectors import credential_list
from rewards.selectors import reward_history
from users.selectors import token_principal, user_progress


def quiz_course_ids(rows: Sequence[models.Model]) -> set[str]:
    module_ids = {row.module_id for row in rows}  # type: ignore[attr-defined]
    course_ids = Module._base_manager.filter(pk__in=module_ids).values_list("course_id", flat=True)
    return {str(course_id) for course_id in course_ids}


def first_list_pages() -> Iterator[Params]:
    """The first page of each filter, at the default size: what most visitors open."""
    for difficulty in (None, *Difficulty.values):
        yield {"difficulty": difficulty, "page": 1, "limit": PAGE_LIMIT_DEFAULT}


def active_courses() -> Iterator[Params]:
    for course_id in Course.objects.filter(is_active=True).values_list("pk", flat=True):
        yield {"course_id": course_id}


# Who a bearer token belongs to, with the user's profile (credits included): the
# authentication step of every authenticated request, and GET /users/me. Scoped by user
# (the token names its user), so a change to the user or any of its tokens is one bump.
# Enrollments per course, live in Redis: an enrollment created, deleted or moved rewrites
# its course's count after commit.
enrolled_counts = registry.register_counter(
    Counter(
        name="courses:enrolled",
        model="courses.Enrollment",
        ids=by_field("course_id"),
        load=course_selectors.enrollment_counts,
    )
)
enrolled_count = LiveCount(enrolled_counts, field="enrolledCount")

# PER_USER_LOCAL: the in-process tier (caching.local) holds the shared entries only. For the
# token principal and the per-user reads it measured no better than a Redis round trip
# (benchmarks, CACHE_L1 on vs off, one run: signed-in list 521 vs 628 req/s, progress 985
# vs 925, history 1,128 vs 1,198, credentials 1,411 vs 1,195): each worker sees a given
# user too rarely for a held entry to pay for keeping it, and the barrier costs about what
# a small entry's lookup does. A signed-in read needs its principal held to use the tier,
# so with the principal off every signed-in read takes one Redis round trip, as before.
principal_cache = registry.register(
    CacheManager(
        namespace="users:principal",
        local=False,  # see PER_USER_LOCAL
        loader=token_principal,
        scope_param="user_id",
        key_params=("key_hash",),
        version=2,  # v2: scoped by user, keyed by token
        dependencies=(
            Dependency("users.ApiToken", by_field("user_id")),  # logout
            Dependency("users.User", by_field("id")),  # profile, credits, deactivation
        ),
    )
)

course_list_cache = registry.register(
    CacheManager(
        namespace="courses:list",
        loader=course_selectors.course_list,
        scope_param=None,
        key_params=("difficulty", "page", "limit"),
        paged=True,
        version=4,  # v4: enrolledCount live
        warm_params=first_list_pages,
        live_count=enrolled_count,
        dependencies=(Dependency("courses.Course", every_entry),),
    )
)

course_detail_cache = registry.register(
    CacheManager(
        namespace="courses:detail",
        loader=course_selectors.course_detail,
        scope_param="course_id",
        key_params=(),
        version=3,  # v3: enrolledCount live
        warm_params=active_courses,
        live_count=enrolled_count,
        dependencies=(
            Dependency("courses.Course", by_field("id")),
            Dependency("courses.Module", by_field("course_id")),
            Dependency("courses.Quiz", quiz_course_ids),
        ),
    )
)

progress_cache = registry.register(
    CacheManager(
        namespace="users:progress",
        local=False,  # see PER_USER_LOCAL
        loader=user_progress,
        scope_param="user_id",
        key_params=(),
        dependencies=(
            Dependency("courses.Enrollment", by_field("user_id")),
            Dependency("courses.QuizSubmission", by_field("user_id")),
            Dependency("rewards.Reward", by_field("user_id")),
            Dependency("credentials.Credential", by_field("user_id")),
        ),
    )
)

reward_history_cache = registry.register(
    CacheManager(
        namespace="rewards:history",
        local=False,  # see PER_USER_LOCAL
        loader=reward_history,
        scope_param="user_id",
        key_params=("page", "limit"),
        paged=True,
        version=2,  # v2: framed items and total
        dependencies=(
            Dependency("rewards.Reward", by_field("user_id")),
            Dependency("courses.QuizSubmission", by_field("user_id")),  # score
            # Course titles appear in every user's history: one namespace-wide bump.
            Dependency("courses.Course", every_entry),
            Dependency("courses.Module", every_entry),  # a module moved to another course
        ),
    )
)

credential_list_cache = registry.register(
    CacheManager(
        namespace="credentials:list",
        local=False,  # see PER_USER_LOCAL
        loader=credential_list,
        scope_param="user_id",
        key_params=(),
        dependencies=(
            Dependency("credentials.Credential", by_field("user_id")),
            Dependency("courses.Course", every_entry),  # course titles
        ),
    )
)
