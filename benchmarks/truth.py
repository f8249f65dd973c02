"""The database's answer to each hot read, in the same canonical form as the API's answer.

Written as plain SQL against the tables (not through the project's selectors), so a check
compares the served value with PostgreSQL itself. Each snapshot runs in one REPEATABLE READ
transaction, so its parts agree with each other.
"""

from __future__ import annotations

from typing import Any

import psycopg

Canon = Any


class Truth:
    def __init__(self, conninfo: dict[str, object]) -> None:
        self.conn = psycopg.connect(**conninfo, autocommit=True)  # type: ignore[arg-type]
        self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ

    def close(self) -> None:
        self.conn.close()

    def _rows(self, query: str, params: list[Any]) -> list[tuple[Any, ...]]:
        return self.conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def detail(self, course_id: str, user_id: str | None = None) -> Canon:
        with self.conn.transaction():
            rows = self._rows(
                """
                SELECT c.title, c.description, c.difficulty, c.is_active, c.content_hash,
                       (SELECT count(*) FROM courses_enrollment e WHERE e.course_id = c.id),
                       EXISTS (SELECT 1 FROM courses_enrollment e
                               WHERE e.course_id = c.id AND e.user_id = %s)
                FROM courses_course c WHERE c.id = %s AND c.is_active
                """,
                [user_id, course_id],
            )
            if not rows:
                return None
            modules = self._rows(
                """
                SELECT m.id::text, m.title, m."order", q.id::text FROM courses_module m
                LEFT JOIN courses_quiz q ON q.module_id = m.id
                WHERE m.course_id = %s ORDER BY m."order"
                """,
                [course_id],
            )
        title, description, difficulty, active, content_hash, count, enrolled = rows[0]
        return {
            "title": title,
            "description": description,
            "difficulty": difficulty,
            "isActive": active,
            "contentHash": content_hash,
            "enrolledCount": count,
            "modules": [list(m) for m in modules],
            "isEnrolled": bool(enrolled) if user_id else False,
        }

    def course_list(self, difficulty: str | None, page: int, limit: int = 20) -> Canon:
        with self.conn.transaction():
            total = self._rows(
                "SELECT count(*) FROM courses_course WHERE is_active "
                "AND (%s::text IS NULL OR difficulty = %s)",
                [difficulty, difficulty],
            )[0][0]
            rows = self._rows(
                """
                SELECT c.id::text, c.title,
                       (SELECT count(*) FROM courses_enrollment e WHERE e.course_id = c.id)
                FROM courses_course c
                WHERE c.is_active AND (%s::text IS NULL OR c.difficulty = %s)
                ORDER BY c.created_at DESC, c.id DESC OFFSET %s LIMIT %s
                """,
                [difficulty, difficulty, (page - 1) * limit, limit],
            )
        return {
            "total": total,
            "items": [[r[0], r[1]] for r in rows],
            "counts": {r[0]: r[2] for r in rows},
        }

    def list_page_of(self, course_id: str, limit: int = 20) -> int:
        """The page of the unfiltered list on which an active course appears."""
        rank = self._rows(
            """
            SELECT count(*) FROM courses_course c, courses_course t
            WHERE t.id = %s AND c.is_active AND (c.created_at, c.id) > (t.created_at, t.id)
            """,
            [course_id],
        )[0][0]
        return int(rank) // limit + 1

    def progress(self, user_id: str) -> Canon:
        row = self._rows(
            """
            SELECT (SELECT count(*) FROM courses_enrollment WHERE user_id = %(u)s),
                   (SELECT count(*) FROM courses_enrollment
                    WHERE user_id = %(u)s AND completed_at IS NOT NULL),
                   (SELECT coalesce(sum(score), 0) FROM courses_quizsubmission
                    WHERE user_id = %(u)s),
                   (SELECT count(*) FROM credentials_credential
                    WHERE user_id = %(u)s AND NOT revoked),
                   (SELECT count(*) FROM rewards_reward
                    WHERE user_id = %(u)s AND status = 'claimed')
            """,
            {"u": user_id},  # type: ignore[arg-type]
        )[0]
        keys = (
            "enrolledCourses",
            "completedCourses",
            "totalQuizScore",
            "credentialsEarned",
            "rewardsClaimed",
        )
        return {k: int(v) for k, v in zip(keys, row, strict=True)}

    def history(self, user_id: str, page: int = 1, limit: int = 20) -> Canon:
        with self.conn.transaction():
            total = self._rows("SELECT count(*) FROM rewards_reward WHERE user_id = %s", [user_id])[
                0
            ][0]
            rows = self._rows(
                """
                SELECT r.submission_id::text, c.title, s.score, r.amount, r.tx_hash
                FROM rewards_reward r
                JOIN courses_quizsubmission s ON s.id = r.submission_id
                JOIN courses_quiz q ON q.id = s.quiz_id
                JOIN courses_module m ON m.id = q.module_id
                JOIN courses_course c ON c.id = m.course_id
                WHERE r.user_id = %s ORDER BY r.claimed_at DESC, r.id DESC OFFSET %s LIMIT %s
                """,
                [user_id, (page - 1) * limit, limit],
            )
        return {"total": total, "items": [list(r) for r in rows]}

    def history_page_of(self, user_id: str, course_id: str, limit: int = 20) -> int:
        """The history page holding the user's newest reward for ``course_id`` (1 if none)."""
        rows = self._rows(
            """
            SELECT n FROM (
              SELECT m.course_id, row_number() OVER (ORDER BY r.claimed_at DESC, r.id DESC) n
              FROM rewards_reward r
              JOIN courses_quizsubmission s ON s.id = r.submission_id
              JOIN courses_quiz q ON q.id = s.quiz_id
              JOIN courses_module m ON m.id = q.module_id
              WHERE r.user_id = %s) ranked
            WHERE course_id = %s ORDER BY n LIMIT 1
            """,
            [user_id, course_id],
        )
        return (int(rows[0][0]) - 1) // limit + 1 if rows else 1

    def credentials(self, user_id: str) -> Canon:
        rows = self._rows(
            """
            SELECT cr.id::text, cr.course_id::text, c.title, cr.score, cr.asset_code, cr.revoked
            FROM credentials_credential cr JOIN courses_course c ON c.id = cr.course_id
            WHERE cr.user_id = %s ORDER BY cr.issued_at DESC, cr.id DESC
            """,
            [user_id],
        )
        return [list(r) for r in rows]


def served_detail(data: dict[str, Any]) -> Canon:
    return {
        "title": data["title"],
        "description": data["description"],
        "difficulty": data["difficulty"],
        "isActive": data["isActive"],
        "contentHash": data["contentHash"],
        "enrolledCount": data["enrolledCount"],
        "modules": [[m["id"], m["title"], m["order"], m["quizId"]] for m in data["modules"]],
        "isEnrolled": data["isEnrolled"],
    }


def served_list(body: dict[str, Any]) -> Canon:
    items = body["data"]
    return {
        "total": body["pagination"]["total"],
        "items": [[c["id"], c["title"]] for c in items],
        "counts": {c["id"]: c["enrolledCount"] for c in items},
    }


def served_history(body: dict[str, Any]) -> Canon:
    return {
        "total": body["pagination"]["total"],
        "items": [
            [r["id"], r["courseTitle"], r["score"], r["amount"], r["txHash"]] for r in body["data"]
        ],
    }


def served_credentials(data: list[dict[str, Any]]) -> Canon:
    return [
        [c["id"], c["courseId"], c["courseTitle"], c["score"], c["assetCode"], c["revoked"]]
        for c in data
    ]
