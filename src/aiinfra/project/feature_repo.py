"""A project's own Feast repo, read the way ``feast apply`` reads it: every top-level Python file
is imported and the Feast objects it defines are collected.

Feast's own ``parse_repo`` imports the files by a module name relative to the working
directory (the CLI changes into the repo first), so two repos with a ``definitions.py`` in one
process would see each other's module. Here each file gets a module name of its own and the
working directory is left alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feast import Entity, FeatureService, FeatureView
from feast.data_source import DataSource
from feast.on_demand_feature_view import OnDemandFeatureView

# Set while a repo's files are imported: where the platform keeps generated tables, for repos
# whose sources live under the platform home (the demo projects).
DATA_DIR_ENV = "AIINFRA_DATA_DIR"


class FeatureRepoError(ValueError):
    """The Feast repo cannot be read, or lacks what the project names."""


@dataclass(frozen=True)
class FeatureRepo:
    path: Path
    entities: dict[str, Entity]
    sources: dict[str, DataSource]
    views: dict[str, FeatureView]
    on_demand_views: dict[str, OnDemandFeatureView]
    services: dict[str, FeatureService]

    def objects(self) -> list[Any]:
        """Everything ``store.apply`` registers."""
        return [
            *self.entities.values(),
            *self.sources.values(),
            *self.views.values(),
            *self.on_demand_views.values(),
            *self.services.values(),
        ]

    def service(self, name: str) -> FeatureService:
        if name not in self.services:
            known = ", ".join(sorted(self.services)) or "none"
            raise FeatureRepoError(
                f"features.feature_service: the Feast repo {self.path} has no feature service "
                f"{name!r} (it defines: {known})"
            )
        return self.services[name]

    def service_views(self, name: str) -> list[FeatureView]:
        """The feature views a service reads (on-demand views are not supported)."""
        views = []
        for projection in self.service(name).feature_view_projections:
            if projection.name in self.on_demand_views:
                raise FeatureRepoError(
                    f"feature service {name!r} reads the on-demand view {projection.name!r}: "
                    "only stored feature views are supported"
                )
            views.append(self.views[projection.name])
        return views


def load(repo_path: Path, data_dir: Path | None = None) -> FeatureRepo:
    """Import the repo's top-level ``*.py`` files and collect their Feast objects."""
    if not (repo_path / "feature_store.yaml").exists():
        raise FeatureRepoError(
            f"features.repo_path: {repo_path} is not a Feast repo (no feature_store.yaml)"
        )
    found: dict[str, dict[str, Any]] = {
        "entities": {},
        "sources": {},
        "views": {},
        "on_demand_views": {},
        "services": {},
    }
    with _importable(repo_path), _data_dir(data_dir):
        for path in sorted(repo_path.glob("*.py")):
            if path.name.startswith(("_", "test_")):
                continue
            for value in vars(_import(path)).values():
                kind = _kind(value)
                if kind is not None:
                    found[kind][value.name] = value
    return FeatureRepo(repo_path, **found)


def _kind(value: Any) -> str | None:
    if isinstance(value, Entity):
        return "entities"
    if isinstance(value, DataSource):
        return "sources"
    if isinstance(value, OnDemandFeatureView):
        return "on_demand_views"
    if isinstance(value, FeatureView):
        return "views"
    if isinstance(value, FeatureService):
        return "services"
    return None


def _import(path: Path) -> Any:
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"_aiinfra_feature_repo_{digest}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FeatureRepoError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise FeatureRepoError(f"{path}: importing the Feast definitions failed: {exc}") from exc
    return module


@contextlib.contextmanager
def _importable(repo_path: Path) -> Iterator[None]:
    """The repo's own helper modules import while its files are read."""
    sys.path.insert(0, str(repo_path))
    try:
        yield
    finally:
        sys.path.remove(str(repo_path))


@contextlib.contextmanager
def _data_dir(data_dir: Path | None) -> Iterator[None]:
    if data_dir is None:
        yield
        return
    before = os.environ.get(DATA_DIR_ENV)
    os.environ[DATA_DIR_ENV] = str(data_dir)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(DATA_DIR_ENV, None)
        else:
            os.environ[DATA_DIR_ENV] = before
