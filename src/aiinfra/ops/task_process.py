"""The process of one pipeline task: it runs one step, then exits.

A task's interpreter holds the objects of torch, MLflow, Feast or GX (millions of them), and
at exit Python runs full garbage collections over all of them before it ends: 1-1.5 s per task
on a 2-core machine, for memory the process is about to give back anyway.
"""

from __future__ import annotations

import atexit
import gc


def exit_without_final_collections() -> None:
    """At exit, move every object out of the collector's reach (``gc.freeze``) first, so the
    interpreter's last collections have nothing to walk. Objects are still freed by reference
    counting, outputs written and exit handlers run; what goes is collecting the reference
    cycles among them, whose ``__del__`` Python does not promise to run at exit anyway.
    """
    atexit.register(gc.freeze)
