"""Commands that take the pipeline to a Kubeflow cluster, and retraining without a person:
``compile``, ``submit``, ``schedule``, ``retrain``. The work is in ``pipelines.submit`` and
``aiinfra.monitoring.retraining``; these functions parse, call and print."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from aiinfra.project.config import PlatformConfig
    from aiinfra_cli.console import Console

# What the CLI gives its commands to run a command's work quietly (see main._console).
ConsoleFactory = Callable[[str], contextlib.AbstractContextManager["Console"]]

HostOpt = typer.Option(
    None, "--host", help="Kubeflow Pipelines API URL (default: kfp.host, KF_PIPELINES_ENDPOINT)"
)
CommitOpt = typer.Option(None, "--git-commit", help="commit to record (default: git HEAD)")
AllowLocalOpt = typer.Option(
    False, "--allow-local", help="write this machine's URIs and paths into it anyway"
)


class Source(StrEnum):
    requests = "requests"
    data = "data"


class PipelineKind(StrEnum):
    training = "training"
    monitoring = "monitoring"  # monitor serving; the training pipeline when a rule fires


PipelineOpt = typer.Option(PipelineKind.training, "--pipeline", help="which pipeline")


def _fail(message: str) -> None:
    typer.secho(message, fg="red", err=True)
    raise typer.Exit(1)


def check_portable(config: PlatformConfig, what: str, allow_local: bool) -> None:
    """Refuse to write this machine's values into ``what`` (a pipeline or manifests meant for
    a cluster) unless ``allow_local``; say which environment overrides went into it."""
    from aiinfra.ops import portability

    overrides = portability.env_overrides()
    if overrides:
        typer.echo(f"environment overrides in the {what}: {', '.join(overrides)}")
    local = portability.local_values(config)
    if local and not allow_local:
        _fail(
            f"profile {config.profile!r} is for this machine, not a cluster; the {what} would "
            f"carry: {'; '.join(local)}. Use a cluster profile (--config configs/cluster.yaml), "
            "or --allow-local to write it anyway"
        )


def register(
    app: typer.Typer, config: Callable[[], PlatformConfig], console: ConsoleFactory
) -> None:
    """Add the commands to ``app``; ``config`` returns the profile loaded by the callback,
    ``console`` quiets a local run."""

    @app.command("compile")
    def compile_pipeline(
        output: Path = typer.Option(Path("pipeline.yaml"), "--output", "-o"),
        allow_local: bool = AllowLocalOpt,
        pipeline: PipelineKind = PipelineOpt,
    ) -> None:
        """Compile the training (or monitoring) pipeline to KFP IR YAML for a Kubeflow cluster.

        Example: aiinfra --config configs/cluster.yaml compile --pipeline monitoring -o m.yaml
        """
        check_portable(config(), "pipeline", allow_local)
        from kfp import compiler

        from pipelines.monitoring import build_monitoring_pipeline
        from pipelines.training import build_pipeline

        build = build_monitoring_pipeline if pipeline is PipelineKind.monitoring else build_pipeline
        compiler.Compiler().compile(build(config()), str(output))
        typer.echo(f"wrote {output} ({pipeline.value} pipeline)")

    @app.command()
    def submit(
        host: str | None = HostOpt,
        git_commit: str | None = CommitOpt,
        allow_local: bool = AllowLocalOpt,
    ) -> None:
        """Upload the pipeline (a new version) and start a run in the profile's experiment.

        Example: KFP_TOKEN=... aiinfra --config configs/cluster.yaml submit --host https://kfp.example
        """
        check_portable(config(), "pipeline", allow_local)
        from pipelines import submit as kfp_submit
        from pipelines.local import git_commit as head

        try:
            done = kfp_submit.submit(config(), git_commit or head(), host)
        except Exception as exc:
            _fail(f"submit failed: {exc}")
        typer.echo(f"run {done.run_id} started (pipeline version {done.version_id}): {done.url}")

    @app.command()
    def schedule(
        host: str | None = HostOpt,
        cron: str | None = typer.Option(None, help="KFP cron with seconds (default: kfp.schedule)"),
        git_commit: str | None = CommitOpt,
        allow_local: bool = AllowLocalOpt,
        pipeline: PipelineKind = PipelineOpt,
    ) -> None:
        """Create (or replace) the recurring run of the training (or monitoring) pipeline on
        the cluster; each pipeline has its own.

        Example: aiinfra --config configs/cluster.yaml schedule --cron "0 0 3 * * 1"
        (hourly monitoring: ... schedule --pipeline monitoring --cron "0 0 * * * *")
        """
        check_portable(config(), "pipeline", allow_local)
        from pipelines import submit as kfp_submit
        from pipelines.local import git_commit as head

        try:
            done = kfp_submit.schedule(
                config(), git_commit or head(), host, cron, which=pipeline.value
            )
        except Exception as exc:
            _fail(f"schedule failed: {exc}")
        typer.echo(f"recurring run {done.run_id} ({cron or config().kfp.schedule}): {done.url}")

    @app.command()
    def retrain(
        if_drifted: bool = typer.Option(
            False, "--if-drifted", help="only when recent data drifted from the champion's"
        ),
        source: Source = typer.Option(
            Source.requests,
            help="requests: the service's request log; data: the newest rows of a freshly "
            "built training set",
        ),
        host: str | None = HostOpt,
        dry_run: bool = typer.Option(False, "--dry-run", help="decide and print; start nothing"),
    ) -> None:
        """Start a training run: on the cluster when a KFP host is set, else on kfp.local.

        Example: aiinfra retrain --if-drifted --source requests
        """
        from aiinfra.monitoring import retraining
        from aiinfra_cli.workflow import ensure_mlflow

        cfg = config()
        if if_drifted:
            try:
                ensure_mlflow(cfg)  # the local profile's registry is a server started here
                decision = retraining.check(cfg, source.value)
            except Exception as exc:
                _fail(f"drift check failed: {exc}")
            if decision.features:
                typer.echo(decision.table())
            typer.echo(
                f"{'retraining' if decision.retrain else 'no retraining'}: {decision.reason}"
            )
            if not decision.retrain:
                return
        target = host or cfg.kfp.host
        if dry_run:
            typer.echo(f"dry run: would start a run {'on ' + target if target else 'locally'}")
            return
        if target:
            try:
                typer.echo(_submit(cfg, target))
            except Exception as exc:
                _fail(f"retraining run failed: {exc}")
            return
        from aiinfra_cli.workflow import run_training

        with console("retrain") as out:
            out.say(f"pipeline     {cfg.project.name} on kfp.local")
            for line in run_training(cfg).results():
                out.say(line)


def _submit(config: PlatformConfig, host: str) -> str:
    from pipelines import submit as kfp_submit
    from pipelines.local import git_commit

    done = kfp_submit.submit(config, git_commit(), host)
    return f"run {done.run_id} started on {host}: {done.url}"
