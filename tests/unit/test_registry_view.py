"""The read-only registry view (REST, no MLflow import) against a real MLflow server: it reads
what MlflowClient and aiinfra.release.registry read, refuses what registry.promote and
registry.rollback refuse, and the CLI's registry commands answer refusals without MLflow."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import typer
from mlflow import MlflowClient
from mlflow.entities import Metric
from typer.testing import CliRunner

from aiinfra.project.config import PlatformConfig
from aiinfra.release import registry, registry_view
from aiinfra_cli import registry_commands
from tests.conftest import SMOKE, free_port

# The tags steps.register_model gives a version whose checks passed.
PLATFORM_TAGS = {
    "pipeline_run": "training-pipeline-20261130",
    "git_commit": "0123abcd4567",
    "data_hash": "d4t4h45h",
    "eval_hash": "3v4lh45h",
    "feature_service": "loan_features",
    "task": "binary",
    "model_entry_point": "builtin:mlp",
    "validation": "passed",
    "gate": "passed",
    "gate_reason": "roc_auc 0.81 >= champion 0.79",
    "gate_metric": "roc_auc",
    "champion_at_evaluation": "none",
}
GATE_FAILED = {"gate": "failed", "gate_reason": "roc_auc 0.61 < champion 0.79 - 0.01"}


@pytest.fixture
def model(
    mlflow_server: PlatformConfig, request: pytest.FixtureRequest, tmp_path: Path
) -> PlatformConfig:
    """The session's MLflow server, a model name of this test's own, a home in tmp."""
    name = "view-" + request.node.name.removeprefix("test_")[:40].replace("[", "-").strip("]")
    return mlflow_server.model_copy(
        update={
            "home": tmp_path,
            "mlflow": mlflow_server.mlflow.model_copy(update={"model_name": name}),
        }
    )


def _register(c: MlflowClient, name: str, tags: dict[str, str]) -> str:
    """A version registered the way log_and_register does (run, metrics, reports, tags at
    creation, ``@challenger``), without training a model: the view reads only records."""
    run = c.create_run(registry.experiment_id(c, "registry-view"), tags=tags)
    run_id = run.info.run_id
    metrics = [Metric("eval_roc_auc", 0.81, 0, 0), Metric("wall_seconds", 12.5, 0, 0)]
    metrics += [Metric("val_loss", loss, 0, step) for step, loss in enumerate([0.7, 0.5, 0.45])]
    c.log_batch(run_id, metrics=metrics)
    c.log_text(run_id, "# gate", "reports/gate.md")
    c.log_text(run_id, "<html></html>", "reports/validation.html")
    try:
        c.create_registered_model(name)
    except Exception as exc:
        if "already exists" not in str(exc).lower():
            raise
    version = c.create_model_version(name, f"{run.info.artifact_uri}/model", run_id, tags=tags)
    c.set_terminated(run_id)
    c.set_registered_model_alias(name, registry.CHALLENGER, version.version)
    return str(version.version)


def _app(config: PlatformConfig) -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A group, as aiinfra's app is."""

    registry_commands.register(app, lambda: config)
    return app


def test_history_equals_the_registrys(model: PlatformConfig) -> None:
    uri, name = model.mlflow.tracking_uri, model.model_name
    c = registry.client(uri)
    first, second = (_register(c, name, PLATFORM_TAGS) for _ in range(2))
    registry.promote(uri, name, first, actor="alice", reason="first")
    registry.promote(uri, name, second, actor="bob", reason="better")
    registry.rollback(uri, name, actor="carol", reason="latency")

    moves = registry_view.history(uri, name)
    assert moves == registry.history(uri, name)
    assert [(m.to_version, m.by, m.kind) for m in moves] == [
        (first, "alice", "promote"),
        (second, "bob", "promote"),
        (first, "carol", "rollback"),
    ]
    assert registry.ChampionMove is registry_view.ChampionMove  # one definition
    assert registry_view.history(uri, "view-no-such-model") == []


def test_version_info_matches_mlflow_client(model: PlatformConfig) -> None:
    uri, name = model.mlflow.tracking_uri, model.model_name
    c = registry.client(uri)
    version = _register(c, name, PLATFORM_TAGS)
    registry.promote(uri, name, version, actor="alice", reason="reviewed")

    info = registry_view.version_info(uri, name, version)
    assert info is not None
    expected = c.get_model_version(name, version)
    run = c.get_run(expected.run_id)
    assert info.tags == expected.tags and info.tags["promoted_by"] == "alice"
    assert info.run_id == expected.run_id
    assert info.metrics == run.data.metrics and info.metrics["val_loss"] == 0.45  # the last
    assert set(info.aliases) == set(expected.aliases) == {registry.CHALLENGER, registry.CHAMPION}
    assert info.created.timestamp() * 1000 == pytest.approx(expected.creation_timestamp)
    assert info.experiment_id == run.info.experiment_id
    assert info.reports == ("reports/gate.md", "reports/validation.html")
    page = f"{uri}/#/experiments/{run.info.experiment_id}/runs/{expected.run_id}"
    assert info.run_url(uri + "/") == page

    assert registry_view.versions(uri, name) == [version]
    assert registry_view.version_info(uri, name, str(int(version) + 1)) is None
    assert registry_view.version_info(uri, name, "abc") is None
    assert registry_view.versions(uri, "view-no-such-model") == []


@pytest.mark.parametrize(
    ("checks", "reason"),
    [
        ({}, None),
        (GATE_FAILED, "gate failed: roc_auc 0.61 < champion 0.79 - 0.01"),
        (
            {"validation": "failed", "validation_summary": "3 of 20 expectations failed"},
            "validation failed: 3 of 20 expectations failed",
        ),
        ({"gate": "", "gate_reason": ""}, "gate not recorded"),
    ],
)
def test_why_refused_says_why_and_agrees_with_promote(
    model: PlatformConfig, checks: dict[str, str], reason: str | None
) -> None:
    uri, name = model.mlflow.tracking_uri, model.model_name
    tags = {k: v for k, v in {**PLATFORM_TAGS, **checks}.items() if v}
    version = _register(registry.client(uri), name, tags)
    info = registry_view.version_info(uri, name, version)
    assert info is not None
    assert registry_view.why_refused(info.tags) == reason
    if reason is None:
        registry.promote(uri, name, version)
    else:
        with pytest.raises(registry.PromotionRefused):
            registry.promote(uri, name, version)


def test_why_refused_names_every_failed_check() -> None:
    why = registry_view.why_refused({"validation": "failed", **GATE_FAILED})
    assert why == (
        "validation failed: no summary recorded; gate failed: roc_auc 0.61 < champion 0.79 - 0.01"
    )
    assert registry_view.why_refused({}) == "validation not recorded; gate not recorded"


def test_rollback_refusal_agrees_with_rollback(model: PlatformConfig) -> None:
    uri, name = model.mlflow.tracking_uri, model.model_name
    c = registry.client(uri)
    first = _register(c, name, PLATFORM_TAGS)
    for step in ("no champion", "one champion"):
        refusal = registry_view.rollback_refusal(uri, name)
        assert refusal is not None, step
        with pytest.raises(registry.PromotionRefused) as refused:
            registry.rollback(uri, name)
        assert str(refused.value) == refusal, step
        registry.promote(uri, name, first)
    registry.promote(uri, name, _register(c, name, PLATFORM_TAGS))
    assert registry_view.rollback_refusal(uri, name) is None
    assert registry.rollback(uri, name) == first


def test_an_unreachable_registry_is_named() -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(registry_view.RegistryUnavailable, match=f"registry at {uri} did not"):
        registry_view.history(uri, "anything")
    assert issubclass(registry.RegistryUnavailable, registry_view.RegistryUnavailable)


# Runs the CLI's registry commands in a fresh interpreter: what it prints, its exit code,
# and whether MLflow got imported.
CLI_SCRIPT = """
import json, sys
from pathlib import Path
from typing import ClassVar
import typer
from typer.testing import CliRunner
from aiinfra.project.config import load_config
from aiinfra_cli import registry_commands

smoke, home, uri, name, *args = sys.argv[1:]
config = load_config(Path(smoke), home=Path(home), mlflow={"tracking_uri": uri, "model_name": name})
app = typer.Typer()
app.callback()(lambda: None)
registry_commands.register(app, lambda: config)
result = CliRunner().invoke(app, args)
print(json.dumps({"code": result.exit_code, "output": result.output,
                  "mlflow": "mlflow" in sys.modules}))
"""


def _cli_subprocess(config: PlatformConfig, *args: str) -> dict[str, object]:
    command = [sys.executable, "-c", CLI_SCRIPT, str(SMOKE), str(config.home)]
    command += [config.mlflow.tracking_uri, config.model_name, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    answer: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return answer


def test_promote_refuses_without_importing_mlflow(model: PlatformConfig) -> None:
    c = registry.client(model.mlflow.tracking_uri)
    good = _register(c, model.model_name, PLATFORM_TAGS)
    failed = _register(c, model.model_name, {**PLATFORM_TAGS, **GATE_FAILED})

    unknown = _cli_subprocess(model, "promote", "9")
    assert unknown == {
        "code": 1,
        "output": f"{model.model_name} has no version 9 (versions: {good}, {failed})\n",
        "mlflow": False,
    }
    refused = _cli_subprocess(model, "promote", failed)
    assert refused["code"] == 1 and refused["mlflow"] is False
    assert refused["output"] == (
        f"version {failed} of {model.model_name} cannot be promoted: gate failed: "
        f"{GATE_FAILED['gate_reason']} (use --force to override)\n"
    )
    history = _cli_subprocess(model, "history")
    assert history["code"] == 0 and history["mlflow"] is False
    assert history["output"] == f"{model.model_name}: @champion has never moved\n"
    rollback = _cli_subprocess(model, "rollback")
    assert rollback["code"] == 1 and rollback["mlflow"] is False
    assert rollback["output"] == f"{model.model_name} has no @champion to roll back\n"


def test_promote_moves_champion_when_allowed_or_forced(model: PlatformConfig) -> None:
    uri, name = model.mlflow.tracking_uri, model.model_name
    c = registry.client(uri)
    good = _register(c, name, PLATFORM_TAGS)
    failed = _register(c, name, {**PLATFORM_TAGS, **GATE_FAILED})
    runner = CliRunner()

    done = runner.invoke(_app(model), ["promote", good])
    assert done.exit_code == 0 and done.output == f"@champion: none -> {good}\n"
    forced = runner.invoke(_app(model), ["promote", failed, "--force", "--reason", "hotfix"])
    assert forced.exit_code == 0 and forced.output == f"@champion: {good} -> {failed}\n"
    assert registry.alias_version(uri, name, registry.CHAMPION) == failed
    listed = runner.invoke(_app(model), ["history"]).output.splitlines()
    assert len(listed) == 2 and listed[1].endswith("hotfix (forced)")
    back = runner.invoke(_app(model), ["rollback", "--reason", "bad"])
    assert back.exit_code == 0 and back.output == f"@champion rolled back to {good}\n"


def test_show_prints_lineage_checks_metrics_and_reports(model: PlatformConfig) -> None:
    uri, name = model.mlflow.tracking_uri, model.model_name
    version = _register(registry.client(uri), name, {**PLATFORM_TAGS, **GATE_FAILED})
    local = model.home / "runs" / PLATFORM_TAGS["pipeline_run"]
    local.mkdir(parents=True)
    for report in ("gate-report.md", "validation-report.html", "run.log"):
        (local / report).write_text("x")

    shown = CliRunner().invoke(_app(model), ["show", version])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0] == f"{name} version {version} (@challenger)"
    text = shown.output
    for label, tag in (("pipeline run", "pipeline_run"), ("git commit", "git_commit")):
        assert f"{label:<17}{PLATFORM_TAGS[tag]}" in text
    assert f"feature service  {PLATFORM_TAGS['feature_service']}" in text
    assert f"gate             failed: {GATE_FAILED['gate_reason']} (on roc_auc)" in text
    assert f"promotion        refused: gate failed: {GATE_FAILED['gate_reason']}" in text
    assert "eval_roc_auc=0.81  val_loss=0.45  wall_seconds=12.5" in text
    info = registry_view.version_info(uri, name, version)
    assert info is not None and f"mlflow run       {info.run_url(uri)}" in text
    assert "run reports      reports/gate.md, reports/validation.html" in text
    assert [line.split()[-1] for line in lines[-3:]] == [
        str(local / f) for f in ("gate-report.md", "run.log", "validation-report.html")
    ]

    unknown = CliRunner().invoke(_app(model), ["show", "99"])
    assert unknown.exit_code == 1
    assert unknown.output == f"{name} has no version 99 (versions: {version})\n"


def test_local_reports_stay_inside_the_runs_folder(model: PlatformConfig) -> None:
    (model.home / "runs" / "r1").mkdir(parents=True)
    (model.home / "runs" / "r1" / "run.log").write_text("x")
    (model.home / "secret.txt").write_text("x")
    assert registry_commands.local_reports(model, "r1") == {
        "run.log": model.home / "runs" / "r1" / "run.log"
    }
    assert registry_commands.local_reports(model, "..") == {}
    assert registry_commands.local_reports(model, "r1/../..") == {}
    assert registry_commands.local_reports(model, "missing") == {}


def test_the_view_and_the_commands_import_no_mlflow() -> None:
    code = (
        "import sys, aiinfra.release.registry_view, aiinfra_cli.registry_commands; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'mlflow', 'feast', 'torch'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_sqlite_uris_go_through_mlflow_with_the_same_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a sqlite store's artifacts land in the working directory
    uri, name = f"sqlite:///{tmp_path}/mlflow.db", "view-sqlite"
    c = registry.client(uri)
    good = _register(c, name, PLATFORM_TAGS)
    failed = _register(c, name, {**PLATFORM_TAGS, **GATE_FAILED})
    registry.promote(uri, name, good, actor="alice")

    assert registry_view.history(uri, name) == registry.history(uri, name)
    assert registry_view.versions(uri, name) == [good, failed]
    info = registry_view.version_info(uri, name, failed)
    assert info is not None and info.run_url(uri) is None
    assert info.tags == c.get_model_version(name, failed).tags
    assert info.metrics == c.get_run(info.run_id).data.metrics
    assert info.reports == ("reports/gate.md", "reports/validation.html")
    assert registry_view.why_refused(info.tags) == f"gate failed: {GATE_FAILED['gate_reason']}"
    assert registry_view.version_info(uri, name, "7") is None


class _Recorder(BaseHTTPRequestHandler):
    """Answers registered-models/get with an empty model; keeps the Authorization header."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"registered_model": {"name": "m", "tags": []}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_requests_carry_mlflows_credentials(
    recorder: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials of the user's
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    registry_view.history(recorder, "m")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0k")
    registry_view.history(recorder, "m")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ann")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    registry_view.history(recorder, "m")  # user and password win over the token, as in MLflow
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text(
        "[mlflow]\nmlflow_tracking_username = bob\nmlflow_tracking_password = filepw\n"
    )
    registry_view.history(recorder, "m")  # the password from the file, the user from the env

    def basic(pair: str) -> str:
        return "Basic " + base64.standard_b64encode(pair.encode()).decode()

    assert _Recorder.seen == [None, "Bearer t0k", basic("ann:pw"), basic("ann:filepw")]


def test_nan_metrics_read_as_nan(model: PlatformConfig) -> None:
    uri, name = model.mlflow.tracking_uri, model.model_name
    c = registry.client(uri)
    version = _register(c, name, PLATFORM_TAGS)
    run_id = c.get_model_version(name, version).run_id
    c.log_batch(run_id, metrics=[Metric("diverged", float("nan"), 0, 0)])
    info = registry_view.version_info(uri, name, version)
    assert info is not None and math.isnan(info.metrics["diverged"])
