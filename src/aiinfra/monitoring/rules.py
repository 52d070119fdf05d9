"""The rules that turn a monitoring window into a retraining run (``monitoring.rules``): each
one that fires says why in words, and that text is what the run records as its trigger."""

from __future__ import annotations

import numpy as np

from aiinfra.monitoring.live import Window
from aiinfra.project.config import MonitoringRules
from aiinfra.release.metrics import LOWER_IS_BETTER, better


def fired(window: Window, rules: MonitoringRules, gate_metric: str) -> list[str]:
    """Why ``window`` calls for retraining; [] when no rule fires."""
    reasons = []
    drifted = window.drifted
    if rules.drifted_features is not None and len(drifted) >= rules.drifted_features:
        named = ", ".join(f"{d.feature} (PSI {d.psi:.2f})" for d in drifted[:5])
        reasons.append(f"{len(drifted)} features drifted in v{window.version}'s window: {named}")
    for metric, floor in rules.min_values.items():
        value = window.live.get(metric)
        if value is not None and np.isfinite(value) and better(metric, value, floor) < 0:
            side = "above the ceiling" if metric in LOWER_IS_BETTER else "below the floor"
            reasons.append(f"live {metric} {value:.4f} of v{window.version} is {side} {floor}")
    now, then = window.live.get(gate_metric), window.gate_scores.get(gate_metric)
    if rules.max_drop is not None and now is not None and then is not None:
        drop = -better(gate_metric, now, then)
        if np.isfinite(drop) and drop > rules.max_drop:
            reasons.append(
                f"live {gate_metric} {now:.4f} of v{window.version} is {drop:.4f} worse than "
                f"its {then:.4f} at the gate (more than {rules.max_drop})"
            )
    return reasons
