"""Import Feast in a pipeline task without the two costs of its import that the task never uses.

``import feast`` takes 5-15 s on a 2-core machine, and most of it is not Feast's own work:

- typeguard's ``@typechecked``, on many of Feast's classes, parses and recompiles the source of
  each decorated class's module: about half of the import, and again for each module Feast
  imports later (its offline store reading a source: ~0.8 s more). Those checks catch wrong
  argument types in feature definitions; the project was checked with them on before the run
  (``aiinfra run`` and ``compile`` call ``check_project``).
- Feast imports torch for ``to_tensor`` on its results, which the platform never calls: 2-4 s in
  the build task, the one task that needs Feast and not torch.

:func:`import_feast_lean` imports Feast with both left out. It is for the build task's own
process only: from the call on, ``@typechecked`` does nothing in that process, and Feast's
``to_tensor`` is unavailable in it. Anywhere else (the CLI, tests, serving) Feast is imported as
usual.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any


def import_feast_lean() -> None:
    """Import Feast without torch, and turn typeguard's instrumentation off for the rest of the
    process (a no-op when Feast is imported already)."""
    if "feast" in sys.modules:
        return
    _turn_typechecked_off()
    with _torch_hidden():
        import feast  # noqa: F401


def _no_op_typechecked(target: Any = None, **_options: Any) -> Any:
    """typeguard's decorator with nothing done: ``@typechecked`` and ``@typechecked(...)``."""
    return target if target is not None else _no_op_typechecked


def _turn_typechecked_off() -> None:
    # Feast binds the decorator with ``from typeguard import typechecked`` as each of its modules
    # is imported, some only when first used: replacing the package's attribute covers them all.
    try:
        import typeguard  # Feast's dependency, not ours: if Feast drops it, nothing to skip
    except ImportError:
        return
    typeguard.typechecked = _no_op_typechecked


@contextlib.contextmanager
def _torch_hidden() -> Iterator[None]:
    """``import torch`` fails while inside (Feast catches that and records torch as missing);
    once outside, torch imports as usual. If torch is loaded already, nothing is hidden."""
    if "torch" in sys.modules:
        yield
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # None: "import torch" raises
    try:
        yield
    finally:
        if sys.modules.get("torch", "loaded") is None:
            del sys.modules["torch"]
