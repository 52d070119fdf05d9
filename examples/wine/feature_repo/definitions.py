"""Feast definitions of the wine example, in Feast's own API (``feast apply`` reads this file,
and so does the platform).

One entity (a wine), one source (the laboratory analysis written by ``wine_data.write``), one
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
OWNER = "winery-ml@ai-infrastructure.dev"
TTL = timedelta(days=365)

wine = Entity(
    name="wine",
    join_keys=["wine_id"],
    value_type=ValueType.INT64,
    description="one wine graded by the winery",
    owner=OWNER,
)

analysis_source = FileSource(
    name="wine_analysis_source",
    path=str(DATA / "wine_features.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="laboratory analysis of each wine, the day before grading",
)


def _bounds(low: float, high: float) -> dict[str, str]:
    return {"min": str(low), "max": str(high)}


wine_analysis = FeatureView(
    name="wine_analysis",
    entities=[wine],
    ttl=TTL,
    schema=[
        Field(name="alcohol", dtype=Float64, description="alcohol, % vol", tags=_bounds(5, 20)),
        Field(name="malic_acid", dtype=Float64, description="malic acid, g/l"),
        Field(name="ash", dtype=Float64, description="ash, g/l"),
        Field(name="alcalinity_of_ash", dtype=Float64, description="alcalinity of ash"),
        Field(name="magnesium", dtype=Int64, description="magnesium, mg/l", tags=_bounds(0, 300)),
        Field(name="total_phenols", dtype=Float64, description="total phenols"),
        Field(name="flavanoids", dtype=Float64, description="flavanoid phenols"),
        Field(name="nonflavanoid_phenols", dtype=Float64, description="non-flavanoid phenols"),
        Field(name="proanthocyanins", dtype=Float64, description="proanthocyanins"),
        Field(name="hue", dtype=Float64, description="colour hue", tags=_bounds(0, 3)),
        Field(name="od280_od315", dtype=Float64, description="OD280/OD315 of diluted wine"),
        Field(name="proline", dtype=Float64, description="proline, mg/l", tags=_bounds(0, 3000)),
    ],
    source=analysis_source,
    online=True,
    description="the chemical analysis of the wine",
    owner=OWNER,
    tags={"team": "winery"},
)

# The contract with the model: versioned by name with it.
wine_v1 = FeatureService(
    name="wine_v1",
    features=[wine_analysis],
    description="features of the cultivar classifier",
    owner=OWNER,
    tags={"model": "wine"},
)
