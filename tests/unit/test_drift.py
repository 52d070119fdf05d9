import numpy as np
import pandas as pd

from aiinfra.data.drift import build_profile, compare, psi
from aiinfra.project.config import DriftConfig
from aiinfra.project.schema import Schema

CONFIG = DriftConfig()


def test_psi_is_zero_for_identical_shares_and_grows_with_shift() -> None:
    base = np.array([0.25, 0.25, 0.25, 0.25])
    assert psi(base, base) == 0.0
    assert (
        0 < psi(base, np.array([0.3, 0.25, 0.25, 0.2])) < psi(base, np.array([0.7, 0.1, 0.1, 0.1]))
    )


def test_same_distribution_does_not_drift(training_frame: pd.DataFrame, schema: Schema) -> None:
    half_a = training_frame.iloc[::2]
    half_b = training_frame.iloc[1::2]
    results = compare(build_profile(half_a, schema), half_b, CONFIG)
    assert results and not [r.feature for r in results if r.drifted]


def test_a_new_category_and_a_moved_mean_are_caught(
    training_frame: pd.DataFrame, schema: Schema
) -> None:
    profile = build_profile(training_frame, schema)
    moved = training_frame.assign(purpose="car", annual_income=training_frame["annual_income"] * 3)
    drifted = {r.feature: r for r in compare(profile, moved, CONFIG) if r.drifted}
    assert set(drifted) == {"purpose", "annual_income"}
    assert drifted["annual_income"].statistic > 0.5  # KS statistic
    assert "mean" in drifted["annual_income"].detail


def test_profile_is_json_serializable(training_frame: pd.DataFrame, schema: Schema) -> None:
    import json

    profile = build_profile(training_frame, schema)
    loaded = json.loads(json.dumps(profile))
    assert loaded["rows"] == len(training_frame)
    assert set(loaded["features"]) == set(schema.feature_names)
    assert list(loaded["label"]) == [schema.label]  # profiled apart from the features
