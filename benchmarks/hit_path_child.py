"""One tree's cache-hit cost, in process: run as a script by ``benchmarks/hit_path.py`` with
the tree's checkout first on ``PYTHONPATH`` (so its own ``chainlearn`` and ``caching`` are
imported) and the harness's ``DATABASE_URL`` and ``REDIS_URL``.

``python hit_path_child.py HITS`` fills the list's first page and the newest course's
detail, then reads each ``HITS`` times through its manager (``CacheManager.read``: one
lookup script call, plus whatever the tree does to a hit) and prints, as JSON, the wall
and CPU microseconds per hit, and the tree's ``caching`` path (to check which tree ran).
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chainlearn.settings")

import django

django.setup()

import caching  # noqa: E402
from chainlearn.caches import course_detail_cache, course_list_cache  # noqa: E402
from courses.models import Course  # noqa: E402


def main() -> None:
    hits = int(sys.argv[1])
    newest = Course.objects.filter(is_active=True).order_by("-created_at").values("pk").first()
    assert newest is not None, "no active course: seed the database first"
    cases = {
        "list": (course_list_cache, {"difficulty": None, "page": 1, "limit": 20}),
        "detail": (course_detail_cache, {"course_id": newest["pk"]}),
    }
    out: dict[str, object] = {"caching": os.path.dirname(caching.__file__)}
    for name, (manager, params) in cases.items():
        first = manager.read(params)
        assert manager.read(params).data == first.data  # filled: the loop reads hits only
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(hits):
            manager.read(params)
        out[name] = {
            "wall_us": (time.perf_counter() - wall) / hits * 1e6,
            "cpu_us": (time.process_time() - cpu) / hits * 1e6,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
