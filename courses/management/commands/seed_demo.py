"""``manage.py seed_demo``: fill the database with deterministic demo data."""

from __future__ import annotations

import argparse
import os
import secrets
import time
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from courses.seeding import (
    ADMIN_USERNAME,
    DEMO_USERNAME,
    SeedSize,
    demo_data_exists,
    demo_data_seed,
    demo_token_issue,
)
from users.models import User


def login_password(env_name: str, username: str) -> str:
    """The password in ``env_name``, else a random one; either passes the password policy.

    Raises ``CommandError`` with the validators' messages for a weak one.
    """
    password = os.environ.get(env_name, "") or secrets.token_urlsafe(12)
    try:
        validate_password(password, User(username=username))
    except ValidationError as exc:
        raise CommandError(
            f"{env_name} fails the password policy: {' '.join(exc.messages)}"
        ) from None
    return password


def count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


class Command(BaseCommand):
    help = (
        "Write deterministic demo data: courses with modules and quizzes, learners, "
        "enrollments, quiz submissions, claimed rewards and credentials, plus a demo "
        "learner ('demo') and a superuser ('admin'). The same --seed and sizes give the "
        "same rows. Passwords come from DEMO_PASSWORD / ADMIN_PASSWORD, else are generated "
        "and printed. Refuses to run on a database that already holds users or courses "
        "unless --reset is given; --reset empties the domain tables with TRUNCATE ... "
        "CASCADE (every user, token, course, enrollment, submission, reward, credential "
        "and the admin log): for demo databases only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        default = SeedSize()
        parser.add_argument("--courses", type=count, default=default.courses)
        parser.add_argument(
            "--users",
            type=count,
            default=default.users,
            help="generated learners; 'demo' and 'admin' come on top",
        )
        parser.add_argument(
            "--enrollments",
            type=count,
            default=default.enrollments,
            help="generated learners' enrollments; the demo learner's come on top",
        )
        parser.add_argument(
            "--submissions",
            type=count,
            default=default.submissions,
            help="generated learners' quiz submissions; the demo learner's come on top",
        )
        parser.add_argument("--seed", type=int, default=42)
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--reset",
            action="store_true",
            help="TRUNCATE ... CASCADE the domain tables first (destroys all their data)",
        )
        mode.add_argument(
            "--if-empty",
            action="store_true",
            help="seed only an empty database; otherwise keep the data and just print a "
            "fresh bearer token for the demo learner",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["reset"] and demo_data_exists():
            if options["if_empty"]:
                self.stdout.write("The database already holds data; nothing seeded.")
                self._print_token()
                return
            raise CommandError(
                "The database already holds users or courses. Pass --reset to delete them "
                "(TRUNCATE ... CASCADE) and seed again."
            )
        env_demo = os.environ.get("DEMO_PASSWORD", "")
        env_admin = os.environ.get("ADMIN_PASSWORD", "")
        demo_password = login_password("DEMO_PASSWORD", DEMO_USERNAME)
        admin_password = login_password("ADMIN_PASSWORD", ADMIN_USERNAME)
        size = SeedSize(
            courses=options["courses"],
            users=options["users"],
            enrollments=options["enrollments"],
            submissions=options["submissions"],
        )
        started = time.monotonic()
        report = demo_data_seed(
            size=size,
            seed=options["seed"],
            demo_password=demo_password,
            admin_password=admin_password,
            learner_password=os.environ.get("SEED_LEARNER_PASSWORD") or None,
            reset=options["reset"],
        )
        elapsed = time.monotonic() - started
        self.stdout.write(f"Seeded demo data (seed {options['seed']}) in {elapsed:.1f} s:")
        for name, rows in report.counts.items():
            self.stdout.write(f"  {name:<22} {rows:>9,}")
        for note in report.notes:
            self.stdout.write(self.style.WARNING(f"  note: {note}"))
        self.stdout.write("Logins:")
        for role, username, password, env in (
            ("learner", DEMO_USERNAME, demo_password, "DEMO_PASSWORD" if env_demo else ""),
            ("staff  ", ADMIN_USERNAME, admin_password, "ADMIN_PASSWORD" if env_admin else ""),
        ):
            shown = f"(from ${env})" if env else password
            self.stdout.write(f"  {role} username: {username:<6} password: {shown}")
        self._print_token()

    def _print_token(self) -> None:
        token = demo_token_issue()
        if token is None:
            self.stdout.write(f"No '{DEMO_USERNAME}' user: no token issued.")
        else:
            self.stdout.write(f"Bearer token for {DEMO_USERNAME}: {token}")
