"""The five hot-read managers (caching.md) and what makes each one stale.

Views read hot paths only through these; the dependencies below are the invalidation
matrix, row by row.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.apps import apps
from django.db import models

from caching.registry import CacheManager, Dependency, by_field, every_entry, registry


def quiz_course_ids(rows: Sequence[models.Model]) -> set[str]:
    module_ids = {row.module_id for row in rows}  # type: ignore[attr-defined]
    module = apps.get_model("courses", "Module")
    return {
        str(course_id)
        for course_id in module._base_manager.filter(pk__in=module_ids).values_list(
            "course_id", flat=True
        )
    }


def token_hashes_of_users(rows: Sequence[models.Model]) -> set[str]:
    token = apps.get_model("users", "ApiToken")
    return set(
        token._base_manager.filter(user_id__in=[row.pk for row in rows]).values_list(
            "key_hash", flat=True
        )
    )


# Who a bearer token belongs to, with the user's profile (credits included): the
# authentication step of every authenticated request, and GET /users/me.
principal_cache = registry.register(
    CacheManager(
        namespace="users:principal",
        loader_path="users.selectors.token_principal",
        scope_param="key_hash",
        key_params=(),
        dependencies=(
            Dependency("users.ApiToken", by_field("key_hash")),  # logout
            Dependency("users.User", token_hashes_of_users),  # profile, credits, deactivation
        ),
    )
)

course_list_cache = registry.register(
    CacheManager(
        namespace="courses:list",
        loader_path="courses.selectors.course_list",
        version=2,  # v2: items carry the anonymous isEnrolled: false
        scope_param=None,
        key_params=("difficulty", "page", "limit"),
        dependencies=(
            Dependency("courses.Course", every_entry),
            Dependency("courses.Enrollment", every_entry),  # enrolledCount
        ),
    )
)

course_detail_cache = registry.register(
    CacheManager(
        namespace="courses:detail",
        loader_path="courses.selectors.course_detail",
        scope_param="course_id",
        key_params=(),
        dependencies=(
            Dependency("courses.Course", by_field("id")),
            Dependency("courses.Module", by_field("course_id")),
            Dependency("courses.Quiz", quiz_course_ids),
            Dependency("courses.Enrollment", by_field("course_id")),  # enrolledCount
        ),
    )
)

progress_cache = registry.register(
    CacheManager(
        namespace="users:progress",
        loader_path="users.selectors.user_progress",
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
        loader_path="rewards.selectors.reward_history",
        scope_param="user_id",
        key_params=("page", "limit"),
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
        loader_path="credentials.selectors.credential_list",
        scope_param="user_id",
        key_params=(),
        dependencies=(
            Dependency("credentials.Credential", by_field("user_id")),
            Dependency("courses.Course", every_entry),  # course titles
        ),
    )
)
