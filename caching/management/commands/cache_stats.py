from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from caching.backend import CacheUnavailable
from caching.management.commands._namespaces import resolve
from caching.stats import namespace_stats


class Command(BaseCommand):
    help = "Per namespace: hits, misses, hit rate, live keys and their size."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--namespace", help="only this namespace")

    def handle(self, *args: Any, namespace: str | None, **options: Any) -> None:
        rows = []
        try:
            for name in resolve(namespace):
                rows.append(namespace_stats(name))
        except CacheUnavailable as exc:
            raise CommandError(f"Redis is unavailable ({exc}); check REDIS_URL") from exc
        header = f"{'namespace':<18}{'hits':>10}{'misses':>10}{'hit_rate':>10}{'stale':>8}"
        self.stdout.write(header + f"{'waits':>8}{'keys':>8}{'bytes':>12}")
        for row in rows:
            self.stdout.write(
                f"{row.namespace:<18}{row.hits:>10}{row.misses:>10}{row.hit_rate:>10.3f}"
                f"{row.stale:>8}{row.waits:>8}{row.keys:>8}{row.bytes:>12}"
            )
