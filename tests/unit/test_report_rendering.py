"""The validation report's drift section, as text and as a page a browser shows.

The tests named ``*_in_chromium`` open pages in headless Chromium (tests/report_browser.py; run
them alone with ``-k chromium``); they skip when Chromium is missing, unless
AIINFRA_REQUIRE_BROWSER is set."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aiinfra.data import drift_report
from aiinfra.data.drift import Histogram, build_profile, compare
from aiinfra.data.validation_report import CheckResult, ValidationReport
from aiinfra.project.config import DriftConfig
from aiinfra.project.schema import Feature, Key, Schema
from tests import report_browser

ODD_NAME = 'score <b>&"|'  # column names are the user's: the page must show them as text
SCHEMA = Schema(
    task="binary",
    entities=(Key("applicant_id", "int"),),
    timestamp="event_timestamp",
    label="defaulted",
    features=(
        Feature("annual_income", "numeric", "applicants"),
        Feature("term_months", "numeric", "loans", integer=True),
        Feature("purpose", "categorical", "loans", categories=("car", "home", "education")),
        Feature("zip_default_rate", "numeric", "zipcodes"),
        Feature(ODD_NAME, "numeric", "applicants"),
        Feature("bureau_score", "numeric", "bureau"),
    ),
    classes=(0, 1),
)


def _loans(seed: int, rows: int, income: float = 1.0, car: float = 0.3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    other = (1 - car) / 2
    return pd.DataFrame(
        {
            "applicant_id": np.arange(rows),
            "annual_income": rng.lognormal(11, 0.4, rows) * income,
            "term_months": rng.choice([36, 60], rows, p=[0.7, 0.3]),
            "purpose": rng.choice(["car", "home", "education"], rows, p=[car, other, other]),
            # one value per zipcode and week, repeated for each of its applicants
            "zip_default_rate": np.repeat(rng.normal(0.2, 0.04, rows // 9 + 1), 9)[:rows],
            ODD_NAME: rng.normal(680, 50, rows),
            "bureau_score": rng.normal(600, 80, rows),
            "defaulted": (rng.random(rows) < 0.27).astype(int),
        }
    )


def _report(drift_mode: str = "fail") -> ValidationReport:
    """A report on 450 new rows whose income and purpose moved, and whose bureau scores are
    missing (a column with nothing to compare)."""
    reference = build_profile(_loans(0, 3000), SCHEMA)
    current = _loans(1, 450, income=1.6, car=0.6).assign(bureau_score=np.nan)
    checks = [
        CheckResult("expect_table_row_count_to_be_between", None, True, "observed 450"),
        CheckResult(
            "expect_column_values_to_not_be_null", "bureau_score", False, "450 unexpected <NaN>"
        ),
    ]
    results = compare(reference, current, DriftConfig())
    return ValidationReport(checks, len(current), results, drift_mode, reference_rows=3000)


@pytest.fixture(scope="module")
def report() -> ValidationReport:
    return _report()


def _drift_rows(page: str) -> list[tuple[str, str]]:
    """(row class, column cell) of each row of the drift table, in order."""
    return re.findall(r"<tr class=(drift-\w+)><td>(.*?)</td>", page)


def test_drifted_columns_come_first_each_with_a_histogram(report: ValidationReport) -> None:
    assert {d.feature for d in report.drifted} == {"annual_income", "purpose"}
    page = report.html()
    rows = _drift_rows(page)
    assert [name for _, name in rows[:2]] == ["annual_income", "purpose"]  # then by PSI
    assert [css for css, _ in rows] == ["drift-fail"] * 2 + ["drift-ok"] * (len(rows) - 2)
    assert len(rows) == len(report.drift) == page.count("<svg") == 7  # 6 features, the label
    assert "defaulted (label)" in page
    assert "50 of 450 independent" in page  # the zipcode rate: one value per zipcode
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_user_text_is_escaped(report: ValidationReport) -> None:
    page = report.html()
    assert "score &lt;b&gt;&amp;&quot;|" in page and ODD_NAME not in page
    assert "450 unexpected &lt;NaN&gt;" in page
    table = drift_report.drift_table_markdown(report.drift)
    assert any(line.startswith('| score &lt;b>&"\\| |') for line in table), table


def test_a_column_without_values_shows_dashes(report: ValidationReport) -> None:
    missing = next(d for d in report.drift if d.feature == "bureau_score")
    assert missing.detail == "no values" and not missing.drifted
    row = next(line for line in report.markdown().splitlines() if "| bureau_score |" in line)
    assert row == "| bureau_score | - | - | - | 0 | no | no values |"
    assert _drift_rows(report.html())[-1] == ("drift-ok", "bureau_score")  # unmeasured: last
    assert "nan" not in report.html().split("<h2>Drift</h2>")[1].lower()


def test_markdown_lists_the_same_order(report: ValidationReport) -> None:
    markdown = report.markdown()
    drift_part = markdown[markdown.index("## Drift") :]
    names = [line.split(" | ")[0][2:] for line in drift_part.splitlines()[6:]]
    assert names[:2] == ["annual_income", "purpose"]
    assert drift_part.count("**yes**") == 2


def test_warn_mode_marks_drift_as_a_warning() -> None:
    page = _report(drift_mode="warn").html()
    assert [css for css, _ in _drift_rows(page)][:2] == ["drift-warn"] * 2
    assert "drift-fail" not in page.split("<style>")[1].split("</style>")[1]


def test_many_values_keep_the_largest_bins_and_group_the_rest() -> None:
    bins = tuple(f"z{i:02}" for i in range(30))
    reference = (1 / 29,) * 29 + (0.0,)
    current = (0.5 / 29,) * 29 + (0.5,)  # a new value takes half the rows
    svg = drift_report.histogram_svg(Histogram(bins, reference, current), "zipcode")
    assert svg.count("<rect") == 2 * drift_report.MAX_BARS
    assert "z29: reference 0.0%, current 50.0%" in svg  # the new value is drawn
    assert "15 other values: reference 51.7%, current 25.9%" in svg


def test_the_report_renders_offline_in_chromium(report: ValidationReport, tmp_path: Path) -> None:
    page = tmp_path / "validation.html"
    page.write_text(report.html())
    shown = report_browser.render(page, tmp_path, width=1280, height=1400)
    assert shown.requests == ()  # nothing fetched: not a font, not an image, not a stylesheet
    assert shown.svg_count() == len(report.drift)
    image = Image.open(shown.screenshot).convert("RGB")
    assert image.size == (1280, 1400)
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 20) or []}
    assert len(colours) > 50  # text and bars, not a blank page
    assert _rgb(drift_report.CURRENT_COLOUR) in colours  # the histograms were drawn
    assert _rgb("#ffdddd") in colours  # a failed row's background: the style applied


def test_the_proxy_counts_what_a_page_loads_in_chromium(tmp_path: Path) -> None:
    """The zero above means something: a page with an external image is caught."""
    page = tmp_path / "external.html"
    page.write_text("<!doctype html><p>logo</p><img src='http://example.invalid/x.png'>")
    shown = report_browser.render(page, tmp_path, width=400, height=300)
    assert any("example.invalid/x.png" in line for line in shown.requests), shown.requests


def _rgb(colour: str) -> tuple[int, int, int]:
    hex_digits = colour.lstrip("#")
    return (int(hex_digits[0:2], 16), int(hex_digits[2:4], 16), int(hex_digits[4:6], 16))
