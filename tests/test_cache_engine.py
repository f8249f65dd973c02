"""``caching`` is an engine: it names no domain app and nothing of ``chainlearn``; the
project's declarations (``chainlearn.caches``) are the one place naming models and
selectors for it."""

import ast
from pathlib import Path

import caching
from caching.registry import registry

PROJECT_PACKAGES = {"chainlearn", "courses", "users", "rewards", "credentials"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_engine_imports_no_project_package():
    sources = sorted(Path(caching.__file__).parent.rglob("*.py"))
    assert len(sources) > 10  # the walk found the engine's modules
    offending = {
        str(path): sorted(m for m in imported_modules(path) if m.split(".")[0] in PROJECT_PACKAGES)
        for path in sources
    }
    assert {path: mods for path, mods in offending.items() if mods} == {}


def test_the_project_declares_every_hot_read_with_callable_loaders():
    assert set(registry.namespaces()) == {
        "users:principal",
        "courses:list",
        "courses:detail",
        "users:progress",
        "rewards:history",
        "credentials:list",
    }
    for manager in registry.all():
        assert callable(manager.loader), manager.namespace
        assert manager.loader.__module__.endswith(".selectors"), manager.namespace
