"""Feast definitions of the diabetes example, in Feast's own API (``feast apply`` reads this
file, and so does the platform).

One entity (a patient), one source (the lab results written by ``diabetes_data.write``), one
feature view and the feature service the model reads. The platform sets ``AIINFRA_DATA_DIR`` to
its data folder while it reads this file (the bare ``feast`` CLI falls back to
``../.aiinfra/data``). Only a few fields declare bounds (tags ``min`` / ``max``); validation
learns the others' ranges from the champion's training data.
"""

import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

DATA = Path(
    os.environ.get("AIINFRA_DATA_DIR", Path(__file__).resolve().parent.parent / ".aiinfra" / "data")
)
OWNER = "clinical-ml@ai-infrastructure.dev"
TTL = timedelta(days=365)

patient = Entity(
    name="patient",
    join_keys=["patient_id"],
    value_type=ValueType.INT64,
    description="a patient of the clinic",
    owner=OWNER,
)

labs_source = FileSource(
    name="patient_labs_source",
    path=str(DATA / "diabetes_features.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="baseline measurements and blood serum results, the day before the visit",
)


def _bounds(low: float, high: float) -> dict[str, str]:
    return {"min": str(low), "max": str(high)}


patient_labs = FeatureView(
    name="patient_labs",
    entities=[patient],
    ttl=TTL,
    schema=[
        Field(name="age", dtype=Int64, description="age in years", tags=_bounds(0, 120)),
        Field(name="sex", dtype=Int64, description="sex, coded 1 or 2", tags=_bounds(1, 2)),
        Field(name="bmi", dtype=Float64, description="body mass index", tags=_bounds(10, 70)),
        Field(name="tc", dtype=Float64, description="total serum cholesterol, mg/dl"),
        Field(name="ldl", dtype=Float64, description="low-density lipoproteins, mg/dl"),
        Field(name="hdl", dtype=Float64, description="high-density lipoproteins, mg/dl"),
        Field(name="tch", dtype=Float64, description="total cholesterol / HDL"),
        Field(name="ltg", dtype=Float64, description="log of serum triglycerides"),
        Field(name="glucose", dtype=Float64, description="blood sugar, mg/dl"),
    ],
    source=labs_source,
    online=True,
    description="the patient's baseline measurements",
    owner=OWNER,
    tags={"team": "clinical"},
)

# The contract with the model: versioned by name with it.
diabetes_v1 = FeatureService(
    name="diabetes_v1",
    features=[patient_labs],
    description="features of the disease progression model",
    owner=OWNER,
    tags={"model": "diabetes"},
)
