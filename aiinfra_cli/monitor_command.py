"""``aiinfra monitor``: the served model's windows, its report, and the retraining run its
rules call for (locally, or on the cluster when a KFP host is set, as ``retrain`` does)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from aiinfra_cli.cluster import ConsoleFactory, HostOpt

if TYPE_CHECKING:
    from aiinfra.project.config import PlatformConfig


def register(
    app: typer.Typer, config: Callable[[], PlatformConfig], console: ConsoleFactory
) -> None:
    @app.command()
    def monitor(
        retrain: bool = typer.Option(
            True, help="start the run the rules call for (--no-retrain: report only)"
        ),
        host: str | None = HostOpt,
    ) -> None:
        """Figures per window of the prediction log (volume, errors, latency, feature and
        prediction drift, live performance once labels arrive) in one HTML report, MLflow and
        Prometheus; a retraining run when a rule fires (monitoring.rules).

        Example: aiinfra monitor --no-retrain
        """
        from aiinfra.monitoring import monitor as monitoring
        from aiinfra_cli.workflow import ensure_mlflow, run_training

        cfg = config()
        try:
            ensure_mlflow(cfg)  # the local profile's registry is a server started here
            outcome = monitoring.run(cfg, retrain=retrain)
        except Exception as exc:
            typer.secho(f"monitoring failed: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
        report = outcome.report
        typer.echo(f"monitoring   {report.summary()}")
        typer.echo(f"report       {outcome.html_path}")
        for reason in report.fired:
            typer.echo(f"rule fired   {reason}")
        if report.fired and not outcome.trigger:
            typer.echo(f"retraining   {report.action}")
        if not outcome.trigger:
            return
        target = host or cfg.kfp.host
        if target:
            from pipelines import submit as kfp_submit
            from pipelines.local import git_commit

            done = kfp_submit.submit(cfg, git_commit(), target, trigger=outcome.trigger)
            typer.echo(f"retraining   run {done.run_id} started on {target}: {done.url}")
            return
        with console("retrain") as out:
            out.say(f"retraining   {cfg.project.name} on kfp.local, because: {outcome.trigger}")
            for line in run_training(cfg, trigger=outcome.trigger).results():
                out.say(line)
