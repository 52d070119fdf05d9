"""The model card of every registered version: built by steps.register_model from what the run
recorded, logged in the version's MLflow run (through a real server) as Markdown and as a
self-contained HTML page, and written where the pipeline's register task asks for it."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from aiinfra import steps
from aiinfra.data.training_set import write_training_set
from aiinfra.project.config import PlatformConfig, TrainingConfig
from aiinfra.project.schema import Schema
from aiinfra.release import model_card, registry
from aiinfra.training.job import TrainingSummary

PRICE = 2.0  # per device-hour: the card states the run's estimated cost


@dataclass(frozen=True)
class Registered:
    """Two versions of one model: the first (no champion to compare with) became champion, the
    second was evaluated against it."""

    config: PlatformConfig
    frame: pd.DataFrame
    schema: Schema
    training: TrainingSummary
    first: str
    second: str
    evaluation: steps.Evaluation  # the second's
    validation_html: Path
    card_out: Path

    def client(self) -> MlflowClient:
        c: MlflowClient = registry.client(self.config.mlflow.tracking_uri)
        return c

    def stored(self, version: str, path: str) -> str:
        c = self.client()
        run_id = str(c.get_model_version(self.config.model_name, version).run_id)
        with tempfile.TemporaryDirectory() as tmp:
            return Path(c.download_artifacts(run_id, path, tmp)).read_text()


@pytest.fixture(scope="module")
def registered(
    mlflow_server: PlatformConfig,
    training_frame: pd.DataFrame,
    schema: Schema,
    tmp_path_factory: pytest.TempPathFactory,
) -> Registered:
    home = tmp_path_factory.mktemp("model-card")
    training = TrainingConfig.model_validate(
        {**mlflow_server.training.model_dump(), "price_per_device_hour": PRICE}
    )
    config = mlflow_server.model_copy(
        update={
            "home": home,
            "training": training,
            "mlflow": mlflow_server.mlflow.model_copy(
                update={"model_name": "model-card", "experiment": "model-card"}
            ),
        }
    )
    training_set = home / "training_set.parquet"
    write_training_set(training_frame, schema, training_set)
    validation_html = home / "validation.html"
    steps.validate_training_set(config, training_set, home / "validation.md", validation_html)
    model_dir = home / "model"
    summary = steps.train_model(config, training_set, model_dir)

    def register(run: str, card_out: Path | None = None) -> tuple[str, steps.Evaluation]:
        evaluation = steps.evaluate_model(config, training_set, model_dir)
        lineage = {"git_commit": "0123abc", "pipeline_run": run}
        version = steps.register_model(
            config, training_set, model_dir, evaluation, summary, lineage, validation_html, card_out
        )
        return version, evaluation

    first, _ = register("card-run-1")
    registry.promote(config.mlflow.tracking_uri, config.model_name, first, force=True)
    # A version deleted after registration still takes its number: the card, written before
    # the registry numbered the version, must end up naming the one it got.
    c = registry.client(config.mlflow.tracking_uri)
    source = c.get_model_version(config.model_name, first)
    skipped = c.create_model_version(config.model_name, source.source, run_id=source.run_id)
    c.delete_model_version(config.model_name, skipped.version)
    card_out = home / "card" / "model_card.md"
    second, evaluation = register("card-run-2", card_out)
    assert int(second) == int(skipped.version) + 1
    return Registered(
        config,
        training_frame,
        schema,
        summary,
        first,
        second,
        evaluation,
        validation_html,
        card_out,
    )


def test_the_card_in_mlflow_names_the_version_its_data_and_its_gate(
    registered: Registered,
) -> None:
    config, evaluation = registered.config, registered.evaluation
    card = registered.stored(registered.second, model_card.MARKDOWN_PATH)
    version = registered.client().get_model_version(config.model_name, registered.second)
    tags = version.tags

    assert card.startswith(f"# Model card: model-card version {registered.second}\n")
    assert f"- **version**: {registered.second}" in card
    # Data: the version's own hash, rows and the span of the training set's event times.
    assert f"- **data hash**: {tags['data_hash']}" in card
    assert f"- **rows**: {len(registered.frame)}" in card
    times = registered.frame[registered.schema.timestamp]
    assert f"{times.min().isoformat()} to {times.max().isoformat()}" in card
    assert f"- **feature service**: {registered.schema.feature_service}" in card
    assert "| credit_score | numeric | applicant_profile | bureau score |" in card
    # Intended use and limits come from the profile.
    assert config.project.intended_use and config.project.intended_use in card
    assert all(f"- {limit}" in card for limit in config.project.limitations)
    # Validation: the verdict line of the report the run validated with.
    summary = model_card.validation_summary_from_html(registered.validation_html.read_text())
    assert summary is not None and summary.startswith("validation passed: ")
    assert f"- **summary**: {summary}" in card
    # Evaluation against the champion it was compared with, and the gate's reasons.
    assert evaluation.champion is not None and tags["champion_at_evaluation"] == registered.first
    auc, champion_auc = evaluation.challenger["roc_auc"], evaluation.champion["roc_auc"]
    row = f"| roc_auc | {auc:.4f} | {champion_auc:.4f} | {auc - champion_auc:+.4f} |"
    assert f"| metric | this version | champion (v{registered.first}) | difference |" in card
    assert row in card
    assert f"- **decision**: {tags['gate']}" in card
    assert f"- **reasons**: {tags['gate_reason']}" in card and tags["gate_reason"]
    # Lineage: the run that holds the card (known only once the version existed).
    assert f"- **MLflow run**: {version.run_id}" in card
    assert "- **git commit**: 0123abc" in card and "- **pipeline run**: card-run-2" in card
    assert "Shadow: none recorded." in card and "Canary: none recorded." in card


def test_the_card_states_training_hardware_usage_and_cost(registered: Registered) -> None:
    card = registered.stored(registered.second, model_card.MARKDOWN_PATH)
    usage = registered.training.usage
    assert f"- **device**: cpu ({usage['device_name']})" in card
    assert "- **precision**: fp32" in card
    best = registered.training.best_epoch + 1
    epochs_run = f"- **epochs run**: {registered.training.epochs_run} (lowest validation loss: "
    assert f"{epochs_run}epoch {best})" in card
    hidden_sizes = registered.config.model.settings["hidden_sizes"]
    assert f"- **network hidden_sizes**: {hidden_sizes}" in card
    assert f"- **wall time**: {usage['wall_seconds']:.1f} s" in card
    assert f"- **peak memory**: {usage['peak_memory_mb']:.0f} MiB" in card
    assert f"- **estimated cost**: {usage['estimated_cost']:.4f} (at 2 per device-hour)" in card
    energy = "- **energy**: " + (
        f"{usage['energy_joules']:.1f} J" if "energy_joules" in usage else "not measured"
    )
    assert energy in card
    assert f"- **epochs**: {registered.config.training.epochs}" in card


def test_without_measurements_the_card_says_not_measured(registered: Registered) -> None:
    card = _card(registered, training=dataclasses.replace(registered.training, usage={}))
    markdown = card.markdown()
    for what in ("wall time", "peak memory", "energy", "estimated cost"):
        line = next(line for line in markdown.splitlines() if line.startswith(f"- **{what}**"))
        assert "not measured" in line, line


def test_the_first_version_has_no_champion_to_compare(registered: Registered) -> None:
    card = registered.stored(registered.first, model_card.MARKDOWN_PATH)
    assert card.startswith(f"# Model card: model-card version {registered.first}\n")
    assert "| metric | this version | champion (none) | difference |" in card
    assert "- **champion at evaluation**: none" in card


def test_the_html_card_is_the_same_card_self_contained(registered: Registered) -> None:
    page = registered.stored(registered.second, model_card.HTML_PATH)
    version = registered.client().get_model_version(registered.config.model_name, registered.second)
    assert f"<h1>Model card: model-card version {registered.second}</h1>" in page
    assert version.tags["data_hash"] in page and str(version.run_id) in page
    assert "<h2>Shadow / canary</h2>" in page
    _assert_self_contained(page)
    assert "http://" not in page and "https://" not in page


def test_values_are_escaped_in_both_formats(registered: Registered) -> None:
    hostile = "<b>bold</b> & <script>alert(1)</script> | <a href='https://x.example'>x</a>"
    first = registered.schema.features[0]
    schema = registered.schema.with_features(
        (dataclasses.replace(first, description=hostile), *registered.schema.features[1:])
    )
    project = registered.config.project.model_copy(update={"limitations": [hostile]})
    card = _card(
        registered, schema=schema, config=registered.config.model_copy(update={"project": project})
    )
    page = card.html()
    _assert_self_contained(page)
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;" in page and "<b>" not in page
    markdown = card.markdown()
    assert "<b>" not in markdown and "<script" not in markdown and "&lt;b&gt;" in markdown
    assert f"| {first.name} | {first.kind} |" in markdown  # the "|" in the text is escaped
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {first.name} "))
    assert row.count(" | ") == 3


def test_shadow_and_canary_results_fill_their_section(registered: Registered) -> None:
    card = _card(registered, shadow={"requests": 1200, "agreement": "98.5%"})
    markdown = card.markdown()
    assert "- **shadow requests**: 1200" in markdown and "- **shadow agreement**: 98.5%" in markdown
    assert "Canary: none recorded." in markdown and "Shadow: none" not in markdown


def test_the_register_step_writes_the_card_and_a_retry_writes_it_again(
    registered: Registered, tmp_path: Path
) -> None:
    stored = registered.stored(registered.second, model_card.MARKDOWN_PATH)
    assert registered.card_out.read_text() == stored
    # A retried register task registers nothing new and hands on the recorded card.
    retried = tmp_path / "retry" / "card.md"
    version = steps.register_model(
        registered.config,
        registered.config.home / "training_set.parquet",
        registered.config.home / "model",
        registered.evaluation,
        registered.training,
        {"git_commit": "0123abc", "pipeline_run": "card-run-2"},
        registered.validation_html,
        retried,
    )
    assert version == registered.second and retried.read_text() == stored


def test_the_validation_summary_is_read_from_a_report_page() -> None:
    from aiinfra.data.validation_report import CheckResult, ValidationReport

    report = ValidationReport([CheckResult("expect_rows", None, True, "120 rows <ok>")], 120)
    assert model_card.validation_summary_from_html(report.html()) == report.summary()
    assert model_card.validation_summary_from_html("<html><p>no heading</p></html>") is None


def _card(registered: Registered, **changes: object) -> model_card.ModelCard:
    """The second version's card as register_model builds it, with ``changes``."""
    c = registered.client()
    version = c.get_model_version(registered.config.model_name, registered.second)
    run = c.get_run(str(version.run_id))
    inputs: dict[str, object] = {
        "config": registered.config,
        "schema": registered.schema,
        "version": registered.second,
        "evaluation": registered.evaluation,
        "training": registered.training,
        "tags": dict(version.tags),
        "params": dict(run.data.params),
        "data": model_card.DataFacts.of(
            registered.frame, registered.schema, "loans.parquet", version.tags["data_hash"]
        ),
        "run_id": version.run_id,
    }
    return model_card.ModelCard(**{**inputs, **changes})


class _Links(HTMLParser):
    """Every tag and every attribute that would load or link something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.links += [f"{k}={v}" for k, v in attrs if k in {"src", "href", "srcset", "action"}]


def _assert_self_contained(page: str) -> None:
    parser = _Links()
    parser.feed(page)
    assert "<script" not in page.lower()
    assert not parser.links, parser.links
    assert not parser.tags & {"script", "link", "img", "iframe", "object", "embed", "a"}
    assert "<style>" in page  # the style is inline
