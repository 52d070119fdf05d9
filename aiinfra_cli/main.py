"""``aiinfra``: the platform's command line.

Examples::

    aiinfra quickstart                      # everything, end to end, on the local profile
    aiinfra --config configs/smoke.yaml run # one training pipeline run on kfp.local
    aiinfra compile --output pipeline.yaml  # KFP IR YAML for a Kubeflow cluster
    aiinfra retrain --if-drifted            # a run only when recent data drifted
    aiinfra promote 3 --reason "reviewed"   # a person moving @champion
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aiinfra_cli import (
    cluster,
    monitor_command,
    registry_commands,
    shadow_command,
    trace_command,
)

if TYPE_CHECKING:
    from aiinfra.project.config import PlatformConfig
    from aiinfra_cli.console import Console

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
data_app = typer.Typer(no_args_is_help=True, help="Demo data of a project with a generator.")
features_app = typer.Typer(no_args_is_help=True, help="The Feast feature repo.")
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML profile (default configs/local.yaml)")
]
HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="state directory (default ./.aiinfra)")
]


class _State:
    config: PlatformConfig
    verbose: bool = False


state = _State()
# Commands that run without a loadable profile.
NO_PROFILE = {"init"}


@app.callback()
def main(
    ctx: typer.Context, config: ConfigOpt = None, home: HomeOpt = None, verbose: bool = False
) -> None:
    """Global options (--config, --home, --verbose) go before or after the command."""
    from aiinfra.project.config import load_config
    from aiinfra.project.config_errors import ConfigError

    state.verbose = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if ctx.invoked_subcommand in NO_PROFILE:
        return  # it writes a profile: there is none to load yet
    overrides: dict[str, Any] = {"home": home} if home else {}
    try:
        state.config = load_config(config, **overrides)
    except (ConfigError, FileNotFoundError) as exc:
        typer.secho(f"config: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None


def _fail(message: str) -> None:
    typer.secho(message, fg="red", err=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def _console(command: str) -> Iterator[Console]:
    """Run a command's work quietly: one line per pipeline task, the full log in a file under
    the home. A failure prints one line and where the log is (its traceback with --verbose)."""
    from aiinfra_cli.console import CommandFailed, run_console

    cfg = state.config
    try:
        with run_console(cfg.home, cfg.pipeline_root, command, state.verbose, sys.stdout) as out:
            out.say(f"log          {out.log_file}")
            yield out
    except CommandFailed as exc:
        if state.verbose and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__)
        _fail(f"{exc}\nfull log: {exc.log_file}")


@data_app.command("generate")
def data_generate(force: bool = typer.Option(False, help="overwrite existing data")) -> None:
    """Write a demo project's tables under <home>/data (its project.generator).

    Example: aiinfra data generate --force
    """
    from aiinfra_cli.workflow import generate_data

    cfg = state.config
    if cfg.project.generator is None:
        _fail(f"project {cfg.project.name} has no generator: its label table is {cfg.labels_path}")
    if not generate_data(cfg, force):
        typer.echo(f"data already at {cfg.labels_path} (use --force to regenerate)")
        return
    typer.echo(f"wrote the tables of {cfg.project.name} under {cfg.data_dir}")


@features_app.command("apply")
def features_apply() -> None:
    """Register the project's Feast repo and materialize the online store up to now.

    Example: aiinfra features apply
    """
    from aiinfra_cli.workflow import apply_features

    cfg = state.config
    try:
        count = apply_features(cfg)
    except (OSError, ValueError) as exc:
        _fail(f"features apply failed: {exc}")
    typer.echo(f"applied {count} objects and materialized the online store ({cfg.feast_dir})")


@app.command()
def check() -> None:
    """Check the project's definition (label table, Feast repo, task, model, gate) and show
    the schema built from it; runs nothing.

    Example: aiinfra --config my-project/profile.yaml check
    """
    from aiinfra.project.definition import ProjectError, metric_for
    from aiinfra.steps import check_project

    cfg = state.config
    try:
        project = check_project(cfg)
    except ProjectError as exc:
        _fail(f"project {cfg.project.name}: {exc}")
    s = project.schema
    typer.echo(
        f"project {cfg.project.name}: {s.task}, label {s.label!r}"
        + (f" (classes: {', '.join(map(str, s.classes))})" if s.classes else "")
        + f"; {project.label_rows} rows in {project.labels_path}"
    )
    typer.echo(f"entities: {', '.join(s.entity_names)}; event time: {s.timestamp}")
    for f in s.features:
        if f.kind == "categorical":
            detail = ", ".join(f.categories) if f.categories else "categories learned"
        else:
            low = "" if f.min_value is None else f"{f.min_value:g}"
            high = "" if f.max_value is None else f"{f.max_value:g}"
            detail = f"{low}..{high}" if low or high else "bounds learned"
        typer.echo(f"  {f.name:<28} {f.kind:<12} {f.source:<20} {detail}")
    if project.ignored_columns:
        typer.echo(f"ignored (not declared): {', '.join(project.ignored_columns)}")
    typer.echo(f"model: {cfg.model.entry_point}; gate: {metric_for(cfg)}; ok")


@app.command()
def up() -> None:
    """Start the local MLflow server (sqlite + proxied artifacts) if it is not running.

    Example: aiinfra up
    """
    from aiinfra.ops import local_servers

    svc = local_servers.mlflow_service(state.config)
    try:
        pid = local_servers.start(svc)
    except local_servers.ServerStartError as exc:
        _fail(str(exc))
    typer.echo(f"MLflow at {state.config.mlflow.tracking_uri} (pid {pid}, log {svc.log_file})")


@app.command()
def down() -> None:
    """Stop the local servers started by `up`, `serve` or `quickstart`.

    Example: aiinfra down
    """
    from aiinfra.ops import local_servers

    for svc in (
        local_servers.bentoml_service(state.config),
        local_servers.mlflow_service(state.config),
    ):
        typer.echo(f"{svc.name}: {'stopped' if local_servers.stop(svc) else 'not running'}")


@app.command()
def run(
    git_commit: str | None = typer.Option(None, help="commit to record (default: git HEAD)"),
) -> None:
    """Run the training pipeline on the local runner (kfp.local).

    Example: aiinfra --config configs/smoke.yaml run
    """
    from aiinfra_cli.workflow import run_training

    with _console("run") as console:
        console.say(f"pipeline     {state.config.project.name} on kfp.local")
        outcome = run_training(state.config, git_commit)
        for line in outcome.results():
            console.say(line)


@app.command()
def manifests(
    image: str | None = typer.Option(None, help="serving image (default: kfp.serving_image)"),
    output: Path = typer.Option(..., "--output", "-o", help="YAML file to write"),
    model_version: str | None = typer.Option(None, help="model version to record on the pods"),
    replicas: int = typer.Option(2, min=1, help="HPA minimum (maximum is 4x)"),
    namespace: str = typer.Option("aiinfra"),
    allow_local: bool = cluster.AllowLocalOpt,
) -> None:
    """Kubernetes manifests for serving (ConfigMap, NetworkPolicy, Deployment, Service, HPA).

    Example: aiinfra --config configs/cluster.yaml manifests -o serving.yaml
    """
    from aiinfra.ops import k8s

    cluster.check_portable(state.config, "manifests", allow_local)

    objects = k8s.serving_manifests(
        state.config,
        image or state.config.kfp.serving_image,
        replicas,
        namespace,
        model_version=model_version,
    )
    output.write_text(k8s.to_yaml(objects))
    typer.echo(f"wrote {output} ({', '.join(o['kind'] for o in objects)})")


@app.command("training-job")
def training_job_manifests(
    image: str | None = typer.Option(None, help="components image (default: kfp.image)"),
    output: Path = typer.Option(..., "--output", "-o", help="YAML file to write"),
    nodes: int = typer.Option(2, min=1, help="pods (one Master, the rest Workers)"),
    pvc: str = typer.Option("aiinfra-training", help="shared volume with the training set"),
    training_set: str = typer.Option("data/training_set.parquet", help="path in the volume"),
    run_dir: str = typer.Option("runs/latest", help="model, checkpoints, summary: in the volume"),
    namespace: str = typer.Option("aiinfra"),
    allow_local: bool = cluster.AllowLocalOpt,
) -> None:
    """A Kubeflow PyTorchJob for multi-node data-parallel training (torchrun in every pod).

    Example: aiinfra --config configs/cluster.yaml training-job --nodes 4 -o train-job.yaml
    """
    from aiinfra.ops import k8s, training_job

    cluster.check_portable(state.config, "manifests", allow_local)

    objects = training_job.training_job_manifests(
        state.config, image or state.config.kfp.image, training_set, run_dir, nodes, pvc, namespace
    )
    output.write_text(k8s.to_yaml(objects))
    typer.echo(f"wrote {output} ({', '.join(o['kind'] for o in objects)})")


@app.command()
def serve(
    foreground: bool = typer.Option(False, help="run in this terminal instead of detached"),
) -> None:
    """Serve the current @champion with BentoML (follows @champion as it moves).

    Example: aiinfra serve && curl -s localhost:3000/readyz
    """
    import os

    from aiinfra.ops import local_servers
    from aiinfra.release import registry
    from aiinfra_cli.workflow import register_webhook, start_serving

    cfg = state.config
    if registry.alias_version(cfg.mlflow.tracking_uri, cfg.model_name, registry.CHAMPION) is None:
        _fail(
            f"{cfg.model_name} has no @champion at {cfg.mlflow.tracking_uri}: "
            "run `aiinfra run` first"
        )
    try:
        if foreground:
            svc = local_servers.bentoml_service(cfg)
            local_servers.check_startable(svc)
            register_webhook(cfg)
            os.execvpe(svc.command[0], svc.command, {**os.environ, **svc.env})
        base_url = start_serving(cfg)
    except RuntimeError as exc:  # the registry refused the webhook, or BentoML did not start
        _fail(str(exc))
    typer.echo(f"BentoML at {base_url} (log {cfg.run_dir / 'bentoml.log'}); registry webhook set")


@app.command()
def quickstart() -> None:
    """Everything on the local profile: MLflow, data, features, pipeline, serving, a prediction.

    Example: aiinfra quickstart   (run it again: it retrains and promotes only a better model)
    """
    from aiinfra_cli.workflow import quickstart as run_quickstart

    with _console("quickstart") as console:
        run_quickstart(state.config, say=console.say)


@app.command()
def init(
    directory: Path = typer.Argument(..., help="folder to write the project into"),
    data: Path = typer.Option(..., "--data", help="the table: Parquet or CSV"),
    entity: list[str] = typer.Option(..., "--entity", help="entity key column (repeatable)"),
    timestamp: str = typer.Option(..., "--timestamp", help="when each row's label was known"),
    label: str = typer.Option(..., "--label", help="the column to predict"),
    task: str | None = typer.Option(
        None, "--task", help="binary | multiclass | regression (default: inferred)"
    ),
    request_feature: list[str] = typer.Option(
        [], "--request-feature", help="a column sent with each request (repeatable)"
    ),
    name: str | None = typer.Option(None, "--name", help="project name (default: DIR's name)"),
    force: bool = typer.Option(False, "--force", help="write into a folder that is not empty"),
) -> None:
    """Write a working project (data, Feast repo, profile, README) from one table.

    Example: aiinfra init churn --data t.csv --entity user_id --timestamp ts --label churned
    """
    from typing import cast, get_args

    from aiinfra.project.config import Task
    from aiinfra.project.definition import ProjectError
    from aiinfra.project.scaffold import init_project

    if task is not None and task not in get_args(Task):
        _fail(f"--task {task}: use {', '.join(get_args(Task))}")
    try:
        made = init_project(
            directory, data, entity, timestamp, label, cast("Task | None", task),
            request_features=request_feature, name=name, force=force,
        )  # fmt: skip
    except ProjectError as exc:
        _fail(str(exc))
    typer.echo(f"project {made.name}: {made.rows} rows of {data.name}")
    typer.echo(f"task:     {made.task} ({made.task_reason})")
    typer.echo("features:")
    for feature in made.features:
        typer.echo(f"  {feature.describe()}")
    for column, why in made.ignored:
        typer.echo(f"ignored:  {column}: {why}")
    for note in made.notes:
        typer.secho(f"note:     {note}", fg="yellow")
    typer.echo(f"wrote:    {', '.join(str(p.relative_to(made.directory)) for p in made.files)}")
    typer.echo(f"          in {made.directory}")
    typer.echo("next:")
    for command in made.next_commands:
        typer.echo(f"  {command}")


# compile, submit, schedule, retrain: the way to a cluster and retraining without a person.
cluster.register(app, lambda: state.config, _console)
# history, show, promote, rollback: the registry, read without importing MLflow.
registry_commands.register(app, lambda: state.config)
# trace: a served request back to its model version, data and stored features.
trace_command.register(app, lambda: state.config)
shadow_command.register(app, lambda: state.config)
monitor_command.register(app, lambda: state.config, _console)

# Options of the callback, which click only takes before the command's name.
GLOBAL_OPTIONS = {"--config": True, "-c": True, "--home": True, "--verbose": False}


def global_options_first(args: list[str]) -> list[str]:
    """``aiinfra run --config x`` as ``aiinfra --config x run``: global options found after
    the command's name move before it (with their value). Stops at ``--``."""
    moved: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        name = arg.split("=", 1)[0]
        if arg == "--":
            rest += args[index:]
            break
        if name in GLOBAL_OPTIONS and rest:  # before any command: already in place
            takes_value = GLOBAL_OPTIONS[name] and "=" not in arg
            moved += args[index : index + 1 + takes_value]
            index += 1 + takes_value
            continue
        rest.append(arg)
        index += 1
    return moved + rest


def cli() -> None:
    """The ``aiinfra`` entry point."""
    app(args=global_options_first(sys.argv[1:]), prog_name="aiinfra")


if __name__ == "__main__":
    cli()
