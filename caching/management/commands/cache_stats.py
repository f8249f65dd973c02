from __future__ import annotations

import urllib.request
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from caching.connection import CacheUnavailable
from caching.management.commands._namespaces import resolve
from caching.metrics import local_registry
from caching.stats import counts_from_registry, counts_from_text, namespace_stats


class Command(BaseCommand):
    help = (
        "Per namespace: hits, misses, hit rate, stale, waits (the /metrics counters of this "
        "host's workers, or summed over --metrics-url), and live keys: current ones and "
        "outdated ones waiting to be overwritten or to expire, with their size."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--namespace", help="only this namespace")
        parser.add_argument(
            "--metrics-url",
            action="append",
            default=[],
            help="a host's /metrics URL (repeat for each host); counts are summed over them",
        )

    def handle(
        self, *args: Any, namespace: str | None, metrics_url: list[str], **options: Any
    ) -> None:
        counts = (
            counts_from_text(_fetch(url) for url in metrics_url)
            if metrics_url
            else counts_from_registry(local_registry())
        )
        try:
            rows = [namespace_stats(name, counts) for name in resolve(namespace)]
        except CacheUnavailable as exc:
            raise CommandError(f"Redis is unavailable ({exc}); check REDIS_URL") from exc
        header = f"{'namespace':<18}{'hits':>10}{'misses':>10}{'hit_rate':>10}{'stale':>8}"
        self.stdout.write(header + f"{'waits':>8}{'keys':>8}{'outdated':>10}{'bytes':>12}")
        for row in rows:
            self.stdout.write(
                f"{row.namespace:<18}{row.hits:>10}{row.misses:>10}{row.hit_rate:>10.3f}"
                f"{row.stale:>8}{row.waits:>8}{row.keys:>8}{row.outdated:>10}{row.bytes:>12}"
            )


def _fetch(url: str) -> str:
    request = urllib.request.Request(url)
    if settings.METRICS_TOKEN:
        request.add_header("Authorization", f"Bearer {settings.METRICS_TOKEN}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(response.read().decode())
    except OSError as exc:
        raise CommandError(f"cannot read {url} ({exc}); check the URL and METRICS_TOKEN") from exc
