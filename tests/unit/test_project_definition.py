"""A project's definition, checked before any pipeline task runs: each mistake is a
ProjectError naming the setting (or file, view, field) and what is wrong.

Every test builds a small project of its own in tmp_path, the way a team would: a label table
(Parquet or CSV), a Feast repo (``feature_store.yaml`` and a ``definitions.py`` in Feast's own
API) and a profile. Nothing here touches the loan example.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from aiinfra.project.config import PlatformConfig, load_config
from aiinfra.project.definition import Project, ProjectError
from aiinfra.project.schema import REQUEST, Feature, Key
from aiinfra.steps import check_project

ROWS = 40
FEATURE_STORE_YAML = """project: churn
provider: local
registry: data/registry.db
online_store: {type: sqlite, path: data/online_store.db}
offline_store: {type: file}
entity_key_serialization_version: 3
"""
# One entity, one view of three fields (with the tags the platform reads), one service.
DEFINITIONS = """
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
customers = FileSource(
    name="customers", path="customers.parquet", timestamp_field="event_timestamp"
)
customer_stats = FeatureView(
    name="customer_stats",
    entities=[customer],
    ttl=timedelta(days=90),
    schema=[
        Field(name="tenure_months", dtype=Int64, description="months as a customer",
              tags={"min": "0", "max": "600"}),
        Field(name="monthly_spend", dtype=Float64, description="average monthly spend"),
        Field(name="plan", dtype=String, description="current plan",
              tags={"categories": "basic, plus,pro"}),
    ],
    source=customers,
)
EXTRA
churn_v1 = FeatureService(name="churn_v1", features=[SERVICE])
"""
# A second view reading a field the first one has too.
SAME_FIELD = """
risk = FileSource(name="risk", path="risk.parquet", timestamp_field="event_timestamp")
customer_risk = FeatureView(
    name="customer_risk", entities=[customer], ttl=timedelta(days=90),
    schema=[Field(name="monthly_spend", dtype=Float64)], source=risk,
)
"""
# A view joined on an entity the label table does not have.
OTHER_KEY = """
region = Entity(name="region", join_keys=["region_id"], value_type=ValueType.INT64)
regions = FileSource(name="regions", path="regions.parquet", timestamp_field="event_timestamp")
region_stats = FeatureView(
    name="region_stats", entities=[region], ttl=timedelta(days=90),
    schema=[Field(name="unemployment", dtype=Float64)], source=regions,
)
"""


def definitions(extra: str = "", views: str = "customer_stats") -> str:
    return DEFINITIONS.replace("EXTRA", extra).replace("SERVICE", views)


def labels(rows: int = ROWS) -> pd.DataFrame:
    """A label table: keys, time, label, two request features and a column nobody declared."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "customer_id": np.arange(rows, dtype="int64") % 10 + 1,
            "event_timestamp": pd.date_range("2026-01-01", periods=rows, freq="D", tz="UTC"),
            "churned": np.arange(rows) % 2,
            "support_calls": rng.integers(0, 5, rows),
            "channel": rng.choice(["web", "store", "phone"], rows),
            "spend_next_month": rng.normal(50, 10, rows),
            "notes": "n/a",
        }
    )


LABELS: dict[str, Any] = {
    "path": "labels.parquet",
    "entities": ["customer_id"],
    "timestamp": "event_timestamp",
    "label": "churned",
    "request_features": ["support_calls", "channel"],
}


def make_project(
    tmp_path: Path,
    frame: pd.DataFrame | None = None,
    *,
    file: str = "labels.parquet",
    repo: str | None = None,
    task: str = "binary",
    label_settings: dict[str, Any] | None = None,
    features: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    gate: dict[str, Any] | None = None,
) -> PlatformConfig:
    """Write the project's files under tmp_path/project and load its profile."""
    root = tmp_path / "project"
    (root / "feature_repo").mkdir(parents=True, exist_ok=True)
    (root / "feature_repo" / "feature_store.yaml").write_text(FEATURE_STORE_YAML)
    (root / "feature_repo" / "definitions.py").write_text(repo or definitions())
    table = labels() if frame is None else frame
    if file.endswith(".csv"):
        table.to_csv(root / file, index=False)
    else:
        table.to_parquet(root / file, index=False)
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({"gate": gate or {}}))
    project = {
        "name": "churn",
        "task": task,
        "root": str(root),
        "labels": {**LABELS, "path": file, **(label_settings or {})},
    }
    overrides: dict[str, Any] = {
        "home": tmp_path / "home",
        "project": project,
        "features": {"feature_service": "churn_v1", **(features or {})},
    }
    if model is not None:
        overrides["model"] = model
    return load_config(profile, **overrides)


def network_module(root: Path, body: str) -> str:
    """A module of the project's own (unique name: imports are cached per process) with
    ``build(input_width, output_width)``; returns its entry point."""
    name = f"team_net_{uuid.uuid4().hex[:8]}"
    (root / f"{name}.py").write_text(
        f"from torch import nn\n\n\ndef build(input_width, output_width):\n    {body}\n"
    )
    return f"{name}:build"


def test_a_project_of_ones_own_loads(tmp_path: Path) -> None:
    project = check_project(make_project(tmp_path))
    assert isinstance(project, Project)
    schema = project.schema
    assert (schema.task, schema.label, schema.timestamp) == ("binary", "churned", "event_timestamp")
    assert schema.entities == (Key("customer_id", "int"),)
    assert schema.classes == (0, 1) and schema.output_width == 1
    assert schema.feature_service == "churn_v1"
    assert project.label_rows == ROWS
    assert project.labels_path == tmp_path / "project" / "labels.parquet"
    # Declared features: the view's fields in order, then the request features.
    assert schema.feature_names == (
        "tenure_months",
        "monthly_spend",
        "plan",
        "support_calls",
        "channel",
    )
    assert schema.feature("support_calls") == Feature(
        "support_calls", "numeric", REQUEST, integer=True
    )
    assert schema.feature("channel").kind == "categorical"  # inferred from the column
    # Undeclared label-table columns are not a failure: they are listed, and left out.
    assert project.ignored_columns == ("spend_next_month", "notes")
    assert "notes" not in schema.training_columns


def test_feast_field_tags_land_in_the_schema(tmp_path: Path) -> None:
    schema = check_project(make_project(tmp_path)).schema
    tenure = schema.feature("tenure_months")
    assert (tenure.kind, tenure.source, tenure.integer) == ("numeric", "customer_stats", True)
    assert (tenure.min_value, tenure.max_value) == (0.0, 600.0)
    assert tenure.description == "months as a customer"
    spend = schema.feature("monthly_spend")
    assert (spend.min_value, spend.max_value, spend.integer) == (None, None, False)
    assert schema.feature("plan").categories == ("basic", "plus", "pro")  # spaces trimmed
    assert schema.views() == {"customer_stats": schema.stored_features}


def test_a_tag_that_is_not_a_number_is_named(tmp_path: Path) -> None:
    repo = definitions().replace('"max": "600"', '"max": "lots"')
    with pytest.raises(ProjectError, match=r"field 'tenure_months'.*max='lots' is not a number"):
        check_project(make_project(tmp_path, repo=repo))


def test_csv_label_tables_work(tmp_path: Path) -> None:
    config = make_project(tmp_path, file="labels.csv")
    project = check_project(config)
    assert project.labels_path.suffix == ".csv" and project.label_rows == ROWS
    assert project.schema.entities == (Key("customer_id", "int"),)
    assert project.schema.classes == (0, 1)


def test_string_classes_work(tmp_path: Path) -> None:
    frame = labels().assign(churned=lambda f: np.where(f["churned"] == 1, "left", "stayed"))
    schema = check_project(make_project(tmp_path, frame)).schema
    assert schema.task == "binary" and schema.classes == ("left", "stayed")
    plans = labels().assign(
        churned=lambda f: np.array(["basic", "plus", "pro", "none"])[f.index % 4]
    )
    multi = check_project(make_project(tmp_path / "multi", plans, task="multiclass")).schema
    assert multi.classes == ("basic", "none", "plus", "pro") and multi.output_width == 4


def test_a_regression_project_loads(tmp_path: Path) -> None:
    config = make_project(tmp_path, task="regression", label_settings={"label": "spend_next_month"})
    project = check_project(config)
    assert project.schema.task == "regression" and project.schema.classes == ()
    assert "churned" in project.ignored_columns


def test_a_custom_model_entry_point_is_built_once_on_dummy_input(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    entry = network_module(root, "return nn.Sequential(nn.Linear(input_width, output_width))")
    config = make_project(tmp_path, model={"entry_point": entry})
    assert check_project(config).schema.output_width == 1


# Each broken definition, and what the error must name (every part, as regular expressions).
Case = Callable[[Path], PlatformConfig]


def _three_classes(tmp: Path) -> PlatformConfig:
    return make_project(tmp, labels().assign(churned=lambda f: f.index % 3))


def _int_timestamps(tmp: Path) -> PlatformConfig:
    return make_project(tmp, labels().assign(event_timestamp=np.arange(ROWS)))


def _unparseable_csv_dates(tmp: Path) -> PlatformConfig:
    frame = labels().astype({"event_timestamp": str})
    frame.loc[3, "event_timestamp"] = "the third of never"
    return make_project(tmp, frame, file="labels.csv")


def _null_key(tmp: Path) -> PlatformConfig:
    frame = labels().astype({"customer_id": "float64"})
    frame.loc[5, "customer_id"] = np.nan
    return make_project(tmp, frame)


def _request_named_like_stored(tmp: Path) -> PlatformConfig:
    request = {"request_features": ["support_calls", "monthly_spend"]}
    return make_project(tmp, labels().assign(monthly_spend=1.0), label_settings=request)


def _missing_function(tmp: Path) -> PlatformConfig:
    (tmp / "project").mkdir(exist_ok=True)
    module = network_module(tmp / "project", "return nn.Identity()").partition(":")[0]
    return make_project(tmp, model={"entry_point": f"{module}:make_network"})


def _model(body: str) -> Case:
    def case(tmp: Path) -> PlatformConfig:
        (tmp / "project").mkdir(exist_ok=True)
        entry = network_module(tmp / "project", body)
        return make_project(tmp, model={"entry_point": entry})

    return case


BROKEN: dict[str, tuple[Case, list[str]]] = {
    "missing label file": (
        lambda tmp: make_project(tmp, label_settings={"path": "labels-2026.parquet"}),
        [r"project\.labels\.path", r"labels-2026\.parquet does not exist"],
    ),
    "missing entity column": (
        lambda tmp: make_project(tmp, label_settings={"entities": ["account_id"]}),
        [r"project\.labels\.entities", "'account_id' is not in", r"labels\.parquet"],
    ),
    "missing label column": (
        lambda tmp: make_project(tmp, label_settings={"label": "cancelled"}),
        [r"project\.labels\.label", "'cancelled' is not in"],
    ),
    "missing timestamp column": (
        lambda tmp: make_project(tmp, label_settings={"timestamp": "signed_up_at"}),
        [r"project\.labels\.timestamp", "'signed_up_at' is not in"],
    ),
    "missing request feature column": (
        lambda tmp: make_project(
            tmp, label_settings={"request_features": ["support_calls", "discount"]}
        ),
        [r"project\.labels\.request_features", "'discount' is not in"],
    ),
    "three classes for a binary task": (
        _three_classes,
        [r"project\.task: binary", "label 'churned' has 3 classes", "multiclass"],
    ),
    "integer timestamps": (
        _int_timestamps,
        [r"project\.labels\.timestamp", "'event_timestamp'", "int64", "not timestamps"],
    ),
    "unparseable CSV dates": (
        _unparseable_csv_dates,
        [r"project\.labels\.timestamp", r"labels\.csv", "is not a timestamp"],
    ),
    "nulls in an entity key": (
        _null_key,
        [r"project\.labels\.entities", "key column 'customer_id'", "1 empty values"],
    ),
    "two views with the same field": (
        lambda tmp: make_project(
            tmp, repo=definitions(SAME_FIELD, "customer_stats, customer_risk")
        ),
        ["duplicate feature name 'monthly_spend'", "customer_stats", "customer_risk"],
    ),
    "request feature named like a stored one": (
        _request_named_like_stored,
        ["duplicate feature name 'monthly_spend'", "customer_stats", "request"],
    ),
    "label-table column named like a stored feature": (
        lambda tmp: make_project(tmp, labels().assign(plan="basic")),
        ["column 'plan'", "stored feature of view 'customer_stats'"],
    ),
    "unknown feature service": (
        lambda tmp: make_project(tmp, features={"feature_service": "churn_v2"}),
        [r"features\.feature_service", "no feature service 'churn_v2'", "churn_v1"],
    ),
    "view joined on a key the label table lacks": (
        lambda tmp: make_project(tmp, repo=definitions(OTHER_KEY, "customer_stats, region_stats")),
        [r"project\.labels\.entities", "view 'region_stats'", "joins on region_id"],
    ),
    "view joined on a key the label table lacks (key field listed)": (
        lambda tmp: make_project(
            tmp,
            repo=definitions(
                OTHER_KEY.replace(
                    'schema=[Field(name="unemployment"',
                    'schema=[Field(name="region_id", dtype=Int64), Field(name="unemployment"',
                ),
                "customer_stats, region_stats",
            ),
        ),
        [r"project\.labels\.entities", "view 'region_stats'", "joins on region_id"],
    ),
    "model entry point that does not import": (
        lambda tmp: make_project(tmp, model={"entry_point": "team_models_nowhere.net:build"}),
        [r"model\.entry_point", "cannot import 'team_models_nowhere.net'"],
    ),
    "model entry point without that function": (
        _missing_function,
        [r"model\.entry_point", "has no attribute 'make_network'"],
    ),
    "model of the wrong output width": (
        _model("return nn.Linear(input_width, output_width + 2)"),
        [r"model\.entry_point", r"answered \(2, 3\)", r"needs 1 output\(s\) per row"],
    ),
    "model that is not a module": (
        _model("return lambda x: x"),
        [r"model\.entry_point", "returned function", r"not a torch\.nn\.Module"],
    ),
    "rmse for a binary task": (
        lambda tmp: make_project(tmp, gate={"metric": "rmse"}),
        [r"gate\.metric: rmse does not fit a binary task", "roc_auc"],
    ),
    "roc_auc for a regression task": (
        lambda tmp: make_project(
            tmp,
            task="regression",
            label_settings={"label": "spend_next_month"},
            gate={"metric": "roc_auc"},
        ),
        [r"gate\.metric: roc_auc does not fit a regression task", "rmse"],
    ),
    "a floor on a metric of another task": (
        lambda tmp: make_project(tmp, gate={"min_values": {"r2": 0.5}}),
        [r"gate\.min_values\.r2: r2 does not fit a binary task"],
    ),
    "numeric request feature holding text": (
        lambda tmp: make_project(
            tmp,
            label_settings={
                "request_features": ["support_calls", {"name": "channel", "kind": "numeric"}]
            },
        ),
        [r"project\.labels\.request_features", "'channel' is declared numeric"],
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_definition_fails_before_anything_runs(tmp_path: Path, case: str) -> None:
    build, expected = BROKEN[case]
    config = build(tmp_path)
    with pytest.raises(ProjectError) as failure:
        check_project(config)
    message = str(failure.value)
    for part in expected:
        assert re.search(part, message), f"{part!r} not in: {message}"
    # Nothing was started: the platform home was never written to.
    assert not config.home.exists()
