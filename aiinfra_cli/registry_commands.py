"""Commands that read and move ``@champion``: ``history``, ``show``, ``promote``, ``rollback``.

Everything they read comes from ``aiinfra.release.registry_view``, which answers in well under
a second without importing MLflow; only a move that is allowed imports
``aiinfra.release.registry`` (seconds) to write it. Refusals say why in one line.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

from aiinfra.release import registry_view
from aiinfra.release.registry_view import RegistryUnavailable, VersionInfo

if TYPE_CHECKING:
    from aiinfra.project.config import PlatformConfig

# How ``show`` names the lineage tags register_model sets, in the order it prints them.
LINEAGE_LABELS = {
    "pipeline_run": "pipeline run",
    "git_commit": "git commit",
    "data_hash": "data hash",
    "feature_service": "feature service",
    "task": "task",
    "model_entry_point": "model",
    "eval_hash": "evaluation rows",
    "champion_at_evaluation": "compared with",
    "search_run_id": "search run",
}
LABEL_WIDTH = 17


def _fail(message: str) -> NoReturn:
    typer.secho(message, fg="red", err=True)
    raise typer.Exit(1)


def local_reports(config: PlatformConfig, pipeline_run: str) -> dict[str, Path]:
    """The report copies a local pipeline run left under ``<home>/runs/<pipeline_run>/``
    (validation report, summaries, gate report, log), by file name; {} when there are none."""
    if pipeline_run in {"", ".", ".."} or Path(pipeline_run).name != pipeline_run:
        return {}  # a tag naming another folder: nothing of this run's
    folder = config.home / "runs" / pipeline_run
    if not folder.is_dir():
        return {}
    return {path.name: path for path in sorted(folder.iterdir()) if path.is_file()}


def register(app: typer.Typer, config: Callable[[], PlatformConfig]) -> None:
    """Add the commands to ``app``; ``config`` returns the profile loaded by the callback."""

    @app.command()
    def history() -> None:
        """Every move of @champion: when, from which version to which, by whom, why.

        Example: aiinfra history
        """
        cfg = config()
        try:
            moves = registry_view.history(cfg.mlflow.tracking_uri, cfg.model_name)
        except (RegistryUnavailable, ValueError) as exc:
            _fail(str(exc))
        if not moves:
            typer.echo(f"{cfg.model_name}: @champion has never moved")
        for m in moves:
            move = f"{m.from_version:>5} -> {m.to_version:<5}"
            forced = " (forced)" if m.forced else ""
            typer.echo(f"{m.at}  {m.kind:<8} {move} by {m.by}: {m.reason}{forced}")

    @app.command()
    def show(version: str) -> None:
        """A version's lineage, metrics, checks, aliases and where its reports are.

        Example: aiinfra show 3
        """
        cfg = config()
        info = _version_or_fail(cfg, version)
        for line in describe(info, cfg.mlflow.tracking_uri, cfg):
            typer.echo(line)

    @app.command()
    def promote(
        version: str,
        reason: str = typer.Option("manual promotion", help="why (recorded on the version)"),
        force: bool = typer.Option(
            False, help="promote even if validation, the gate or the serving check did not pass"
        ),
    ) -> None:
        """Move @champion to VERSION (refused unless its validation and gate passed).

        Example: aiinfra promote 3 --reason "reviewed by risk team"
        """
        cfg = config()
        info = _version_or_fail(cfg, version)
        why = registry_view.why_refused(info.tags)
        if why and not force:
            _fail(
                f"version {version} of {cfg.model_name} cannot be promoted: {why} "
                "(use --force to override)"
            )
        from aiinfra.steps import shadow_evidence

        if not force and (lacking := shadow_evidence(cfg, version)):
            _fail(f"version {version} of {cfg.model_name} cannot be promoted yet: {lacking}")
        from aiinfra.release import registry  # MLflow: only for a move that will happen
        from aiinfra.steps import check_serving

        try:
            if not force:  # a person's override skips the checks, the serving one included
                check_serving(cfg, version)
            previous = registry.promote(
                cfg.mlflow.tracking_uri, cfg.model_name, version, reason=reason, force=force
            )
        except (registry.PromotionRefused, RegistryUnavailable) as exc:
            _fail(str(exc))
        typer.echo(f"@champion: {previous or 'none'} -> {version}")

    @app.command()
    def rollback(reason: str = typer.Option("", help="why (recorded in the history)")) -> None:
        """Move @champion back to the version it replaced (recorded like any promotion).

        Example: aiinfra rollback --reason "p99 latency regression"
        """
        cfg = config()
        uri = cfg.mlflow.tracking_uri
        try:
            refusal = registry_view.rollback_refusal(uri, cfg.model_name)
        except (RegistryUnavailable, ValueError) as exc:
            _fail(str(exc))
        if refusal:
            _fail(refusal)
        from aiinfra.release import registry  # MLflow: only for a move that will happen

        try:
            target = registry.rollback(uri, cfg.model_name, reason=reason)
        except (registry.PromotionRefused, RegistryUnavailable) as exc:
            _fail(str(exc))
        typer.echo(f"@champion rolled back to {target}")


def _version_or_fail(cfg: PlatformConfig, version: str) -> VersionInfo:
    """The version's record, or a one-line failure that lists the versions there are."""
    uri, name = cfg.mlflow.tracking_uri, cfg.model_name
    try:
        info = registry_view.version_info(uri, name, version)
        if info is not None:
            return info
        existing = registry_view.versions(uri, name)
    except (RegistryUnavailable, ValueError) as exc:
        _fail(str(exc))
    if not existing:
        _fail(f"{name} has no version {version}: no versions are registered at {uri}")
    _fail(f"{name} has no version {version} (versions: {', '.join(existing)})")


def describe(info: VersionInfo, tracking_uri: str, config: PlatformConfig) -> list[str]:
    """``show``'s lines for a version."""
    tags = info.tags
    aliases = ", ".join(f"@{a}" for a in info.aliases) or "no alias"
    lines = [f"{info.name} version {info.version} ({aliases})"]
    lines.append(_row("created", info.created.strftime("%Y-%m-%d %H:%M:%S UTC")))
    lines += [_row(label, tags[key]) for key, label in LINEAGE_LABELS.items() if tags.get(key)]
    lines += _checks(tags)
    lines += _metrics(info.metrics)
    lines += _reports(info, tracking_uri)
    local = local_reports(config, tags.get("pipeline_run", ""))
    lines += [_row("local reports" if i == 0 else "", str(p)) for i, p in enumerate(local.values())]
    return lines


def _row(label: str, value: str) -> str:
    return f"  {label:<{LABEL_WIDTH}}{value}"


def _checks(tags: dict[str, str]) -> list[str]:
    """Validation, the gate's decision and reason, whether it may be promoted, past moves."""
    validation = tags.get("validation", "not recorded")
    if summary := tags.get("validation_summary"):
        validation += f": {summary}"
    gate = tags.get("gate", "not recorded")
    if reason := tags.get("gate_reason"):
        gate += f": {reason}"
    if metric := tags.get("gate_metric"):
        gate += f" (on {metric})"
    why = registry_view.why_refused(tags)
    lines = [
        _row("validation", validation),
        _row("gate", gate),
        _row("promotion", f"refused: {why}" if why else "allowed (validation and gate passed)"),
    ]
    if promoted_at := tags.get("promoted_at"):
        forced = " (forced)" if tags.get("promotion_forced") == "true" else ""
        by, why_moved = tags.get("promoted_by", "?"), tags.get("promotion_reason", "")
        lines.append(_row("last promoted", f"{promoted_at} by {by}: {why_moved}{forced}"))
    for key, label in (("promotion_refused", "refused move"), ("deployment_error", "deploy error")):
        if tags.get(key):
            lines.append(_row(label, tags[key]))
    return lines


def _metrics(metrics: dict[str, float]) -> list[str]:
    """The run's metrics, sorted by name, a few to a line."""
    if not metrics:
        return [_row("metrics", "none recorded")]
    pairs = "  ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
    wrapped = textwrap.wrap(pairs, 96 - LABEL_WIDTH, break_long_words=False)
    return [_row("metrics" if i == 0 else "", line) for i, line in enumerate(wrapped)]


def _reports(info: VersionInfo, tracking_uri: str) -> list[str]:
    """The MLflow run's page and the report artifacts in it."""
    lines = []
    if url := info.run_url(tracking_uri):
        lines.append(_row("mlflow run", url))
    elif info.run_id:
        lines.append(_row("mlflow run", f"{info.run_id} (at {tracking_uri})"))
    if info.reports is None:
        listed = f"{', '.join(registry_view.REPORT_ARTIFACTS)} (not listed: run unreadable)"
    else:
        listed = ", ".join(info.reports) or "none"
    lines.append(_row("run reports", listed))
    return lines
