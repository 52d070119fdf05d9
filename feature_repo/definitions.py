"""Feast definitions of the loan-default example, in Feast's own API (``feast apply`` reads
this file, and so does the platform).

Ordered as a Feast repo reads: entities -> sources -> feature views -> feature service. The
tables are written by the example's generator (``aiinfra data generate``) under the platform
home; the platform sets ``AIINFRA_DATA_DIR`` to that folder while it reads this file (the bare
``feast`` CLI falls back to ``../.aiinfra/data``). Field tags the platform reads: ``min``,
``max`` (numbers) and ``categories`` (comma-separated); what a field leaves out, validation
learns from the champion's training data.
"""

import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String

DATA = Path(
    os.environ.get("AIINFRA_DATA_DIR", Path(__file__).resolve().parent.parent / ".aiinfra" / "data")
)
OWNER = "risk-ml@ai-infrastructure.dev"
TTL = timedelta(days=400)
TAGS = {"team": "risk", "pii": "false"}

# An applicant: a person applying for loans; their profile changes over time.
applicant = Entity(
    name="applicant",
    join_keys=["applicant_id"],
    value_type=ValueType.INT64,
    description="a person applying for a loan",
    owner=OWNER,
)

# A zipcode: where the applicant lives; regional statistics are attached to it.
zipcode = Entity(
    name="zipcode",
    join_keys=["zipcode"],
    value_type=ValueType.STRING,
    description="US zipcode of the applicant's address",
    owner=OWNER,
)

# Sources: the parquet tables written by the generator (or your ingestion job).
applicant_source = FileSource(
    name="applicants",
    path=str(DATA / "applicants.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="credit bureau snapshots per applicant",
)

zipcode_source = FileSource(
    name="zipcodes",
    path=str(DATA / "zipcodes.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="weekly regional statistics",
)


def _bounds(low: float, high: float) -> dict[str, str]:
    return {"min": str(low), "max": str(high)}


# Feature views: what the model reads, with the time-to-live of a value.
applicant_profile = FeatureView(
    name="applicant_profile",
    entities=[applicant],
    ttl=TTL,
    schema=[
        Field(name="age", dtype=Int64, description="age in years", tags=_bounds(18, 100)),
        Field(
            name="annual_income",
            dtype=Float64,
            description="reported income, USD",
            tags=_bounds(0, 2e6),
        ),
        Field(name="credit_score", dtype=Int64, description="bureau score", tags=_bounds(300, 850)),
        Field(
            name="debt_to_income",
            dtype=Float64,
            description="monthly debt / income",
            tags=_bounds(0, 1.5),
        ),
        Field(
            name="employment_years",
            dtype=Float64,
            description="years in current job",
            tags=_bounds(0, 60),
        ),
        Field(name="open_credit_lines", dtype=Int64, description="open lines", tags=_bounds(0, 60)),
        Field(
            name="home_ownership",
            dtype=String,
            description="housing",
            tags={"categories": "rent,own,mortgage"},
        ),
    ],
    source=applicant_source,
    online=True,
    description="the applicant's latest bureau profile",
    owner=OWNER,
    tags=TAGS,
)

zipcode_stats = FeatureView(
    name="zipcode_stats",
    entities=[zipcode],
    ttl=TTL,
    schema=[
        Field(
            name="median_income",
            dtype=Float64,
            description="median household income",
            tags=_bounds(0, 1e6),
        ),
        Field(
            name="unemployment_rate",
            dtype=Float64,
            description="share unemployed",
            tags=_bounds(0, 1),
        ),
        Field(
            name="regional_default_rate",
            dtype=Float64,
            description="past default rate",
            tags=_bounds(0, 1),
        ),
    ],
    source=zipcode_source,
    online=True,
    description="income, unemployment and past defaults of the zipcode",
    owner=OWNER,
    tags=TAGS,
)

# The feature service is the contract with the model: versioned by name with it.
loan_default_v1 = FeatureService(
    name="loan_default_v1",
    features=[applicant_profile, zipcode_stats],
    description="features of the loan default model",
    owner=OWNER,
    tags={"model": "loan-default"},
)
