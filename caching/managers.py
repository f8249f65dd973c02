"""The hot-read cache managers: one per hot path, all in the registry.

TEMPORARY pass-through while the caching layer is being written: ``get`` calls the loader.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class CacheManager:
    def __init__(self, namespace: str, loader: Callable[..., Any]) -> None:
        self.namespace = namespace
        self.loader = loader

    def get(self, **params: Any) -> Any:
        return self.loader(**params)


def _lazy(path: str) -> Callable[..., Any]:
    def call(**params: Any) -> Any:
        module, name = path.rsplit(".", 1)
        import importlib

        return getattr(importlib.import_module(module), name)(**params)

    return call


course_list_cache = CacheManager("courses:list", _lazy("courses.selectors.course_list"))
course_detail_cache = CacheManager("courses:detail", _lazy("courses.selectors.course_detail"))
progress_cache = CacheManager("users:progress", _lazy("users.selectors.user_progress"))
reward_history_cache = CacheManager("rewards:history", _lazy("rewards.selectors.reward_history"))
credential_list_cache = CacheManager(
    "credentials:list", _lazy("credentials.selectors.credential_list")
)
