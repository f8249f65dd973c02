from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from caching.connection import CacheUnavailable
from caching.invalidation import flush
from caching.management.commands._namespaces import resolve
from caching.warming import warm_quietly


class Command(BaseCommand):
    help = (
        "Invalidate cache namespaces by bumping their generation (O(1); never FLUSHDB, "
        "which would also empty a shared Celery broker), then re-warm the shared entries."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--namespace", help="one namespace, e.g. courses:list")
        group.add_argument("--all", action="store_true", help="every namespace")
        parser.add_argument("--no-warm", action="store_true", help="skip the re-warm")

    def handle(self, *args: Any, namespace: str | None, no_warm: bool, **options: Any) -> None:
        namespaces = resolve(namespace)
        try:
            flush(namespaces, cause="command")
        except CacheUnavailable as exc:
            raise CommandError(f"Redis is unavailable ({exc}); check REDIS_URL") from exc
        for name in namespaces:
            self.stdout.write(f"{name}: flushed")
        if not no_warm:
            for name, count in warm_quietly().items():
                self.stdout.write(f"{name}: {count} entries re-warmed")
