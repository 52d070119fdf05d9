"""The serving types are built from the project's schema: the loan example's bounds and
categories are enforced, and any other schema (multiclass, regression, other keys) gets its
own request fields and its own answer shape."""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from aiinfra.project.config import ModelConfig
from aiinfra.project.schema import REQUEST, Feature, Key, Schema
from aiinfra.runtime.api import MAX_BATCH_ROWS, answers, batch_type, response_types, row_type
from aiinfra.runtime.champion import check_model, smoke_frame
from aiinfra.training.model import Encoder, TabularModel, Target, build_network

GOOD = {
    "applicant_id": 1,
    "zipcode": "10000",
    "loan_amount": 12000.0,
    "term_months": 36,
    "purpose": "car",
}


@pytest.fixture(scope="module")
def loan_row(schema: Schema) -> type[BaseModel]:
    """The loan example's request row, built from its schema (Feast repo + profile)."""
    return row_type(schema)


def test_a_good_row_validates(loan_row: type[BaseModel]) -> None:
    assert loan_row(**GOOD).model_dump()["purpose"] == "car"
    # The fields are the entity keys, then the request-time features; stored features come
    # from the online store, never from the caller.
    assert list(loan_row.model_fields) == list(GOOD)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"loan_amount": float("nan")}, "loan_amount"),
        ({"loan_amount": float("inf")}, "loan_amount"),
        ({"loan_amount": -5}, "loan_amount"),
        ({"loan_amount": "a lot"}, "loan_amount"),
        ({"term_months": 1000}, "term_months"),
        ({"purpose": "yacht"}, "purpose"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_fields_are_named(
    loan_row: type[BaseModel], change: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as err:
        loan_row(**{**GOOD, **change})
    assert field in str(err.value)


def test_missing_field_is_named(loan_row: type[BaseModel]) -> None:
    row = dict(GOOD)
    del row["purpose"]
    with pytest.raises(ValidationError, match="purpose"):
        loan_row(**row)


def test_batch_bounds(loan_row: type[BaseModel]) -> None:
    batch: TypeAdapter[Any] = TypeAdapter(batch_type(loan_row))
    assert len(batch.validate_python([GOOD] * MAX_BATCH_ROWS)) == MAX_BATCH_ROWS
    with pytest.raises(ValidationError, match="at least 1"):
        batch.validate_python([])
    with pytest.raises(ValidationError, match=f"at most {MAX_BATCH_ROWS}"):
        batch.validate_python([GOOD] * (MAX_BATCH_ROWS + 1))


# Two projects the platform has never seen, described by hand: the types must follow them.
MULTICLASS = Schema(
    task="multiclass",
    entities=(Key("plant_id", "int"),),
    timestamp="measured_at",
    label="species",
    features=(
        Feature("sepal_width", "numeric", "plants", "cm", min_value=0.0, max_value=5.0),
        Feature("petal_length", "numeric", REQUEST, "petal length, cm", 0.0, 10.0),
        Feature("leaves", "numeric", REQUEST, "leaf count", 1, 50, integer=True),
        Feature("color", "categorical", REQUEST, "flower color", categories=("blue", "white")),
    ),
    classes=("setosa", "versicolor", "virginica"),
)
REGRESSION = Schema(
    task="regression",
    entities=(Key("house_id", "string"), Key("region", "int")),
    timestamp="sold_at",
    label="price",
    features=(
        Feature("area", "numeric", REQUEST, "floor area, m2", 10.0, 1000.0),
        Feature("rooms", "numeric", REQUEST, "", min_value=1, integer=True),
        Feature("heating", "categorical", REQUEST, "heating system"),
        Feature("region_income", "numeric", "regions", "median income"),
    ),
)
PLANT = {"plant_id": 7, "petal_length": 4.5, "leaves": 12, "color": "blue"}
HOUSE = {"house_id": "h-1", "region": 3, "area": 80.0, "rooms": 3, "heating": "gas"}


def test_the_row_type_of_a_multiclass_project() -> None:
    row = row_type(MULTICLASS)
    assert list(row.model_fields) == ["plant_id", "petal_length", "leaves", "color"]
    fields = row.model_fields
    assert fields["plant_id"].annotation is int
    assert fields["leaves"].annotation is int and fields["petal_length"].annotation is float
    assert fields["color"].annotation == Literal["blue", "white"]
    assert get_args(fields["color"].annotation) == ("blue", "white")
    assert fields["petal_length"].description == "petal length, cm"
    assert fields["color"].description == "flower color"
    assert row(**PLANT).model_dump() == PLANT
    # The OpenAPI page shows the bounds, the categories and the descriptions.
    props = row.model_json_schema()["properties"]
    assert (props["petal_length"]["minimum"], props["petal_length"]["maximum"]) == (0.0, 10.0)
    assert (props["leaves"]["minimum"], props["leaves"]["maximum"]) == (1, 50)
    assert props["color"]["enum"] == ["blue", "white"]
    assert props["leaves"]["description"] == "leaf count"
    bad: list[tuple[dict[str, object], str]] = [
        ({"petal_length": 11.0}, "petal_length"),
        ({"petal_length": -0.1}, "petal_length"),
        ({"petal_length": math.nan}, "petal_length"),
        ({"leaves": 0}, "leaves"),
        ({"leaves": 51}, "leaves"),
        ({"leaves": 2.5}, "leaves"),  # an integer feature takes no fractions
        ({"color": "green"}, "color"),
        ({"plant_id": "seven"}, "plant_id"),
        ({"sepal_width": 3.0}, "sepal_width"),  # stored: read from Feast, never sent
    ]
    for change, field in bad:
        with pytest.raises(ValidationError) as err:
            row(**{**PLANT, **change})
        assert field in str(err.value), change


def test_the_row_type_of_a_regression_project() -> None:
    row = row_type(REGRESSION)
    assert list(row.model_fields) == ["house_id", "region", "area", "rooms", "heating"]
    fields = row.model_fields
    assert fields["house_id"].annotation is str and fields["region"].annotation is int
    assert fields["heating"].annotation is str  # no declared categories: any string
    assert fields["area"].description == "floor area, m2"
    assert fields["rooms"].description is None
    assert row(**{**HOUSE, "heating": "heat pump", "rooms": 10**6}).model_dump()["rooms"] == 10**6
    props = row.model_json_schema()["properties"]
    assert (props["area"]["minimum"], props["area"]["maximum"]) == (10.0, 1000.0)
    assert "maximum" not in props["rooms"] and props["rooms"]["minimum"] == 1
    bad: list[tuple[dict[str, object], str]] = [
        ({"area": 5.0}, "area"),
        ({"area": 1000.5}, "area"),
        ({"area": math.inf}, "area"),
        ({"rooms": 0}, "rooms"),
        ({"region": "north"}, "region"),
        ({"region_income": 1.0}, "region_income"),
    ]
    for change, field in bad:
        with pytest.raises(ValidationError) as err:
            row(**{**HOUSE, **change})
        assert field in str(err.value), change
    with pytest.raises(ValidationError, match="house_id"):
        row(**{k: v for k, v in HOUSE.items() if k != "house_id"})


def _answer_fields(response: type[BaseModel]) -> set[str]:
    (prediction,) = get_args(response.model_fields["predictions"].annotation)
    return set(prediction.model_fields)


def _respond(schema: Schema, predicted: np.ndarray) -> dict[str, Any]:
    return {
        "model_name": "m",
        "model_version": "3",
        "predictions": answers(schema, list(schema.classes), predicted),
    }


def test_binary_answers_are_a_probability_and_a_class(schema: Schema) -> None:
    response, row = response_types(schema)
    assert _answer_fields(response) == {"probability", "predicted_class"}
    assert set(row.model_fields) == {"model_version", "error", "probability", "predicted_class"}
    body = response.model_validate(_respond(schema, np.array([0.2, 0.7])))
    assert [p.predicted_class for p in body.predictions] == list(schema.classes)  # type: ignore[attr-defined]
    bad = {"probability": 0.2, "predicted_class": "maybe"}
    with pytest.raises(ValidationError, match="predicted_class"):
        response.model_validate({"model_name": "m", "model_version": "3", "predictions": [bad]})
    failed = row(model_version="3", error="no stored features for this entity")
    assert failed.probability is None and failed.predicted_class is None  # type: ignore[attr-defined]


def test_multiclass_answers_hold_every_class(schema: Schema) -> None:
    response, row = response_types(MULTICLASS)
    assert _answer_fields(response) == {"probabilities", "predicted_class"}
    assert set(row.model_fields) == {"model_version", "error", "probabilities", "predicted_class"}
    body = response.model_validate(_respond(MULTICLASS, np.array([[0.1, 0.7, 0.2]])))
    (answer,) = body.predictions  # type: ignore[attr-defined]
    assert answer.predicted_class == "versicolor"
    assert answer.probabilities == {"setosa": 0.1, "versicolor": 0.7, "virginica": 0.2}
    bad = {"probabilities": {"rose": 1.0}, "predicted_class": "rose"}
    with pytest.raises(ValidationError, match="predicted_class"):
        response.model_validate({"model_name": "m", "model_version": "3", "predictions": [bad]})
    # Each project's types are its own: the loan's answer type is untouched.
    assert _answer_fields(response_types(schema)[0]) == {"probability", "predicted_class"}


def test_regression_answers_are_a_value() -> None:
    response, row = response_types(REGRESSION)
    assert _answer_fields(response) == {"value"}
    assert set(row.model_fields) == {"model_version", "error", "value"}
    body = response.model_validate(_respond(REGRESSION, np.array([250_000.0, 1.5])))
    assert [p.value for p in body.predictions] == [250_000.0, 1.5]  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="value"):
        response.model_validate(
            {"model_name": "m", "model_version": "3", "predictions": [{"value": "high"}]}
        )
    assert row(model_version="3", error=None, value=2.0).value == 2.0  # type: ignore[attr-defined]


def _untrained(schema: Schema, frame: pd.DataFrame) -> TabularModel:
    """A model of ``schema`` fitted to ``frame``'s encoding, with fresh weights."""
    encoder, target = Encoder.fit(frame, schema), Target.fit(frame, schema)
    model = ModelConfig(settings={"hidden_sizes": [4]})
    network = build_network(model, encoder.width, target.output_width)
    return TabularModel(model, encoder, target, network, schema)


def _synthetic(schema: Schema, rows: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame: dict[str, Any] = {}
    for f in schema.features:
        if f.kind == "numeric":
            frame[f.name] = rng.uniform(f.min_value or 0.0, f.max_value or 100.0, rows)
        else:
            frame[f.name] = rng.choice(f.categories or ("a", "b", "c"), rows)
    if schema.task == "regression":
        frame[schema.label] = rng.normal(300_000, 50_000, rows)
    else:
        frame[schema.label] = rng.choice(schema.classes, rows)
    return pd.DataFrame(frame)


def test_smoke_frame_covers_every_feature(schema: Schema, training_frame: pd.DataFrame) -> None:
    for project, frame in [
        (schema, training_frame),
        (MULTICLASS, _synthetic(MULTICLASS)),
        (REGRESSION, _synthetic(REGRESSION)),
    ]:
        model = _untrained(project, frame)
        smoke = smoke_frame(model)
        assert len(smoke) == 1 and list(smoke.columns) == model.encoder.columns
        assert set(smoke.columns) == set(project.feature_names), project.task
        check_model(model)  # one finite answer of the task's shape
    with pytest.raises(AttributeError):
        check_model(None)  # type: ignore[arg-type]
