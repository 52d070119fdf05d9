"""The one declared schema of the model's data.

Everything that has to agree on what a loan application looks like is derived from here: the
demo data generator, the Feast feature views, the Great Expectations suite, the model's input
encoding and the serving request type. Change a feature here and all of them follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["numeric", "categorical"]
Origin = Literal["request", "applicant_profile", "zipcode_stats"]


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Kind
    origin: Origin
    description: str
    min_value: float | None = None
    max_value: float | None = None
    categories: tuple[str, ...] = ()
    integer: bool = False

    @property
    def is_request(self) -> bool:
        """Sent by the caller with each prediction request (not read from the feature store)."""
        return self.origin == "request"


# Keys of one training row: the loan, who applied, where, and when.
LOAN_ID = "loan_id"
APPLICANT_ID = "applicant_id"
ZIPCODE = "zipcode"
EVENT_TIMESTAMP = "event_timestamp"
LABEL = "defaulted"
ENTITY_KEYS: tuple[str, ...] = (APPLICANT_ID, ZIPCODE)
ROW_KEYS: tuple[str, ...] = (LOAN_ID, APPLICANT_ID, ZIPCODE, EVENT_TIMESTAMP)

PURPOSES = ("debt_consolidation", "home_improvement", "car", "education", "medical", "other")
HOME_OWNERSHIP = ("rent", "own", "mortgage")

FEATURES: tuple[Feature, ...] = (
    # Sent with the application.
    Feature("loan_amount", "numeric", "request", "requested principal, USD", 500, 100_000),
    Feature("term_months", "numeric", "request", "loan term, months", 6, 120, integer=True),
    Feature("purpose", "categorical", "request", "stated use of the loan", categories=PURPOSES),
    # Applicant profile, refreshed as the bureau reports change.
    Feature("age", "numeric", "applicant_profile", "age in years", 18, 100, integer=True),
    Feature("annual_income", "numeric", "applicant_profile", "reported income, USD", 0, 2e6),
    Feature("credit_score", "numeric", "applicant_profile", "bureau score", 300, 850, integer=True),
    Feature("debt_to_income", "numeric", "applicant_profile", "monthly debt / income", 0, 1.5),
    Feature("employment_years", "numeric", "applicant_profile", "years in current job", 0, 60),
    Feature("open_credit_lines", "numeric", "applicant_profile", "open lines", 0, 60, integer=True),
    Feature(
        "home_ownership", "categorical", "applicant_profile", "housing", categories=HOME_OWNERSHIP
    ),
    # Aggregates per zipcode.
    Feature("median_income", "numeric", "zipcode_stats", "median household income", 0, 1e6),
    Feature("unemployment_rate", "numeric", "zipcode_stats", "share unemployed", 0, 1),
    Feature("regional_default_rate", "numeric", "zipcode_stats", "past default rate", 0, 1),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
NUMERIC: tuple[Feature, ...] = tuple(f for f in FEATURES if f.kind == "numeric")
CATEGORICAL: tuple[Feature, ...] = tuple(f for f in FEATURES if f.kind == "categorical")
REQUEST_FEATURES: tuple[Feature, ...] = tuple(f for f in FEATURES if f.is_request)
TRAINING_COLUMNS: tuple[str, ...] = (*ROW_KEYS, *FEATURE_NAMES, LABEL)


def features_from(origin: Origin) -> tuple[Feature, ...]:
    return tuple(f for f in FEATURES if f.origin == origin)


def feature(name: str) -> Feature:
    for f in FEATURES:
        if f.name == name:
            return f
    raise KeyError(f"unknown feature {name!r}; declared: {', '.join(FEATURE_NAMES)}")
