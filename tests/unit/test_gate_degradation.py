"""The gate's check on the data under the models: a champion that scores far below its own
gate-time figure on the new evaluation rows holds a passing challenger for a person, unless
the run was started because of that change."""

from __future__ import annotations

import pytest

from aiinfra.project.config import GateConfig
from aiinfra.release.gate import (
    Degradation,
    champion_degradation,
    decide,
    degradation_note,
    gate_report,
    hold_for_degradation,
)

GATE = GateConfig(max_champion_drop=0.05)
PASSING = decide(GATE, "roc_auc", {"roc_auc": 0.80}, {"roc_auc": 0.70})
FAILING = decide(GATE, "roc_auc", {"roc_auc": 0.69}, {"roc_auc": 0.70})
DROP = Degradation("roc_auc", now=0.70, then=0.85)
MONITORING = "live roc_auc 0.7000 of v3 is 0.1500 below its 0.8500 at the gate"


def test_a_drop_of_a_higher_is_better_metric_beyond_the_limit_is_degradation() -> None:
    found = champion_degradation(GATE, "roc_auc", now=0.78, then=0.85)
    assert found is not None and found.drop == pytest.approx(0.07)
    assert champion_degradation(GATE, "roc_auc", now=0.81, then=0.85) is None  # 0.04: allowed
    assert champion_degradation(GATE, "roc_auc", now=0.95, then=0.85) is None  # it improved


def test_a_rise_of_a_lower_is_better_metric_is_degradation() -> None:
    found = champion_degradation(GATE, "rmse", now=1.10, then=1.00)
    assert found is not None and found.drop == pytest.approx(0.10)
    assert champion_degradation(GATE, "rmse", now=0.90, then=1.00) is None  # lower is better
    assert champion_degradation(GATE, "rmse", now=1.04, then=1.00) is None


def test_no_limit_or_no_gate_time_figure_is_no_degradation() -> None:
    off = GateConfig(max_champion_drop=None)
    assert champion_degradation(off, "roc_auc", now=0.10, then=0.85) is None
    assert champion_degradation(GATE, "roc_auc", now=0.10, then=None) is None  # older version
    assert champion_degradation(GATE, "roc_auc", now=0.10, then=float("nan")) is None


def test_degradation_describes_the_figures() -> None:
    assert DROP.describe("3") == (
        "@champion v3 scores roc_auc 0.7000 on the new evaluation rows, "
        "0.1500 worse than its 0.8500 at its own gate"
    )
    assert DROP.describe().startswith("@champion scores roc_auc 0.7000")


def test_a_passing_decision_is_held_for_a_person() -> None:
    assert PASSING.passed and not PASSING.held
    held = hold_for_degradation(PASSING, DROP, expected_change="")
    assert held.held and not held.passed
    assert held.reason.startswith("held for a person: @champion scores roc_auc 0.7000")
    assert PASSING.reason in held.reason  # what the challenger passed on stays readable
    assert (held.metric, held.challenger, held.champion) == ("roc_auc", 0.80, 0.70)


def test_a_run_started_because_of_the_change_is_not_held() -> None:
    assert hold_for_degradation(PASSING, DROP, expected_change=MONITORING) == PASSING


def test_a_failing_decision_stays_failing_and_is_not_held() -> None:
    assert not FAILING.passed
    assert hold_for_degradation(FAILING, DROP, expected_change="") == FAILING


def test_the_note_says_whether_the_change_was_expected() -> None:
    expected = degradation_note(DROP, MONITORING)
    assert "Expected" in expected and MONITORING in expected
    unexpected = degradation_note(DROP, "")
    assert "holds for a person" in unexpected and DROP.describe() in unexpected


def test_the_gate_report_names_a_held_run() -> None:
    held = hold_for_degradation(PASSING, DROP, expected_change="")
    report = gate_report(held, {"roc_auc": 0.80}, {"roc_auc": 0.70}, "3", "abc", 100)
    assert report.startswith("# Evaluation gate: HELD for a person: the data changed")
    assert gate_report(PASSING, {"roc_auc": 0.8}, None, None, "abc", 1).startswith(
        "# Evaluation gate: PASSED"
    )
    assert "NOT PASSED" in gate_report(FAILING, {"roc_auc": 0.69}, {"roc_auc": 0.7}, "3", "a", 1)
