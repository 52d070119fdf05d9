"""The example projects built on scikit-learn's own data sets, each run end to end for real:
its generator, Feast repo, the kfp.local pipeline, the MLflow registry and the BentoML service.

- ``examples/wine``: multiclass with string classes (``class_0`` .. ``class_2``), built-in MLP;
- ``examples/diabetes``: regression with the project's own PyTorch module
  (``diabetes_model:build``).

One pipeline run and one service per example (the fixture is parametrized at module scope, so
the first example's servers stop before the second's start).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from aiinfra.project.config import PROJECT_ROOT, PlatformConfig
from aiinfra.project.definition import load_project
from aiinfra.project.schema import Schema
from aiinfra.release import registry
from aiinfra.steps import Evaluation
from aiinfra_cli.workflow import (
    TrainingOutcome,
    run_training,
    sample_request,
    start_serving,
    wait_for_version,
)
from tests.conftest import profile_config
from tests.e2e.conftest import running_platform

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Spec:
    """What an example declares, as the tests expect to see it."""

    name: str
    task: str
    entity: str
    request_feature: str
    too_large: float  # above the request feature's declared max
    undeclared: str  # a label-table column the project does not declare
    entry_point: str
    metric: str


WINE = Spec(
    "wine", "multiclass", "wine_id", "color_intensity", 99.0, "cellar", "builtin:mlp", "accuracy"
)
DIABETES = Spec(
    "diabetes", "regression", "patient_id", "bp", 1000.0, "clinic", "diabetes_model:build", "rmse"
)
WINE_CLASSES = ["class_0", "class_1", "class_2"]


@dataclass(frozen=True)
class Example:
    spec: Spec
    config: PlatformConfig
    schema: Schema
    outcome: TrainingOutcome
    url: str


@pytest.fixture(scope="module", params=[WINE, DIABETES], ids=lambda s: s.name)
def example(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Example]:
    spec: Spec = request.param
    home = tmp_path_factory.mktemp(spec.name)
    config = profile_config(PROJECT_ROOT / "examples" / spec.name / "profile.yaml", home, 1.0)
    with contextmanager(running_platform)(config) as platform:
        outcome = run_training(platform)
        url = start_serving(platform)
        yield Example(spec, platform, load_project(platform).schema, outcome, url)


def _post(example: Example, body: Any) -> httpx.Response:
    return httpx.post(f"{example.url}/predict", json=body, timeout=30)


def _two_rows(example: Example) -> dict[str, Any]:
    """The newest label row (what quickstart sends) and the oldest one."""
    body = sample_request(example.config, example.schema)
    labels = pd.read_parquet(example.config.labels_path).sort_values("event_timestamp")
    fields = [example.spec.entity, example.spec.request_feature]
    body["rows"].append(labels[fields].iloc[:1].to_dict("records")[0])  # plain Python values
    return body


def test_the_version_is_registered_validated_and_champion(example: Example) -> None:
    config, spec = example.config, example.spec
    uri, name = config.mlflow.tracking_uri, config.model_name
    assert name == spec.name
    assert example.outcome.version == "1" and example.outcome.promoted
    tags = registry.version_tags(uri, name, "1")
    assert tags["task"] == spec.task
    assert tags["validation"] == "passed" and tags["gate"] == "passed"
    assert tags["gate_metric"] == spec.metric
    assert tags["model_entry_point"] == spec.entry_point
    assert tags["feature_service"] == f"{spec.name}_v1"
    assert registry.alias_version(uri, name, registry.CHAMPION) == "1"
    # The undeclared column was read, reported, and left out of the model.
    summary = (example.outcome.run_dir / "validate-data" / "summary").read_text()
    assert "validation passed" in summary
    assert spec.undeclared not in example.schema.feature_names


def test_the_evaluation_fits_the_task(example: Example) -> None:
    path = example.outcome.run_dir / "evaluate-model" / "evaluation"
    evaluation = Evaluation.from_json(path.read_text())
    assert evaluation.task == example.spec.task and evaluation.passed
    assert evaluation.metric == example.spec.metric and evaluation.roc is None
    if example.spec.task == "multiclass":
        assert evaluation.classes == WINE_CLASSES
        assert evaluation.confusion is not None and evaluation.residuals is None
        assert [len(row) for row in evaluation.confusion] == [3, 3, 3]
        assert sum(map(sum, evaluation.confusion)) == evaluation.eval_rows
        diagonal = sum(evaluation.confusion[i][i] for i in range(3))
        accuracy = evaluation.challenger["accuracy"]
        assert accuracy == pytest.approx(diagonal / evaluation.eval_rows)
        assert accuracy >= 0.8  # the profile's floor
    else:
        assert evaluation.confusion is None and evaluation.residuals is not None
        assert len(evaluation.residuals["actual"]) == evaluation.eval_rows
        assert len(evaluation.residuals["predicted"]) == evaluation.eval_rows
        assert {"rmse", "mae", "r2"} <= set(evaluation.challenger)
        assert evaluation.challenger["rmse"] <= 70 and evaluation.challenger["r2"] >= 0.2
        assert evaluation.challenger["mae"] <= evaluation.challenger["rmse"]


def test_the_service_answers_with_the_registered_models_prediction(
    example: Example, tmp_path: Path
) -> None:
    config, spec = example.config, example.spec
    body = _two_rows(example)
    answer = wait_for_version(example.url, body, "1", timeout=120)
    assert answer["model_name"] == spec.name and answer["model_version"] == "1"
    predictions = answer["predictions"]
    assert len(predictions) == 2
    # The same version loaded here, on features read straight from the generated table.
    model = registry.load_version(
        config.mlflow.tracking_uri, config.model_name, "1", tmp_path, config.project.root
    )
    assert model.model.entry_point == spec.entry_point
    stored = pd.read_parquet(config.data_dir / f"{spec.name}_features.parquet")
    rows = pd.DataFrame(body["rows"])
    frame = rows.merge(stored, on=spec.entity, how="left", validate="one_to_one")
    expected = model.predict(frame)
    if spec.task == "multiclass":
        assert model.classes == WINE_CLASSES
        served = np.array([[p["probabilities"][c] for c in WINE_CLASSES] for p in predictions])
        assert all(set(p["probabilities"]) == set(WINE_CLASSES) for p in predictions)
        np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-5)
        chosen = [p["predicted_class"] for p in predictions]
        assert chosen == [WINE_CLASSES[i] for i in expected.argmax(axis=1)]
    else:
        assert type(model.network).__name__ == "LinearPlusResidual"  # the project's module
        served = np.array([p["value"] for p in predictions])
        assert np.isfinite(served).all()
    np.testing.assert_allclose(served, expected, rtol=1e-5)


def test_an_unknown_entity_is_404(example: Example) -> None:
    row = _two_rows(example)["rows"][0]
    response = _post(example, {"rows": [{**row, example.spec.entity: 987_654}]})
    assert response.status_code == 404, response.text
    assert f"{example.spec.entity}=987654" in response.text


@pytest.mark.parametrize("problem", ["out_of_bounds", "undeclared_field"])
def test_bad_fields_are_400_naming_the_field(example: Example, problem: str) -> None:
    spec = example.spec
    row = _two_rows(example)["rows"][0]
    if problem == "out_of_bounds":
        row[spec.request_feature], named = spec.too_large, spec.request_feature
    else:
        row[spec.undeclared], named = "x", spec.undeclared
    response = _post(example, {"rows": [row]})
    assert response.status_code == 400, response.text
    assert named in response.text


def test_the_openapi_page_shows_the_projects_own_fields(example: Example) -> None:
    spec = example.spec
    document = httpx.get(f"{example.url}/docs.json", timeout=10).json()
    schemas = document["components"]["schemas"]
    rows = [s for s in schemas.values() if spec.request_feature in s.get("properties", {})]
    assert rows, f"no schema with {spec.request_feature}: {sorted(schemas)}"
    row = rows[0]
    assert set(row["properties"]) == {spec.entity, spec.request_feature}
    field = row["properties"][spec.request_feature]
    declared = example.schema.feature(spec.request_feature)
    assert field["maximum"] == declared.max_value and field["description"] == declared.description
    text = str(document)
    if spec.task == "multiclass":
        assert all(c in text for c in WINE_CLASSES) and "probabilities" in text
    else:
        assert "'value'" in text and "probabilities" not in text
