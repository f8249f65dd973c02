from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from caching.connection import CacheUnavailable
from caching.management.commands._namespaces import resolve
from caching.warming import warm, warmable


class Command(BaseCommand):
    help = "Fill the shared cache entries that the managers declare warmable."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--namespace", help=f"one of: {', '.join(warmable())}")

    def handle(self, *args: Any, namespace: str | None, **options: Any) -> None:
        try:
            stored = warm(resolve(namespace, warmable()))
        except CacheUnavailable as exc:
            raise CommandError(f"Redis is unavailable ({exc}); check REDIS_URL") from exc
        for name, count in stored.items():
            self.stdout.write(f"{name}: {count} entries filled")
