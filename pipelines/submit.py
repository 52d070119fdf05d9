"""Send a pipeline to Kubeflow Pipelines: upload it (a new version on each call), then start a
run of the training pipeline, or a recurring run of it or of the monitoring pipeline, in the
profile's experiment.

Deliberately thin over ``kfp.Client``: what runs on the cluster is the compiled spec, which the
golden test checks. Authentication comes from the environment: a bearer token in
``KFP_TOKEN``, else the pod's projected service-account token (in-cluster, e.g. from a
notebook or a CI runner inside the cluster), else none (a ``kubectl port-forward``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kfp import client as kfp_client
from kfp import compiler

from aiinfra.project.config import PlatformConfig
from pipelines.monitoring import build_monitoring_pipeline, monitoring_pipeline_name
from pipelines.training import build_pipeline, pipeline_name

TOKEN_ENV = "KFP_TOKEN"
DESCRIPTION = "Feast -> GX validation -> PyTorch -> MLflow registry, promotion behind a gate"
MONITORING_DESCRIPTION = "monitor the served model; the training pipeline when a rule fires"
TRAINING, MONITORING = "training", "monitoring"


@dataclass(frozen=True)
class Pipeline:
    """One of the project's pipelines, as uploaded: its own name, so each has its versions."""

    name: str
    func: Any  # the @dsl.pipeline
    description: str
    purpose: str  # what a recurring run of it is for

    def accepts(self, params: dict[str, str]) -> dict[str, str]:
        """The parameters it declares (the monitoring pipeline takes no ``trigger``: a run
        given an unknown one is refused)."""
        declared = self.func.component_spec.inputs or {}
        return {k: v for k, v in params.items() if k in declared}


def pipeline_for(config: PlatformConfig, which: str = TRAINING) -> Pipeline:
    """``which`` of the project's pipelines, built for ``config``."""
    if which == MONITORING:
        return Pipeline(
            monitoring_pipeline_name(config),
            build_monitoring_pipeline(config),
            MONITORING_DESCRIPTION,
            "monitoring",
        )
    if which != TRAINING:
        raise ValueError(f"no pipeline {which!r}: {TRAINING} or {MONITORING}")
    return Pipeline(pipeline_name(config), build_pipeline(config), DESCRIPTION, "retraining")


@dataclass(frozen=True)
class Submitted:
    pipeline_id: str
    version_id: str
    experiment_id: str
    run_id: str
    url: str


def connect(config: PlatformConfig, host: str | None = None) -> Any:
    """A ``kfp.Client`` for ``host`` (else ``kfp.host``, else KF_PIPELINES_ENDPOINT or the
    in-cluster API), authenticated from the environment."""
    kwargs: dict[str, Any] = {"host": host or config.kfp.host}
    if config.kfp.namespace:
        kwargs["namespace"] = config.kfp.namespace
    token = os.environ.get(TOKEN_ENV)
    sa_token = Path(
        os.environ.get(kfp_client.KF_PIPELINES_SA_TOKEN_ENV, kfp_client.KF_PIPELINES_SA_TOKEN_PATH)
    )
    if token:
        kwargs["existing_token"] = token
    elif sa_token.exists():
        from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(str(sa_token))
    return kfp_client.Client(**kwargs)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def upload(
    client: Any, config: PlatformConfig, git_commit: str, pipeline: Pipeline | None = None
) -> tuple[str, str]:
    """Compile and upload ``pipeline`` (default: training): the pipeline on first use, a new
    version of it afterwards (named after the commit and the time, so the UI shows which code
    each version is)."""
    pipeline = pipeline or pipeline_for(config)
    with tempfile.TemporaryDirectory() as tmp:
        package = str(Path(tmp) / "pipeline.yaml")
        compiler.Compiler().compile(pipeline.func, package)
        pipeline_id = client.get_pipeline_id(pipeline.name)
        if pipeline_id is None:
            created = client.upload_pipeline(
                package, pipeline_name=pipeline.name, description=pipeline.description
            )
            pipeline_id = created.pipeline_id
            versions = client.list_pipeline_versions(pipeline_id).pipeline_versions or []
            return str(pipeline_id), str(versions[0].pipeline_version_id)
        version = client.upload_pipeline_version(
            package,
            pipeline_version_name=f"{git_commit}-{_stamp()}",
            pipeline_id=pipeline_id,
            description=pipeline.description,
        )
        return str(pipeline_id), str(version.pipeline_version_id)


def parameters(config: PlatformConfig, git_commit: str, trigger: str = "") -> dict[str, str]:
    """The run's parameters: the whole profile, as kfp.local gets it, the commit, and why a
    monitoring rule started the run (if one did)."""
    return {"config_json": config.to_json(), "git_commit": git_commit, "trigger": trigger}


def _prepared(
    config: PlatformConfig,
    git_commit: str,
    host: str | None,
    client: Any,
    pipeline: Pipeline | None = None,
) -> tuple[Any, str, str, Any]:
    """What a run and a schedule both need: the client, the uploaded version, the experiment."""
    client = client or connect(config, host)
    pipeline_id, version_id = upload(client, config, git_commit, pipeline)
    experiment = client.create_experiment(
        config.kfp.experiment or config.project.name, namespace=config.kfp.namespace
    )
    return client, pipeline_id, version_id, experiment


def _submitted(
    config: PlatformConfig,
    host: str | None,
    ids: tuple[str, str],
    experiment: Any,
    run_id: str,
    page: str,
) -> Submitted:
    base = (host or config.kfp.host or "").rstrip("/")
    url = f"{base}/#/{page}/{run_id}"
    return Submitted(*ids, str(experiment.experiment_id), str(run_id), url)


def submit(
    config: PlatformConfig,
    git_commit: str,
    host: str | None = None,
    client: Any = None,
    trigger: str = "",
) -> Submitted:
    """Upload the pipeline and start one run in ``kfp.experiment`` (``trigger``: why a
    monitoring rule started it: the run's parameter in the Kubeflow UI)."""
    client, pipeline_id, version_id, experiment = _prepared(config, git_commit, host, client)
    # enable_caching is left unset: the compiled spec decides per task (task_options).
    run = client.run_pipeline(
        experiment_id=experiment.experiment_id,
        job_name=f"{pipeline_name(config)}-{_stamp()}",
        params=parameters(config, git_commit, trigger),
        pipeline_id=pipeline_id,
        version_id=version_id,
        service_account=config.kfp.service_account,
    )
    ids = (pipeline_id, version_id)
    return _submitted(config, host, ids, experiment, run.run_id, "runs/details")


def schedule(
    config: PlatformConfig,
    git_commit: str,
    host: str | None = None,
    cron: str | None = None,
    client: Any = None,
    which: str = TRAINING,
) -> Submitted:
    """Upload the pipeline ``which`` (training or monitoring) and (re)create its recurring run:
    one schedule per pipeline and experiment, so scheduling again replaces it rather than
    adding a second."""
    pipeline = pipeline_for(config, which)
    client, pipeline_id, version_id, experiment = _prepared(
        config, git_commit, host, client, pipeline
    )
    name = f"{pipeline.name}-scheduled"
    existing = client.list_recurring_runs(experiment_id=experiment.experiment_id, page_size=100)
    for old in existing.recurring_runs or []:
        if old.display_name == name:
            client.delete_recurring_run(old.recurring_run_id)
    recurring = client.create_recurring_run(
        experiment_id=experiment.experiment_id,
        job_name=name,
        description=f"{pipeline.purpose} on a schedule ({cron or config.kfp.schedule})",
        cron_expression=cron or config.kfp.schedule,
        max_concurrency=1,  # a slow run never overlaps the next
        no_catchup=True,  # after a pause, one run, not one per missed slot
        params=pipeline.accepts(parameters(config, git_commit)),
        pipeline_id=pipeline_id,
        version_id=version_id,
        service_account=config.kfp.service_account,
    )
    ids = (pipeline_id, version_id)
    return _submitted(
        config, host, ids, experiment, recurring.recurring_run_id, "recurringrun/details"
    )
