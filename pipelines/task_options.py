"""How the tasks of a pipeline run on a cluster: caching, retries, the shared volume, secrets.

Applied to every task of the pipeline being defined, so a task added later gets the volume and
the secrets too. Everything comes from the config (``kfp:`` section) and lands in the compiled
spec; ``kfp.local`` accepts and ignores it, so one pipeline serves both.
"""

from __future__ import annotations

from typing import Any

from kfp import kubernetes
from kfp.dsl import pipeline_context

from aiinfra.project.config import PlatformConfig

# Tasks whose result depends on more than their inputs, or that change the registry. A cache
# hit would reuse a stale training set (the data store changed), a stale comparison with
# @champion (it moved), an old version number, or skip a promotion; monitoring reads the clock
# (the windows up to now): a hit would replay an old verdict. Never cached.
NEVER_CACHED = frozenset(
    {"build-training-set", "evaluate-model", "register-model", "promote-model", "monitor-model"}
)
# Reading the stores is the step that meets transient failures (a warehouse or Redis restart);
# it writes nothing shared, so running it again is safe. Registering is not: a retry could
# create a second version.
RETRIED = frozenset({"build-training-set"})


def configure(config: PlatformConfig) -> None:
    """Set the options on every task of the pipeline now being defined (call it last)."""
    kfp = config.kfp
    # The tasks defined so far in the enclosing @dsl.pipeline, conditions included.
    tasks: dict[str, Any] = pipeline_context.Pipeline.get_default_pipeline().tasks
    for name, task in tasks.items():
        # Caching only where it is safe, and only when the profile asks for it; the compiled
        # spec carries the choice per task (submit does not override it).
        task.set_caching_options(kfp.enable_caching and name not in NEVER_CACHED)
        if name in RETRIED and kfp.build_retries:
            task.set_retry(
                num_retries=kfp.build_retries, backoff_duration="30s", backoff_factor=2.0
            )
        if kfp.pvc:
            # Data, Feast file stores and reports live under `home`: one volume for all tasks.
            kubernetes.mount_pvc(task, pvc_name=kfp.pvc, mount_path=str(config.home))
        if kfp.secret and kfp.secret_env:
            kubernetes.use_secret_as_env(
                task, secret_name=kfp.secret, secret_key_to_env=dict(kfp.secret_env)
            )
