"""What the load reads and writes: course ids, list pages, learners with bearer tokens."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field

import psycopg

from benchmarks.config import Config

DIFFICULTIES: tuple[str | None, ...] = (None, "beginner", "intermediate", "advanced")
LIST_PAGES = (1, 2, 3, 4, 5)


def list_path(difficulty: str | None, page: int) -> str:
    query = f"page={page}" if difficulty is None else f"difficulty={difficulty}&page={page}"
    return f"/api/v1/courses?{query}"


@dataclass
class Dataset:
    course_ids: list[str]
    list_variants: list[tuple[str | None, int]]
    tokens: dict[str, str]  # user id -> raw bearer token
    admin_password: str
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    @property
    def token_user_ids(self) -> list[str]:
        return list(self.tokens)

    def list_paths(self) -> list[str]:
        return [list_path(d, p) for d, p in self.list_variants]


def connect(config: Config) -> psycopg.Connection:
    return psycopg.connect(**config.pg, autocommit=True)  # type: ignore[arg-type]


def build(config: Config) -> Dataset:
    """Pick the learners the load acts as and give each a bearer token.

    Learners are those with at least one claimed reward and one credential (so history
    and credentials are non-empty), in a seed-stable order. Tokens come from
    ``ApiToken.issue`` exactly as a login would create them; the admin's password is reset
    to a fresh one for the admin-edit writer. Requires ``django.setup()``.
    """
    from users.models import ApiToken, User

    with connect(config) as conn:
        course_ids = [
            str(row[0])
            for row in conn.execute(
                "SELECT id FROM courses_course WHERE is_active ORDER BY created_at DESC, id DESC"
            )
        ]
        candidates = [
            str(row[0])
            for row in conn.execute(
                """
                SELECT u.id FROM users_user u
                WHERE u.username NOT IN ('demo', 'admin')
                  AND EXISTS (SELECT 1 FROM rewards_reward r WHERE r.user_id = u.id)
                ORDER BY EXISTS (SELECT 1 FROM credentials_credential c WHERE c.user_id = u.id)
                         DESC, md5(u.id::text)
                LIMIT %s
                """,
                [config.token_users],
            )
        ]
    users = {str(u.pk): u for u in User.objects.filter(pk__in=candidates)}
    tokens = {user_id: ApiToken.issue(users[user_id]) for user_id in candidates}
    admin_password = secrets.token_urlsafe(16)
    admin = User.objects.get(username="admin")
    admin.set_password(admin_password)
    admin.save(update_fields=["password"])
    variants = [(d, p) for d in DIFFICULTIES for p in LIST_PAGES]
    return Dataset(
        course_ids=course_ids,
        list_variants=variants,
        tokens=tokens,
        admin_password=admin_password,
    )
