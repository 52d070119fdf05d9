"""The rules that turn a monitoring window into a retraining run: each fires on its own, says
why with the figures it read, stays quiet on a healthy window, and is off when unset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aiinfra.data.drift import FeatureDrift, Histogram
from aiinfra.monitoring.live import Window
from aiinfra.monitoring.rules import fired
from aiinfra.project.config import MonitoringRules

START = datetime(2026, 3, 2, 10, tzinfo=UTC)
RULES = MonitoringRules(drifted_features=2, min_values={"roc_auc": 0.7}, max_drop=0.05)


def feature(name: str, psi: float, drifted: bool) -> FeatureDrift:
    histogram = Histogram(("a", "b"), (0.5, 0.5), (0.5, 0.5))
    p_value = 1e-6 if drifted else 0.5
    return FeatureDrift(name, "feature", "ks", psi, 0.3, p_value, 300, 300, drifted, "", histogram)


def window(
    drifted: tuple[str, ...] = (),
    live: dict[str, float] | None = None,
    gate: dict[str, float] | None = None,
    enough_rows: bool = True,
) -> Window:
    """A window of v3 with 300 rows: ``drifted`` features drifted (PSI 0.91, 0.52, ...),
    the others not; live scores as healthy as at the gate unless given."""
    psis = iter((0.91, 0.52, 0.33, 0.25))
    features = tuple(feature(n, next(psis), True) for n in drifted)
    features += tuple(
        feature(n, 0.01, False) for n in ("amount", "term", "plan") if n not in drifted
    )
    return Window(
        start=START,
        end=START + timedelta(hours=1),
        version="3",
        rows=300,
        requests=300,
        errors=0,
        latency_p50_ms=5.0,
        latency_p95_ms=12.0,
        features=features,
        prediction=None,
        label=None,
        labelled_rows=300,
        live={"roc_auc": 0.84} if live is None else live,
        gate_scores={"roc_auc": 0.85} if gate is None else gate,
        enough_rows=enough_rows,
    )


def test_a_healthy_window_fires_no_rule() -> None:
    assert fired(window(drifted=("amount",)), RULES, "roc_auc") == []  # one drifted, two needed


def test_drifted_features_fire_alone_naming_the_count_and_the_features() -> None:
    (reason,) = fired(window(drifted=("amount", "plan")), RULES, "roc_auc")
    assert reason == "2 features drifted in v3's window: amount (PSI 0.91), plan (PSI 0.52)"


def test_drifted_features_in_a_window_with_too_few_rows_do_not_fire() -> None:
    assert fired(window(drifted=("amount", "plan"), enough_rows=False), RULES, "roc_auc") == []


def test_a_live_metric_below_its_floor_fires_alone() -> None:
    # 0.69 is below the 0.7 floor, and only 0.03 below the gate's 0.72 (under max_drop).
    (reason,) = fired(window(live={"roc_auc": 0.69}, gate={"roc_auc": 0.72}), RULES, "roc_auc")
    assert reason == "live roc_auc 0.6900 of v3 is below the floor 0.7"


def test_a_floor_on_a_lower_is_better_metric_is_a_ceiling() -> None:
    rules = MonitoringRules(drifted_features=None, min_values={"rmse": 2.0}, max_drop=None)
    (reason,) = fired(window(live={"rmse": 2.5}), rules, "rmse")
    assert reason == "live rmse 2.5000 of v3 is above the ceiling 2.0"
    assert fired(window(live={"rmse": 1.5}), rules, "rmse") == []


def test_a_metric_not_measured_fires_no_floor() -> None:
    assert fired(window(live={"roc_auc": float("nan")}), RULES, "roc_auc") == []
    assert fired(window(live={}), RULES, "roc_auc") == []  # no labels yet


def test_a_drop_from_the_gate_time_score_fires_alone() -> None:
    # 0.76 is above the 0.7 floor, but 0.09 below the 0.85 the version had at its gate.
    (reason,) = fired(window(live={"roc_auc": 0.76}), RULES, "roc_auc")
    assert reason == (
        "live roc_auc 0.7600 of v3 is 0.0900 worse than its 0.8500 at the gate (more than 0.05)"
    )
    assert fired(window(live={"roc_auc": 0.81}), RULES, "roc_auc") == []  # 0.04: allowed


def test_a_rise_of_a_lower_is_better_metric_is_a_drop() -> None:
    rules = MonitoringRules(drifted_features=None, max_drop=0.1)
    (reason,) = fired(window(live={"rmse": 1.3}, gate={"rmse": 1.0}), rules, "rmse")
    assert "live rmse 1.3000 of v3" in reason and "0.3000" in reason and "1.0000" in reason
    assert fired(window(live={"rmse": 0.7}, gate={"rmse": 1.0}), rules, "rmse") == []  # better


def test_the_reason_for_a_rising_error_does_not_call_it_below() -> None:
    rules = MonitoringRules(drifted_features=None, max_drop=0.1)
    (reason,) = fired(window(live={"rmse": 1.3}, gate={"rmse": 1.0}), rules, "rmse")
    assert "below" not in reason


def test_all_rules_fire_together_in_order() -> None:
    found = fired(window(drifted=("amount", "plan"), live={"roc_auc": 0.6}), RULES, "roc_auc")
    assert len(found) == 3
    assert found[0].startswith("2 features drifted")
    assert found[1] == "live roc_auc 0.6000 of v3 is below the floor 0.7"
    assert "0.2500 worse than its 0.8500 at the gate" in found[2]


# What each rule's reason says, to tell which one fired.
SAYS = {
    "drifted_features": "features drifted",
    "min_values": "below the floor",
    "max_drop": "at the gate",
}


@pytest.mark.parametrize("rule", sorted(SAYS))
def test_a_rule_set_to_none_is_off(rule: str) -> None:
    rules = RULES.model_copy(update={rule: {} if rule == "min_values" else None})
    unhealthy = window(drifted=("amount", "plan", "term"), live={"roc_auc": 0.6})
    assert len(fired(unhealthy, RULES, "roc_auc")) == 3
    found = fired(unhealthy, rules, "roc_auc")
    assert len(found) == 2  # the other two still fire
    assert not [r for r in found if SAYS[rule] in r]


def test_a_window_without_a_gate_time_score_fires_no_drop() -> None:
    assert fired(window(live={"roc_auc": 0.72}, gate={}), RULES, "roc_auc") == []


def test_the_rules_judge_only_the_champion_s_windows() -> None:
    """A version just promoted has no window yet: the one it replaced starts no run."""
    from dataclasses import replace

    from aiinfra.monitoring.monitor import _latest_of

    replaced = window(drifted=("amount", "plan"))
    assert _latest_of([replaced], champion="4") is None
    serving = replace(replaced, version="4")
    assert _latest_of([replaced, serving, replaced], champion="4") is serving
