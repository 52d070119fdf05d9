"""``package.module:function`` references to a project's own code (its model, its data
generator), imported from the project's folder: the way a project plugs code into the platform
without the platform ever unpickling anything."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def resolve(
    spec: str, root: Path | None = None, setting: str = "entry_point"
) -> Callable[..., Any]:
    """The callable ``spec`` names; ``root`` (the project folder) is importable while it loads.

    Raises ImportError naming ``setting`` when the module or the attribute is not there."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ImportError(f"{setting}: {spec!r} is not of the form package.module:function")
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))  # stays: the entry point's own imports may be lazy
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ImportError(f"{setting}: cannot import {module_name!r} ({exc})") from exc
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ImportError(f"{setting}: {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ImportError(f"{setting}: {spec} is not callable")
    fn: Callable[..., Any] = target
    return fn
