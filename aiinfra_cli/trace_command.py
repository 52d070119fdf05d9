"""``aiinfra trace ID``: what made one prediction.

The service answers every request with an ``X-Request-ID`` and logs sampled ``/predict``
requests with it (``aiinfra.runtime.prediction_log``): the rows, the model input the online
store gave (the stored features) and the answers. ``trace`` finds the request there, newest
file first, reads the answering version's lineage from the registry (``registry_view``: no
MLflow import, well under a second), and re-hashes the version's training set where a local
pipeline run left it (``<home>/pipeline_root/<pipeline run>/build-training-set/training_set``),
with the function the pipeline recorded ``data_hash`` with. Only that check imports pandas.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from aiinfra.release import registry_view
from aiinfra.release.registry_view import RegistryUnavailable, VersionInfo
from aiinfra.runtime import prediction_log, request_id
from aiinfra_cli.registry_commands import LABEL_WIDTH, LINEAGE_LABELS

if TYPE_CHECKING:
    from aiinfra.project.config import PlatformConfig

# The lineage a trace prints, in this order (labels as ``show`` names them).
TRACED_TAGS = ("pipeline_run", "git_commit", "data_hash", "feature_service")
# Where kfp.local keeps the build step's output: <pipeline_root>/<run>/<task>/<output>.
TRAINING_SET_ARTIFACT = ("build-training-set", "training_set")
LINE_WIDTH = 96


def _fail(message: str) -> NoReturn:
    typer.secho(message, fg="red", err=True)
    raise typer.Exit(1)


def register(app: typer.Typer, config: Callable[[], PlatformConfig]) -> None:
    """Add ``trace`` to ``app``; ``config`` returns the profile loaded by the callback."""

    @app.command()
    def trace(
        request: str = typer.Argument(
            ..., metavar="ID", help="the X-Request-ID of a /predict answer"
        ),
    ) -> None:
        """What made a prediction: the model version, its pipeline run, git commit, data hash
        and feature service, the stored features used, and whether the training data still
        hashes as recorded.

        Example: aiinfra trace 3f2a9c0e8b7d4e1f9a6b5c4d3e2f1a0b
        """
        cfg = config()
        if request_id.accept(request) != request:
            _fail(f"{request!r} is not a request id (at most 64 of A-Za-z0-9._-)")
        rows = _logged_or_fail(cfg, request)
        name = rows[0].get("model_name") or cfg.model_name
        info = _version_or_fail(cfg, name, str(rows[0]["model_version"]), request)
        for line in describe(rows, info, training_data(cfg.pipeline_root, info.tags)):
            typer.echo(line)


def _logged_or_fail(cfg: PlatformConfig, request: str) -> list[dict[str, Any]]:
    directory = cfg.prediction_log_dir
    if not directory.is_dir():
        _fail(f"request {request} not found: there is no prediction log under {directory}")
    rows: list[dict[str, Any]] = prediction_log.find_request(directory, request)
    if not rows:
        serving = cfg.serving
        _fail(
            f"request {request} not found in the prediction log under {directory}: only /predict "
            f"requests are logged, a sampled share of them (serving.log_sample_rate = "
            f"{serving.log_sample_rate:g}), kept {serving.log_retention_days} days"
        )
    return rows


def _version_or_fail(cfg: PlatformConfig, name: str, version: str, request: str) -> VersionInfo:
    uri = cfg.mlflow.tracking_uri
    try:
        info = registry_view.version_info(uri, name, version)
    except (RegistryUnavailable, ValueError) as exc:
        _fail(str(exc))
    if info is None:
        _fail(f"request {request} was answered by {name} version {version}, which {uri} lacks")
    return info


def training_set_artifact(pipeline_root: Path, pipeline_run: str) -> Path | None:
    """Where a local run of ``pipeline_run`` left its training set; None for a tag that is
    not a plain folder name (it could name another folder)."""
    if pipeline_run in {"", ".", ".."} or Path(pipeline_run).name != pipeline_run:
        return None
    return pipeline_root.joinpath(pipeline_run, *TRAINING_SET_ARTIFACT)


def training_data(pipeline_root: Path, tags: dict[str, str]) -> str:
    """Whether the version's training set, where its run left it, still hashes to the
    recorded ``data_hash``: "hash matches the recorded artifact", "does not match", or
    "artifact not found here" (a cluster run keeps it in the cluster's artifact store)."""
    recorded = tags.get("data_hash")
    if not recorded:
        return "no data hash recorded on the version"
    path = training_set_artifact(pipeline_root, tags.get("pipeline_run", ""))
    if path is None:
        return "artifact not found here (the version names no pipeline run)"
    if not path.is_file():
        return f"artifact not found here ({path})"
    from aiinfra.data.training_set import read_training_set  # pandas and pyarrow: only now
    from aiinfra.release.metrics import frame_hash

    try:
        frame, _ = read_training_set(path)
    except (OSError, ValueError) as exc:  # pyarrow's errors are both
        return f"artifact unreadable ({path}): {exc}"
    actual = frame_hash(frame)  # as steps.register_model hashed the same file
    if actual == recorded:
        return f"hash matches the recorded artifact ({path})"
    return f"hash does not match the recorded artifact: recorded {recorded}, {path} is {actual}"


def describe(rows: list[dict[str, Any]], info: VersionInfo, training: str) -> list[str]:
    """The trace's lines: the request, the version's lineage, then each row."""
    first = rows[0]
    lines = [
        f"request {first['request_id']} at {first['at']}",
        _row("model", f"{info.name} version {info.version}"),
    ]
    lines += [
        _row(LINEAGE_LABELS[key], info.tags.get(key) or "not recorded") for key in TRACED_TAGS
    ]
    lines.append(_row("training data", training))
    for entry in rows:
        if len(rows) > 1:
            lines.append(f"row {entry.get('row', '?')}")
        lines += _row_lines(entry)
    return lines


def _row_lines(entry: dict[str, Any]) -> list[str]:
    sent: dict[str, Any] = entry.get("request", {})
    used = entry.get("features")
    stored = (
        "not logged (a service from before traces)"
        if used is None
        else _pairs({k: v for k, v in used.items() if k not in sent}) or "none (no stored features)"
    )
    return [
        *_wrapped("request", _pairs(sent)),
        *_wrapped("stored features", stored),
        *_wrapped("prediction", _pairs(entry.get("answer", {}))),
    ]


def _pairs(values: dict[str, Any]) -> str:
    return "  ".join(f"{k}={json.dumps(v, default=str)}" for k, v in values.items())


def _row(label: str, value: str) -> str:
    return f"  {label:<{LABEL_WIDTH}}{value}"


def _wrapped(label: str, text: str) -> list[str]:
    parts = textwrap.wrap(text, LINE_WIDTH - LABEL_WIDTH, break_long_words=False) or [""]
    return [_row(label if i == 0 else "", part) for i, part in enumerate(parts)]
