"""The drift rule on seeded frames: PSI above ``psi_threshold`` and a test rejecting at
``p_value``, with the test counting repeated values once."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
from scipy import stats

from aiinfra.data import drift
from aiinfra.data.drift import FeatureDrift, build_profile, compare, psi
from aiinfra.project.config import DriftConfig
from aiinfra.project.schema import Feature, Key, Schema

CONFIG = DriftConfig()
LOANS = Schema(
    task="binary",
    entities=(Key("applicant_id", "int"),),
    timestamp="event_timestamp",
    label="defaulted",
    features=(
        Feature("annual_income", "numeric", "applicants", min_value=0),
        Feature("term_months", "numeric", "loans", integer=True),
        Feature("purpose", "categorical", "loans", categories=("car", "home", "education")),
    ),
    classes=(0, 1),
)
ZIPCODES = Schema(
    task="binary",
    entities=(Key("applicant_id", "int"),),
    timestamp="event_timestamp",
    label="defaulted",
    features=(Feature("zip_default_rate", "numeric", "zipcodes"),),
    classes=(0, 1),
)


def _loans(
    seed: int,
    rows: int,
    income: float = 1.0,
    car: float = 0.3,
    positive: float = 0.27,
    long_term: float = 0.3,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    other = (1 - car) / 2
    return pd.DataFrame(
        {
            "annual_income": rng.lognormal(11, 0.4, rows) * income,
            "term_months": rng.choice([36, 60], rows, p=[1 - long_term, long_term]),
            "purpose": rng.choice(["car", "home", "education"], rows, p=[car, other, other]),
            "defaulted": (rng.random(rows) < positive).astype(int),
        }
    )


def _by_name(results: list[FeatureDrift]) -> dict[str, FeatureDrift]:
    return {r.feature: r for r in results}


def test_psi_is_zero_for_identical_shares_and_grows_with_shift() -> None:
    base = np.array([0.25, 0.25, 0.25, 0.25])
    assert psi(base, base) == 0.0
    assert (
        0 < psi(base, np.array([0.3, 0.25, 0.25, 0.2])) < psi(base, np.array([0.7, 0.1, 0.1, 0.1]))
    )


def test_same_distribution_does_not_drift() -> None:
    results = compare(build_profile(_loans(0, 4000), LOANS), _loans(1, 2000), CONFIG)
    assert sorted(r.feature for r in results) == [
        "annual_income",
        "defaulted",
        "purpose",
        "term_months",
    ]
    assert not [r.describe() for r in results if r.drifted]


def test_a_shifted_numeric_feature_drifts() -> None:
    profile = build_profile(_loans(0, 4000), LOANS)
    results = _by_name(compare(profile, _loans(1, 2000, income=1.5), CONFIG))
    assert [name for name, r in results.items() if r.drifted] == ["annual_income"]
    income = results["annual_income"]
    assert (income.test, income.effect_name, income.role) == ("ks", "KS", "feature")
    assert income.effect > 0.3 and income.psi > CONFIG.psi_threshold
    assert income.p_value < CONFIG.p_value
    assert income.detail.startswith("mean ")
    assert len(income.histogram.bins) == 10 and sum(income.histogram.current) == 1


def test_a_categorical_shift_drifts_and_names_new_values() -> None:
    profile = build_profile(_loans(0, 4000), LOANS)
    moved = _loans(1, 2000, car=0.6)
    results = _by_name(compare(profile, moved, CONFIG))
    purpose = results["purpose"]
    assert purpose.drifted and (purpose.test, purpose.effect_name) == ("chi2", "TVD")
    assert abs(purpose.effect - 0.3) < 0.05  # 30 points of shares moved to "car"
    assert not results["annual_income"].drifted

    moved.loc[moved.index[:300], "purpose"] = "yacht"
    purpose = _by_name(compare(profile, moved, CONFIG))["purpose"]
    assert purpose.drifted and purpose.detail == "new values: yacht"
    assert purpose.histogram.bins[-1] == "yacht" and purpose.histogram.reference[-1] == 0


def test_the_label_rate_moving_drifts_as_the_label() -> None:
    profile = build_profile(_loans(0, 4000, positive=0.27), LOANS)
    results = compare(profile, _loans(1, 2000, positive=0.73), CONFIG)
    label = _by_name(results)["defaulted"]
    assert label.role == "label" and label.drifted and label.test == "chi2"
    assert drift.drifted(results, "label") == [label]
    assert drift.drifted(results) == []  # no feature moved


def _zip_weeks(rng: np.random.Generator, zips: np.ndarray, weeks: int, scale: float) -> np.ndarray:
    """A weekly statistic per zipcode (its default rate): every applicant of a zipcode in a
    week carries that week's value, 9 applicants per zipcode and week."""
    week = [np.repeat((zips + rng.normal(0, 0.01, len(zips))) * scale, 9) for _ in range(weeks)]
    return np.concatenate(week)


def _zip_frame(values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"zip_default_rate": values, "defaulted": 0})


def test_values_repeated_per_zipcode_and_week_count_once() -> None:
    rng = np.random.default_rng(0)
    zips = rng.normal(0.2, 0.04, 50)
    profile = build_profile(_zip_frame(_zip_weeks(rng, zips, 60, 1.0)), ZIPCODES)
    week = compare(profile, _zip_frame(_zip_weeks(rng, zips, 1, 1.05)), CONFIG, ("feature",))[0]
    # A 5% shift in one week of 450 loans: PSI passes its threshold, but the week holds 50
    # observations (one per zipcode), too few to tell the shift from the weekly noise.
    assert (week.rows, week.effective_rows) == (450, 50)
    assert week.psi > CONFIG.psi_threshold and week.p_value > CONFIG.p_value
    assert not week.drifted
    # The same KS statistic read as 450 independent loans would have rejected.
    as_rows = stats.kstwobign.sf(week.effect * math.sqrt(450 * 2000 / (450 + 2000)))
    assert as_rows < CONFIG.p_value

    # The same shift with a value per applicant, over 20,000 loans: the test rejects, and PSI
    # says the move is too small to matter.
    each = (rng.choice(zips, 20_000) + rng.normal(0, 0.01, 20_000)) * 1.05
    loans = compare(profile, _zip_frame(each), CONFIG, ("feature",))[0]
    assert loans.rows == loans.effective_rows == 20_000
    assert loans.p_value < 1e-6 and loans.psi < CONFIG.psi_threshold
    assert not loans.drifted

    # A week whose rates moved by 30% drifts, on 50 observations.
    moved = compare(profile, _zip_frame(_zip_weeks(rng, zips, 1, 1.3)), CONFIG, ("feature",))[0]
    assert moved.drifted and moved.effective_rows == 50


def test_a_number_with_few_values_is_compared_value_by_value() -> None:
    profile = build_profile(_loans(0, 4000, long_term=0.3), LOANS)
    assert profile["features"]["term_months"]["kind"] == "discrete"
    # Read back as floats (36.0): the same values as the reference's 36 and 60.
    current = _loans(1, 2000, long_term=0.7).astype({"term_months": "float64"})
    term = _by_name(compare(profile, current, CONFIG))["term_months"]
    assert (term.test, term.detail) == ("chi2", "same values")
    assert sorted(term.histogram.bins) == ["36", "60"]
    assert term.drifted and abs(term.effect - 0.4) < 0.05


def test_a_column_without_values_is_not_measured() -> None:
    profile = build_profile(_loans(0, 4000), LOANS)
    empty = _loans(1, 500).assign(annual_income=np.nan)
    income = _by_name(compare(profile, empty, CONFIG))["annual_income"]
    assert (income.rows, income.detail, income.drifted) == (0, "no values", False)
    assert math.isnan(income.psi) and math.isnan(income.p_value)


def test_predictions_are_compared_under_their_field_name() -> None:
    frame = _loans(0, 4000)
    scores = pd.Series(np.random.default_rng(2).beta(2, 5, len(frame)), name="probability")
    profile = build_profile(frame, LOANS, predictions=scores)
    later = _loans(1, 2000).assign(probability=np.random.default_rng(3).beta(5, 2, 2000))
    (prediction,) = compare(profile, later, CONFIG, roles=("prediction",))
    assert (prediction.feature, prediction.role) == ("probability", "prediction")
    assert prediction.drifted


def test_profile_is_json_serializable() -> None:
    frame = _loans(0, 4000)
    profile = build_profile(frame, LOANS)
    loaded = json.loads(json.dumps(profile))
    assert loaded["rows"] == len(frame)
    assert set(loaded["features"]) == set(LOANS.feature_names)
    assert list(loaded["label"]) == [LOANS.label]  # profiled apart from the features
    assert compare(loaded, _loans(1, 2000), CONFIG) == compare(profile, _loans(1, 2000), CONFIG)
