"""The drift section of the reports (the validation report, the monitoring report): one row
per compared column, failures first, with its figures and a small inline SVG histogram of the
reference's and the current data's shares per bin.

Markdown for the Kubeflow UI and MLflow; an HTML fragment for self-contained pages: no scripts,
no external assets, the style in ``DRIFT_STYLE`` for the page's own ``<style>``. Column names
and values come from users' data, so every text is escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only the types: rendering needs no numpy, pandas or scipy
    from aiinfra.data.drift import FeatureDrift, Histogram

REFERENCE_COLOUR = "#a0aec0"
CURRENT_COLOUR = "#2b6cb0"
PLOT_WIDTH = 240
PLOT_HEIGHT = 70
MAX_BAR_WIDTH = 14.0
MAX_BARS = 16  # beyond this many bins, the smallest are drawn together as one "other" bin

DRIFT_STYLE = (
    "table.drift{border-collapse:collapse;margin:0.5em 0 2em}"
    "table.drift td,table.drift th{border:1px solid #ccc;padding:4px 8px;text-align:left;"
    "vertical-align:middle}"
    "table.drift th{background:#f4f4f4}table.drift th.num{text-align:right}"
    "table.drift td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}"
    "table.drift td.plot{padding:2px 6px;background:#fff}"
    "table.drift svg{display:block}"
    "tr.drift-fail{background:#fdd}tr.drift-warn{background:#fff3cd}"
    ".drift-legend{font-size:90%;color:#444}"
    ".drift-key{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px;"
    "vertical-align:baseline}"
)

_HEADER = (
    "<tr><th>column</th><th class=num>PSI</th><th class=num>effect</th>"
    "<th class=num>p-value</th><th class=num>rows</th><th>verdict</th><th>detail</th>"
    "<th>shares per bin</th></tr>"
)


def ordered(results: Sequence[FeatureDrift]) -> list[FeatureDrift]:
    """Drifted columns first, then by PSI, largest first (unmeasured columns last)."""
    return sorted(results, key=lambda d: (not d.drifted, -_or(d.psi, -math.inf)))


def column_name(d: FeatureDrift) -> str:
    """The column, with its role when it is not a feature: ``churned (label)``."""
    return d.feature if d.role == "feature" else f"{d.feature} ({d.role})"


def drift_table_markdown(results: Sequence[FeatureDrift]) -> list[str]:
    """The drift table as Markdown lines (none when nothing was compared)."""
    if not results:
        return []
    lines = [
        "| column | PSI | effect | p-value | rows | drifted | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in ordered(results):
        cells = (
            column_name(d),
            _psi(d),
            _effect(d),
            _p_value(d),
            _rows(d),
            "**yes**" if d.drifted else "no",
            d.detail,
        )
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return lines


def drift_section_html(results: Sequence[FeatureDrift], caption: str, failing: bool) -> str:
    """The drift section's body (the caller adds its heading): the caption, a legend and the
    table. ``failing``: a drifted column fails the run (red) rather than warns (amber)."""
    section = f"<p>{html.escape(caption)}</p>"
    if not results:
        return section
    rows = "".join(_row_html(d, failing) for d in ordered(results))
    return f"{section}{_legend()}<table class=drift>{_HEADER}{rows}</table>"


def _row_html(d: FeatureDrift, failing: bool) -> str:
    esc = html.escape
    css = ("drift-fail" if failing else "drift-warn") if d.drifted else "drift-ok"
    return (
        f"<tr class={css}><td>{esc(column_name(d))}</td>"
        f"<td class=num>{_psi(d)}</td><td class=num>{_effect(d)}</td>"
        f"<td class=num>{_p_value(d)}</td><td class=num>{esc(_rows(d))}</td>"
        f"<td>{_verdict(d, failing)}</td><td>{esc(d.detail)}</td>"
        f"<td class=plot>{histogram_svg(d.histogram, column_name(d))}</td></tr>"
    )


def _legend() -> str:
    def key(colour: str, name: str) -> str:
        return f"<span class=drift-key style='background:{colour}'></span>{name}"

    return (
        f"<p class=drift-legend>Shares per bin:{key(REFERENCE_COLOUR, 'reference')}"
        f"{key(CURRENT_COLOUR, 'current')} (hover a bar for its bin)</p>"
    )


def _verdict(d: FeatureDrift, failing: bool) -> str:
    if math.isnan(d.psi):
        return "not measured"
    if not d.drifted:
        return "no drift"
    return "<b>drifted</b>" if failing else "<b>drifted</b> (warning only)"


def histogram_svg(histogram: Histogram, name: str) -> str:
    """Paired bars per bin, reference then current, scaled to the largest share; each bar's
    tooltip names its bin and both shares."""
    bins = _shown_bins(histogram)
    top = max((max(r, c) for _, r, c in bins), default=0.0) or 1.0
    baseline = PLOT_HEIGHT - 3
    slot = PLOT_WIDTH / max(len(bins), 1)
    bar = min(max(slot * 0.4, 1.0), MAX_BAR_WIDTH)
    bars = []
    for i, (label, reference, current) in enumerate(bins):
        tip = html.escape(f"{label}: reference {reference:.1%}, current {current:.1%}")
        left = i * slot + (slot - 2 * bar) / 2  # the pair centred in its slot
        for offset, share, colour in (
            (0, reference, REFERENCE_COLOUR),
            (1, current, CURRENT_COLOUR),
        ):
            height = _bar_height(share, top, baseline - 2)
            bars.append(
                f"<rect x='{left + offset * bar:.1f}' y='{baseline - height:.1f}' "
                f"width='{bar:.1f}' height='{height:.1f}' fill='{colour}'>"
                f"<title>{tip}</title></rect>"
            )
    axis = (
        f"<line x1='0' y1='{baseline + 0.5}' x2='{PLOT_WIDTH}' y2='{baseline + 0.5}' "
        "stroke='#718096' stroke-width='1'/>"
    )
    label = html.escape(f"{name}: shares per bin, reference and current", quote=True)
    return (
        f"<svg width='{PLOT_WIDTH}' height='{PLOT_HEIGHT}' viewBox='0 0 {PLOT_WIDTH} "
        f"{PLOT_HEIGHT}' role='img' aria-label='{label}'>{''.join(bars)}{axis}</svg>"
    )


def _shown_bins(histogram: Histogram) -> list[tuple[str, float, float]]:
    """The bins to draw, in their order: all of them, or the MAX_BARS - 1 with the largest
    share on either side and one "other" bin for the rest (many categories)."""
    bins = list(zip(histogram.bins, histogram.reference, histogram.current, strict=True))
    if len(bins) <= MAX_BARS:
        return bins
    keep = set(sorted(range(len(bins)), key=lambda i: -max(bins[i][1:]))[: MAX_BARS - 1])
    rest = [b for i, b in enumerate(bins) if i not in keep]
    other = (
        f"{len(rest)} other values",
        sum(r for _, r, _ in rest),
        sum(c for _, _, c in rest),
    )
    return [b for i, b in enumerate(bins) if i in keep] + [other]


def _bar_height(share: float, top: float, full: float) -> float:
    """Proportional, but a share above zero stays visible."""
    if not share > 0:
        return 0.0
    return max(share / top * full, 1.0)


def _or(value: float, fallback: float) -> float:
    return fallback if math.isnan(value) else value


def _psi(d: FeatureDrift) -> str:
    return "-" if math.isnan(d.psi) else f"{d.psi:.3f}"


def _effect(d: FeatureDrift) -> str:
    return "-" if math.isnan(d.effect) else f"{d.effect_name} {d.effect:.3f}"


def _p_value(d: FeatureDrift) -> str:
    return "-" if math.isnan(d.p_value) else f"{d.p_value:.2g}"


def _rows(d: FeatureDrift) -> str:
    """Rows compared, and how many of them the test counts as independent when fewer."""
    if d.effective_rows < d.rows:
        return f"{d.effective_rows} of {d.rows} independent"
    return str(d.rows)


def _md_cell(text: str) -> str:
    """A Markdown table cell: a pipe or a line break in a user's value would split the row, and
    renderers take ``<`` as the start of HTML."""
    escaped = text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")
    return escaped.replace("\n", " ")
