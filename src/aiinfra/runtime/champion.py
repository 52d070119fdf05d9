"""Which model a running service answers with: the registry's ``@champion``, swapped safely.

When ``@champion`` moves (the registry's webhook says so, or the periodic poll notices), the
new version is loaded beside the one being served, checked on a smoke row, and only then
swapped in with one reference assignment: in-flight requests finish on the old model, the next
ones get the new. A version that did not pass validation and the gate (unless a person's
forced promotion is recorded), or that fails to load or to answer, is never served; the reason
is recorded on the version (tag ``deployment_error``) and the old model keeps serving.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aiinfra.project.config import PlatformConfig
from aiinfra.project.schema import Schema
from aiinfra.release import registry
from aiinfra.training.model import TabularModel, trusted_entry_points

log = logging.getLogger(__name__)


def smoke_frame(model: TabularModel) -> pd.DataFrame:
    """One plausible row in the model's own encoding: numeric features at their training
    mean, categorical ones at their first category."""
    row: dict[str, Any] = dict(model.encoder.means)
    row.update(
        {name: (vocab[0] if vocab else "") for name, vocab in model.encoder.categories.items()}
    )
    return pd.DataFrame([row])


def check_model(model: TabularModel) -> None:
    """Raise unless the model gives one finite answer of its task's shape per row."""
    out = model.predict(smoke_frame(model))
    expected = (1, len(model.classes)) if model.task == "multiclass" else (1,)
    if out.shape != expected or not np.isfinite(out).all():
        raise ValueError(f"model failed the smoke check: output {out!r}")
    if model.task != "regression" and not ((out >= 0) & (out <= 1)).all():
        raise ValueError(f"model failed the smoke check: probabilities {out!r}")


@dataclass(frozen=True)
class Served:
    version: str
    model: TabularModel


class ChampionSlot:
    """The model being served, swapped atomically when @champion moves."""

    def __init__(
        self, config: PlatformConfig, schema: Schema | None = None, alias: str = registry.CHAMPION
    ) -> None:
        """``schema``: what the running service's types were built from; a champion trained
        on another contract is not served (None: any). ``alias``: the one it follows
        (``challenger`` for shadow traffic and canaries)."""
        self.config = config
        self.schema = schema
        self.alias = alias
        self._served: Served | None = None
        self._refreshing = threading.Lock()  # one load at a time (poller and webhook)
        self._stop = threading.Event()
        self._rejected: set[str] = set()
        self.last_error: str | None = None

    @property
    def served(self) -> Served | None:
        return self._served

    def refresh(self) -> bool:
        """Serve the current @champion if it is not the one served; True if it swapped.

        Failing to *fetch* a version (the registry or its artifact store is down, a timeout)
        is transient: the next poll tries again. A version that did not pass its checks is
        not served until a forced promotion is recorded on it. A version that fails to load
        or to answer, or breaks the serving contract, is rejected for good. Each refusal is
        recorded on the version (tag ``deployment_error``)."""
        uri, name = self.config.mlflow.tracking_uri, self.config.model_name
        with self._refreshing:
            pinned = self.config.serving.pinned_version
            version = pinned or registry.alias_version(uri, name, self.alias)
            current = self._served
            if version is None or (current is not None and current.version == version):
                return False
            if version in self._rejected:  # already failed: do not reload it every poll
                return False
            try:
                tags = registry.version_tags(uri, name, version)
            except Exception as exc:  # the registry's trouble: the next poll tries again
                self._retry_later(version, exc)
                return False
            # A pinned version is served for a serving check, before any promotion: the
            # caller decided it may be tried; it never answers users.
            if not pinned and not registry.passed_checks(tags):
                # Not rejected for good: a forced promotion recorded later makes it servable.
                self._unchecked(version, tags)
                return False
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    folder = registry.download_version(uri, name, version, Path(tmp))
                except Exception as exc:
                    if registry.is_missing(exc):
                        self._reject(version, exc)
                    else:  # the registry or its artifact store is down or slow
                        self._retry_later(version, exc)
                    return False
                try:
                    candidate = TabularModel.load(
                        folder, self.config.project.root, trusted_entry_points(self.config.model)
                    )
                    check_model(candidate)
                    self._check_contract(candidate)
                except Exception as exc:  # keep serving the old model, whatever broke
                    self._reject(version, exc)
                    return False
            self._served = Served(version, candidate)  # the swap: one reference assignment
            self.last_error = None
        log.info("now serving %s version %s", name, version)
        return True

    def _check_contract(self, candidate: TabularModel) -> None:
        if self.schema is None:
            return
        if candidate.schema.serving_contract() != self.schema.serving_contract():
            raise ValueError(
                "its task, classes, entity keys or request features differ from those this "
                "service was started with (restart the service to serve it)"
            )

    def _retry_later(self, version: str, exc: Exception) -> None:
        self.last_error = f"version {version} not fetched (will retry): {exc}"
        log.warning(self.last_error)

    def _unchecked(self, version: str, tags: dict[str, str]) -> None:
        reason = (
            "it did not pass validation and the gate, and no forced promotion is recorded "
            f"(validation={tags.get('validation', 'missing')}, gate={tags.get('gate', 'missing')})"
        )
        if self.alias != registry.CHAMPION:  # a challenger the gate held back: not shadowed
            self.last_error = f"version {version} not loaded: {reason}"
            return
        if self.last_error is None or reason not in self.last_error:
            self._record(version, reason)

    def _reject(self, version: str, exc: Exception) -> None:
        self._rejected.add(version)
        self._record(version, str(exc))

    def _record(self, version: str, reason: str) -> None:
        self.last_error = f"version {version} not deployed: {reason}"
        log.error(self.last_error)
        try:
            registry.client(self.config.mlflow.tracking_uri).set_model_version_tag(
                self.config.model_name, version, "deployment_error", self.last_error[:4000]
            )
        except Exception:  # recording is best effort; serving goes on regardless
            log.exception("could not record the deployment error on version %s", version)

    def refresh_soon(self) -> None:
        """Refresh in the background (a webhook must be answered quickly)."""
        threading.Thread(target=self._safe_refresh, name="champion-refresh", daemon=True).start()

    def _safe_refresh(self) -> None:
        try:
            self.refresh()
        except Exception:  # the registry may be briefly down; the poller tries again
            log.exception("champion refresh failed")

    def watch(self) -> threading.Thread:
        """Poll the registry in a daemon thread until :meth:`stop` (the webhook's safety net)."""

        def loop() -> None:
            while not self._stop.wait(self.config.serving.poll_seconds):
                self._safe_refresh()

        thread = threading.Thread(target=loop, name="champion-watcher", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
