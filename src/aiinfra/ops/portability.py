"""Whether a profile can leave this machine: the values in it that only mean something here.

``compile``, ``submit`` and ``manifests`` write the profile into artifacts that run elsewhere
(a pipeline's parameters, a ConfigMap). A loopback MLflow URI, a path under this user's
folders or a serving host that only listens on loopback would be baked into them silently;
these functions name each such value, and the environment overrides that went into the profile.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

from aiinfra.project.config import PlatformConfig
from aiinfra.project.config_errors import ENV_DELIMITER, ENV_PREFIX

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def local_values(config: PlatformConfig) -> list[str]:
    """Each setting whose value points at this machine, with why."""
    found: list[str] = []
    tracking = urlparse(config.mlflow.tracking_uri)
    if tracking.scheme in ("", "file", "sqlite") or tracking.hostname in LOOPBACK_HOSTS:
        found.append(f"mlflow.tracking_uri = {config.mlflow.tracking_uri} (this machine)")
    if config.serving.host in LOOPBACK_HOSTS:
        found.append(f"serving.host = {config.serving.host} (a pod would listen on loopback only)")
    for name, path in (("home", config.home), ("project.root", config.project.root)):
        if _machine_path(path):
            found.append(f"{name} = {path} (a folder of this machine)")
    if not config.features.online_store:
        found.append("features.online_store unset (the repo's local store)")
    if config.features.registry is None:
        found.append(f"features.registry unset (a file under home: {config.feast_dir})")
    stores: dict[str, object] = {
        "features.online_store": config.features.online_store,
        "features.registry": config.features.registry,
    }
    for name, settings in stores.items():
        if any(host in str(settings) for host in LOOPBACK_HOSTS):
            found.append(f"{name} names a loopback host ({_first_loopback(str(settings))})")
    return found


def _first_loopback(text: str) -> str:
    return next(host for host in sorted(LOOPBACK_HOSTS) if host in text)


def env_overrides(environ: dict[str, str] | None = None) -> list[str]:
    """The names of the ``AIINFRA_`` variables that set a value of the profile (their values
    may be secrets: only names are shown)."""
    fields = set(PlatformConfig.model_fields)
    env = os.environ if environ is None else environ
    return sorted(
        name
        for name in env
        if name.startswith(ENV_PREFIX)
        and name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)[0] in fields
    )


def _machine_path(path: Path) -> bool:
    """A path that exists here, or lies under this user's home, the working folder or the
    temp folder (a cluster profile's paths are the images' and volumes')."""
    roots: Iterable[Path] = (Path.home(), Path.cwd(), Path(tempfile.gettempdir()))
    resolved = path.resolve()
    under = any(resolved.is_relative_to(root.resolve()) for root in roots if str(root) != "/")
    return under or resolved.exists()
