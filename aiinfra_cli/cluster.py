"""Commands that take the pipeline to a Kubeflow cluster, and retraining without a person:
``compile``, ``submit``, ``schedule``, ``retrain``. The work is in ``pipelines.submit`` and
``aiinfra.monitoring.retraining``; these functions parse, call and print."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

import typer

from aiinfra.project.config import PlatformConfig

HostOpt = typer.Option(
    None, "--host", help="Kubeflow Pipelines API URL (default: kfp.host, KF_PIPELINES_ENDPOINT)"
)
CommitOpt = typer.Option(None, "--git-commit", help="commit to record (default: git HEAD)")


class Source(StrEnum):
    requests = "requests"
    data = "data"


def _fail(message: str) -> None:
    typer.secho(message, fg="red", err=True)
    raise typer.Exit(1)


def register(app: typer.Typer, config: Callable[[], PlatformConfig]) -> None:
    """Add the commands to ``app``; ``config`` returns the profile loaded by the callback."""

    @app.command("compile")
    def compile_pipeline(
        output: Path = typer.Option(Path("pipeline.yaml"), "--output", "-o"),
    ) -> None:
        """Compile the training pipeline to KFP IR YAML for a Kubeflow cluster.

        Example: aiinfra --config configs/cluster.yaml compile --output pipeline.yaml
        """
        from kfp import compiler

        from pipelines.training import build_pipeline

        compiler.Compiler().compile(build_pipeline(config()), str(output))
        typer.echo(f"wrote {output}")

    @app.command()
    def submit(host: str | None = HostOpt, git_commit: str | None = CommitOpt) -> None:
        """Upload the pipeline (a new version) and start a run in the profile's experiment.

        Example: KFP_TOKEN=... aiinfra --config configs/cluster.yaml submit --host https://kfp.example
        """
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
    ) -> None:
        """Create (or replace) the recurring training run on the cluster.

        Example: aiinfra --config configs/cluster.yaml schedule --cron "0 0 3 * * 1"
        """
        from pipelines import submit as kfp_submit
        from pipelines.local import git_commit as head

        try:
            done = kfp_submit.schedule(config(), git_commit or head(), host, cron)
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
        try:
            typer.echo(_start(cfg, target))
        except Exception as exc:
            _fail(f"retraining run failed: {exc}")


def _start(config: PlatformConfig, host: str | None) -> str:
    from pipelines.local import git_commit

    if host:
        from pipelines import submit as kfp_submit

        done = kfp_submit.submit(config, git_commit(), host)
        return f"run {done.run_id} started on {host}: {done.url}"
    from aiinfra_cli.workflow import run_training

    return run_training(config).describe()
