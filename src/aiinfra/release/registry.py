"""The MLflow model registry: log and register versions, read and move ``@champion``.

Promotion is an alias, never a stage. A version is created in one call with all its lineage
tags, so a reader never sees a half-described version.
"""

from __future__ import annotations

import getpass
import json
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

import aiinfra.release.mlflow_plugins  # noqa: F401 (before any MLflow call)
from aiinfra.project.schema import Schema

# Defined in the read-only view the command line uses without importing MLflow; the
# ``X as X`` names stay part of this module's interface.
from aiinfra.release.registry_view import CHAMPION as CHAMPION
from aiinfra.release.registry_view import HISTORY_PREFIX, PROMOTABLE_GATE, moves_from_tags
from aiinfra.release.registry_view import ChampionMove as ChampionMove
from aiinfra.release.registry_view import RegistryUnavailable as RegistryUnavailable
from aiinfra.release.registry_view import champion_lineage as champion_lineage

# torch (through the model) is imported where a model is loaded: reading and moving aliases
# (validation, promotion, the CLI) does without it.
if TYPE_CHECKING:
    import pandas as pd

    from aiinfra.training.model import TabularModel

CHALLENGER = "challenger"
PYFUNC_CODE = Path(__file__).with_name("pyfunc.py")


class PromotionRefused(RuntimeError):
    """A version may not become champion (its checks did not pass)."""


def _absent(exc: MlflowException) -> bool:
    """Whether MLflow says the thing asked for does not exist (as opposed to failing)."""
    if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    # A missing alias on an existing model is answered as a bad parameter.
    return exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in exc.message.lower()


def passed_checks(tags: dict[str, str]) -> bool:
    """Whether a version may serve: it passed validation and the gate (or was held by the gate
    for a person), or a person forced its promotion (recorded on the version by
    :func:`promote`)."""
    checked = (
        tags.get("validation") == "passed"
        and tags.get("gate") in PROMOTABLE_GATE
        and tags.get("serving_check") != "failed"  # absent: not asked for, or an older version
    )
    return checked or tags.get("promotion_forced") == "true"


def record_serving_check(
    tracking_uri: str, name: str, version: str, tags: dict[str, str], report: str
) -> None:
    """Record a serving check on the version (tags) and in its gate report (a section
    appended to ``reports/gate.md`` of the version's run)."""
    c = client(tracking_uri)
    for key, value in tags.items():
        c.set_model_version_tag(name, version, key, value)
    run_id = str(c.get_model_version(name, version).run_id)
    gate = ""
    with tempfile.TemporaryDirectory() as tmp:
        if any(f.path == "reports/gate.md" for f in c.list_artifacts(run_id, "reports")):
            gate = Path(c.download_artifacts(run_id, "reports/gate.md", tmp)).read_text()
    c.log_text(run_id, f"{gate.rstrip()}\n\n{report}".lstrip(), "reports/gate.md")


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    tags: dict[str, str]


def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def log_and_register(
    c: MlflowClient,
    experiment: str,
    model_name: str,
    model: TabularModel,
    example: pd.DataFrame,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    texts: dict[str, str],
    run_name: str | None = None,
    figures: dict[str, Any] | None = None,
    history: list[dict[str, float]] | None = None,
) -> RegisteredVersion:
    """Log a run (params, metrics, text artifacts by path, the model with its signature) and
    register it, all through ``c`` (no process-wide tracking URI is set).

    ``history`` holds one row of metrics per epoch (with its ``epoch``), logged as series.
    The version gets ``tags`` at creation and the ``@challenger`` alias.
    """
    from aiinfra.release.pyfunc import ARTIFACT_KEY

    features = example[list(model.encoder.columns)]
    signature = infer_signature(features, model.predict(features))
    run = c.create_run(experiment_id(c, experiment), run_name=run_name, tags=tags)
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        # A metric that has a per-epoch series is logged only as that series (a step-0 scalar
        # of the same name would be read as a first epoch); NaN is dropped.
        per_epoch = {k for row in history or [] for k in row}
        series = [Metric(k, v, now, 0) for k, v in metrics.items() if v == v and k not in per_epoch]
        for row in history or []:
            step = int(row["epoch"])
            series += [Metric(k, v, now, step) for k, v in row.items() if k != "epoch" and v == v]
        for start in range(0, len(series), 1000):  # the server's batch limit
            c.log_batch(run_id, metrics=series[start : start + 1000])
        c.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        for path, text in texts.items():
            c.log_text(run_id, text, path)
        for filename, figure in (figures or {}).items():
            c.log_figure(run_id, figure, f"plots/{filename}")
        with tempfile.TemporaryDirectory() as tmp:
            saved = model.save(Path(tmp) / "tabular_model")
            packaged = Path(tmp) / "model"
            mlflow.pyfunc.save_model(
                str(packaged),
                python_model=str(PYFUNC_CODE),
                artifacts={ARTIFACT_KEY: str(saved)},
                signature=signature,
                input_example=features.head(3),
                # Given explicitly: inferring them costs ~7 s per model.
                pip_requirements=["aiinfra", "torch", "safetensors", "pandas"],
            )
            c.log_artifacts(run_id, str(packaged), "model")
        version = c.create_model_version(
            name=_ensure_model(c, model_name),
            source=f"{run.info.artifact_uri}/model",
            run_id=run_id,
            tags=tags,
        )
    except BaseException:
        c.set_terminated(run_id, status="FAILED")
        raise
    c.set_terminated(run_id)
    c.set_registered_model_alias(model_name, CHALLENGER, version.version)
    return RegisteredVersion(model_name, str(version.version), run_id, dict(tags))


def version_of_run(c: MlflowClient, name: str, pipeline_run: str) -> str | None:
    """The version a pipeline run already registered, if any: a retried or resumed register
    task returns it instead of registering the same model twice."""
    if "'" in pipeline_run or "'" in name:
        raise ValueError(f"quote in model name or pipeline run: {name!r} {pipeline_run!r}")
    try:
        found = c.search_model_versions(f"name = '{name}' and tags.pipeline_run = '{pipeline_run}'")
    except MlflowException as exc:
        if _absent(exc):
            return None
        raise
    return str(max(int(v.version) for v in found)) if found else None


def experiment_id(c: MlflowClient, name: str) -> str:
    found = c.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(c.create_experiment(name))
    except MlflowException:  # created meanwhile by a concurrent run
        found = c.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def log_stopped_run(
    c: MlflowClient, experiment: str, tags: dict[str, str], texts: dict[str, str]
) -> str:
    """An MLflow run for a pipeline run that stopped before training: tags and reports only."""
    run = c.create_run(experiment_id(c, experiment), run_name="stopped-at-validation", tags=tags)
    for path, text in texts.items():
        c.log_text(run.info.run_id, text, path)
    c.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def _ensure_model(c: MlflowClient, name: str) -> str:
    try:
        c.get_registered_model(name)
    except MlflowException as missing:
        if not _absent(missing):
            raise
        try:
            c.create_registered_model(name)
        except MlflowException as exc:  # created meanwhile by a concurrent run
            if "already exists" not in str(exc).lower():
                raise
    return name


def alias_version(tracking_uri: str, name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the model or alias does not exist."""
    return _alias(client(tracking_uri), name, alias)


REFERENCE_PROFILE = "reference/profile.json"
REFERENCE_SCHEMA = "reference/schema.json"


def champion_reference(tracking_uri: str, name: str) -> tuple[str, dict[str, Any]] | None:
    """The champion's version and the profile of the data it was trained on, if any."""
    found = _champion_artifact(tracking_uri, name, REFERENCE_PROFILE)
    return None if found is None else (found[0], json.loads(found[1]))


def champion_schema(tracking_uri: str, name: str) -> Schema | None:
    """The schema the champion was trained with (recorded with every version), if any."""
    found = _champion_artifact(tracking_uri, name, REFERENCE_SCHEMA)
    return None if found is None else Schema.from_dict(json.loads(found[1]))


def _champion_artifact(tracking_uri: str, name: str, path: str) -> tuple[str, str] | None:
    version = _alias(client(tracking_uri), name, CHAMPION)
    if version is None:
        return None
    text = version_artifact(tracking_uri, name, version, path)
    return None if text is None else (version, text)


def version_artifact(tracking_uri: str, name: str, version: str, path: str) -> str | None:
    """A text artifact of ``version``'s run; None for a version registered before it existed."""
    c = client(tracking_uri)
    run_id = str(c.get_model_version(name, version).run_id)
    folder = str(Path(path).parent)
    if path not in {f.path for f in c.list_artifacts(run_id, folder)}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=path, dst_path=tmp, tracking_uri=tracking_uri
        )
        return Path(local).read_text()


def latest_version(tracking_uri: str, name: str) -> ModelVersion | None:
    """The highest-numbered version of ``name`` (None when it has none)."""
    found = client(tracking_uri).search_model_versions(
        f"name = '{name}'", max_results=1, order_by=["version_number DESC"]
    )
    return found[0] if found else None


def gate_time_scores(tracking_uri: str, name: str, version: str) -> dict[str, float]:
    """The metrics ``version`` scored at its own gate (its run's ``eval_*`` metrics)."""
    c = client(tracking_uri)
    run_id = str(c.get_model_version(name, version).run_id)
    found = c.get_run(run_id).data.metrics
    return {k.removeprefix("eval_"): v for k, v in found.items() if k.startswith("eval_")}


def version_tags(tracking_uri: str, name: str, version: str) -> dict[str, str]:
    return dict(client(tracking_uri).get_model_version(name, version).tags)


def download_version(tracking_uri: str, name: str, version: str, into: Path) -> Path:
    """Download a version's saved model (weights and config) into ``into``; its folder.

    The registry is asked for the version's artifact location explicitly: a ``models:/`` URI
    would be resolved against the process-wide registry URI (MLFLOW_REGISTRY_URI), which may
    name another server. The download stays inside ``into`` whatever the artifact paths say."""
    location = client(tracking_uri).get_model_version_download_uri(name, version)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=str(into), tracking_uri=tracking_uri
        )
    )
    if not local.resolve().is_relative_to(into.resolve()):
        raise ValueError(f"version {version} of {name} downloaded outside {into}: {local}")
    matches = [p for p in local.rglob("model.json") if p.resolve().is_relative_to(into.resolve())]
    if not matches:
        raise FileNotFoundError(f"version {version} of {name} has no saved model in its artifacts")
    return matches[0].parent


def load_version(
    tracking_uri: str,
    name: str,
    version: str,
    into: Path,
    root: Path | None = None,
    trusted: set[str] | None = None,
) -> TabularModel:
    """Download a version and rebuild it from its weights and config (no unpickling);
    ``trusted``: the entry points it may name (see TabularModel.load)."""
    from aiinfra.training.model import TabularModel

    folder = download_version(tracking_uri, name, version, into)
    return TabularModel.load(folder, root, trusted)


def is_missing(exc: BaseException) -> bool:
    """Whether a registry failure says the thing is not there (permanent), not that the
    registry is failing (transient)."""
    return isinstance(exc, FileNotFoundError) or (isinstance(exc, MlflowException) and _absent(exc))


def promote(
    tracking_uri: str,
    name: str,
    version: str,
    actor: str | None = None,
    reason: str = "",
    force: bool = False,
    as_evaluated: bool = False,
) -> str | None:
    """Move ``@champion`` to ``version``; returns the version it pointed at before.

    Refuses versions whose validation or evaluation gate did not pass, unless ``force``
    (which is recorded on the version and in the history). With ``as_evaluated`` (a pipeline's
    promotion) it also refuses when ``@champion`` is no longer the version the gate compared
    this one with: another run or a person moved it meanwhile, and the comparison is stale.
    """
    c = client(tracking_uri)
    try:
        tags = dict(c.get_model_version(name, version).tags)
    except MlflowException as exc:
        if not _absent(exc):
            raise
        raise PromotionRefused(f"{name} has no version {version}") from exc
    gate_ok = {"passed"} if as_evaluated else PROMOTABLE_GATE
    problems = [f"validation={tags.get('validation', 'missing')}"] * (
        tags.get("validation") != "passed"
    )
    if tags.get("gate") not in gate_ok:
        problems.append(f"gate={tags.get('gate', 'missing')}")
    if tags.get("serving_check") == "failed":
        problems.append("serving_check=failed")
    if problems and not force:
        raise PromotionRefused(
            f"version {version} of {name} cannot be promoted: {', '.join(problems)} "
            "(use --force to override)"
        )
    expected = tags.get("champion_at_evaluation", "none") if as_evaluated else None
    return _move_champion(
        c, name, version, actor, reason or "manual", "promote", bool(problems), expected
    )


def rollback(tracking_uri: str, name: str, actor: str | None = None, reason: str = "") -> str:
    """Move ``@champion`` back to the version it replaced; returns that version."""
    c = client(tracking_uri)
    current = alias_version(tracking_uri, name, CHAMPION)
    if current is None:
        raise PromotionRefused(f"{name} has no @champion to roll back")
    lineage = champion_lineage(history(tracking_uri, name))
    if len(lineage) < 2 or lineage[-1] != current:
        raise PromotionRefused(f"@champion of {name} (version {current}) has no previous version")
    target: str = lineage[-2]
    # Back to a version that only served by a forced promotion: the rollback is forced too
    # (recorded, so the service still accepts it).
    forced = not passed_checks({**version_tags(tracking_uri, name, target), "promotion_forced": ""})
    why = reason or f"rollback from {current}"
    _move_champion(c, name, target, actor, why, "rollback", forced, current)
    return target


def history(tracking_uri: str, name: str) -> list[ChampionMove]:
    """Every recorded move of ``@champion``, oldest first."""
    try:
        tags = client(tracking_uri).get_registered_model(name).tags
    except MlflowException as exc:
        if _absent(exc):
            return []
        raise
    moves: list[ChampionMove] = moves_from_tags(tags)
    return moves


def _move_champion(
    c: MlflowClient,
    name: str,
    version: str,
    actor: str | None,
    reason: str,
    kind: str,
    forced: bool,
    expected: str | None = None,
) -> str | None:
    """``expected``: the champion the caller decided against ("none": no champion); the move
    is refused if the alias names another version now. MLflow has no compare-and-set on
    aliases, so this narrows the race from a whole evaluation to the two calls below."""
    previous = _alias(c, name, CHAMPION)
    if expected is not None and (previous or "none") != expected:
        refusal = (
            f"@champion of {name} moved to version {previous or 'none'} after version "
            f"{version} was compared with version {expected}: evaluate it again"
        )
        c.set_model_version_tag(name, version, "promotion_refused", refusal)
        raise PromotionRefused(refusal)
    now = datetime.now(UTC)
    move = ChampionMove(
        at=now.isoformat(timespec="milliseconds"),
        from_version=previous or "none",
        to_version=version,
        by=actor or getpass.getuser(),
        reason=reason,
        kind=kind,
        forced=forced,
    )
    for key, value in {
        "promoted_at": move.at,
        "promoted_by": move.by,
        "promotion_reason": reason,
        "promoted_from": move.from_version,
        "promotion_forced": str(forced).lower(),
    }.items():
        c.set_model_version_tag(name, version, key, value)
    c.set_registered_model_alias(name, CHAMPION, version)
    # One tag per move, keyed by time (+ a random suffix: concurrent moves never collide).
    key = f"{HISTORY_PREFIX}{time.time_ns():020d}.{secrets.token_hex(2)}"
    c.set_registered_model_tag(name, key, json.dumps(asdict(move)))
    return previous


def _alias(c: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(c.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if _absent(exc):
            return None
        raise RegistryUnavailable(
            f"could not read @{alias} of {name} from the registry: {exc.message}"
        ) from exc
