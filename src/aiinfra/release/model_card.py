"""The model card of a registered version, written from what the platform recorded for it.

One card per version, logged in the version's MLflow run (Markdown and a self-contained HTML
page: inline style, no scripts, no links, every value escaped) and shown by the pipeline as a
Kubeflow ``Markdown`` artifact. Its content is built once as sections of plain blocks, then
rendered twice, so the two formats never say different things.

What a card states comes from the run's own records: the config's intended use and limits, the
training set's facts, the schema's features, the validation summary, the recorded params and
usage, the evaluation and the gate, the lineage tags. Where something was not measured the card
says so rather than leaving it out. Shadow and canary results are optional inputs: until a
version has some, the card says none were recorded.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiinfra.project.config import PlatformConfig
from aiinfra.project.schema import Schema
from aiinfra.release.metrics import LOWER_IS_BETTER

if TYPE_CHECKING:
    import pandas as pd

    from aiinfra.steps import Evaluation
    from aiinfra.training.job import TrainingSummary

MARKDOWN_PATH = "model_card/model_card.md"
HTML_PATH = "model_card/model_card.html"
NOT_MEASURED = "not measured"
NONE_RECORDED = "none recorded"

# The recorded training settings a reader needs to reproduce or judge the run (all are params).
_TRAINING_SETTINGS = (
    "epochs",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "lr_schedule",
    "eval_fraction",
    "seed",
    "deterministic",
    "nproc_per_node",
    "early_stopping_patience",
)


# Blocks a section is made of; each renderer knows how to write every kind.
@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Facts:
    """Named values, one per line."""

    rows: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


Block = Text | Facts | Bullets | Table


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class DataFacts:
    """The training set a version learned from."""

    label_table: str
    feature_views: tuple[str, ...]
    rows: int
    first_event: str | None
    last_event: str | None
    data_hash: str

    @classmethod
    def of(cls, frame: pd.DataFrame, schema: Schema, label_table: str, data_hash: str) -> DataFacts:
        times = frame[schema.timestamp].dropna()
        first, last = (None, None) if times.empty else (times.min(), times.max())
        return cls(
            label_table=label_table,
            feature_views=tuple(schema.views()),
            rows=len(frame),
            first_event=None if first is None else first.isoformat(),
            last_event=None if last is None else last.isoformat(),
            data_hash=data_hash,
        )


@dataclass(frozen=True)
class ModelCard:
    """Everything one card states; ``run_id`` is None while the run that holds it is created.

    ``shadow`` and ``canary``: named results of those rollouts (e.g. requests, agreement,
    latency), once there are some."""

    config: PlatformConfig
    schema: Schema
    version: str
    evaluation: Evaluation
    training: TrainingSummary
    tags: Mapping[str, str]
    params: Mapping[str, Any]
    data: DataFacts
    run_id: str | None = None
    validation_summary: str | None = None
    shadow: Mapping[str, Any] | None = None
    canary: Mapping[str, Any] | None = None

    @property
    def title(self) -> str:
        return f"Model card: {self.config.model_name} version {self.version}"

    def sections(self) -> tuple[Section, ...]:
        return (
            _model(self),
            _intended_use(self),
            _data(self),
            _validation(self),
            _training(self),
            _evaluation(self),
            _rollout(self),
            _lineage(self),
        )

    def markdown(self) -> str:
        return render_markdown(self.title, self.sections())

    def html(self) -> str:
        return render_html(self.title, self.sections())


def validation_summary_from_html(report: str) -> str | None:
    """The one-line verdict of a validation report page (the paragraph under its heading, see
    aiinfra.data.validation_report.render_html), or None if the page has none."""
    found = re.search(r"<h1>Data validation:[^<]*</h1>\s*<p>(.*?)</p>", report, re.DOTALL)
    if found is None:
        return None
    return html.unescape(found.group(1)).strip() or None


def _model(card: ModelCard) -> Section:
    project = card.config.project
    return Section(
        "Model",
        (
            Facts(
                (
                    ("name", card.config.model_name),
                    ("version", card.version),
                    ("task", card.schema.task),
                    ("classes", ", ".join(map(str, card.schema.classes)) or "-"),
                    ("entry point", str(card.params.get("model.entry_point", "unknown"))),
                    ("description", project.description or "-"),
                )
            ),
        ),
    )


def _intended_use(card: ModelCard) -> Section:
    project = card.config.project
    use = project.intended_use or "Not stated (set project.intended_use in the profile)."
    limits: Block = (
        Bullets(tuple(project.limitations))
        if project.limitations
        else Text("Not stated (set project.limitations in the profile).")
    )
    return Section("Intended use and limitations", (Text(use), Text("Limitations:"), limits))


def _data(card: ModelCard) -> Section:
    data, schema = card.data, card.schema
    span = f"{data.first_event} to {data.last_event}" if data.first_event else "no event timestamps"
    facts = Facts(
        (
            ("label table", data.label_table),
            ("feature views", ", ".join(data.feature_views) or "-"),
            ("rows", str(data.rows)),
            (f"time range ({schema.timestamp})", span),
            ("data hash", data.data_hash),
            ("feature service", schema.feature_service or "-"),
            ("label", schema.label),
        )
    )
    features = Table(
        ("feature", "kind", "source", "description"),
        tuple((f.name, f.kind, f.source, f.description or "-") for f in schema.features),
    )
    return Section("Data", (facts, Text("Features:"), features))


def _validation(card: ModelCard) -> Section:
    verdict = card.tags.get("validation", "unknown")
    summary = card.validation_summary or "no summary recorded"
    return Section("Validation", (Facts((("result", verdict), ("summary", summary))),))


def _training(card: ModelCard) -> Section:
    params, summary, usage = card.params, card.training, card.training.usage
    settings = tuple(
        (name, str(params[f"training.{name}"]))
        for name in _TRAINING_SETTINGS
        if f"training.{name}" in params
    )
    network = tuple(
        (f"network {key.removeprefix('model.')}", str(value))
        for key, value in params.items()
        if key.startswith("model.") and key != "model.entry_point"
    )
    search = card.tags.get("search_run_id")
    run = (
        (
            "device",
            f"{params.get('device', summary.device)} ({usage.get('device_name', 'unknown')})",
        ),
        ("devices", str(usage.get("devices", summary.world_size))),
        ("precision", str(params.get("precision", summary.precision))),
        ("epochs run", _epochs_run(summary)),
        ("hyper-parameter search", f"MLflow run {search}" if search else "none"),
        ("wall time", _unit(usage.get("wall_seconds"), "s", ".1f")),
        ("peak memory", _peak_memory(summary.device, usage.get("peak_memory_mb"))),
        ("energy", _energy(usage)),
        ("estimated cost", _cost(usage, params)),
    )
    return Section(
        "Training",
        (
            Facts(run),
            Text("Settings:"),
            Facts(settings + network),
        ),
    )


def _epochs_run(summary: TrainingSummary) -> str:
    # best_epoch counts from 0 (as the per-epoch MLflow series do); a reader counts from 1.
    text = f"{summary.epochs_run} (lowest validation loss: epoch {summary.best_epoch + 1})"
    if summary.stopped_early:
        text += ", stopped early"
    if summary.resumed_from_epoch:
        text += f", resumed from epoch {summary.resumed_from_epoch}"
    return text


def _unit(value: Any, unit: str, spec: str) -> str:
    return NOT_MEASURED if value is None else f"{float(value):{spec}} {unit}"


def _peak_memory(device: str, value: Any) -> str:
    # On a CPU it is the process's resident memory, interpreter and libraries included.
    scope = "GPU tensors" if device.startswith("cuda") else "process resident memory"
    return NOT_MEASURED if value is None else f"{float(value):.0f} MiB ({scope})"


def _energy(usage: Mapping[str, Any]) -> str:
    joules = usage.get("energy_joules")
    if joules is None:
        return f"{NOT_MEASURED} (no energy counter on this machine)"
    source = usage.get("energy_source", "unknown")
    return f"{joules:.1f} J = {joules / 3600:.4f} Wh (from {source})"


def _cost(usage: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    price = float(params.get("training.price_per_device_hour", 0) or 0)
    cost = usage.get("estimated_cost")
    if cost is None or price <= 0:
        return f"{NOT_MEASURED} (no training.price_per_device_hour set)"
    return f"{float(cost):.4f} (at {price:g} per device-hour)"


def _evaluation(card: ModelCard) -> Section:
    evaluation = card.evaluation
    champion = evaluation.champion
    against = (
        f"champion (v{evaluation.champion_version})"
        if evaluation.champion_version
        else "champion (none)"
    )
    rows = tuple(
        _metric_row(name, value, None if champion is None else champion.get(name))
        for name, value in evaluation.challenger.items()
    )
    gate = Facts(
        (
            ("gate metric", evaluation.metric),
            ("decision", "passed" if evaluation.passed else "failed"),
            ("reasons", evaluation.reason),
            ("evaluation rows", str(evaluation.eval_rows)),
            ("evaluation set hash", evaluation.eval_hash),
        )
    )
    table = Table(("metric", "this version", against, "difference"), rows)
    return Section("Evaluation", (table, gate))


def _metric_row(name: str, value: float, champion: float | None) -> tuple[str, ...]:
    label = f"{name} (lower is better)" if name in LOWER_IS_BETTER else name
    if champion is None:
        return (label, f"{value:.4f}", "-", "-")
    return (label, f"{value:.4f}", f"{champion:.4f}", f"{value - champion:+.4f}")


def _rollout(card: ModelCard) -> Section:
    blocks: list[Block] = []
    for name, results in (("Shadow", card.shadow), ("Canary", card.canary)):
        if results:
            blocks.append(Facts(tuple((f"{name.lower()} {k}", str(v)) for k, v in results.items())))
        else:
            blocks.append(Text(f"{name}: {NONE_RECORDED}."))
    return Section("Shadow / canary", tuple(blocks))


def _lineage(card: ModelCard) -> Section:
    tags = card.tags
    run = card.run_id or "the MLflow run this card is stored in"
    return Section(
        "Lineage",
        (
            Facts(
                (
                    ("git commit", tags.get("git_commit", "unknown")),
                    ("pipeline run", tags.get("pipeline_run", "unknown")),
                    ("MLflow run", run),
                    ("champion at evaluation", tags.get("champion_at_evaluation", "none")),
                    ("data hash", tags.get("data_hash", card.data.data_hash)),
                )
            ),
        ),
    )


# Markdown: values are escaped for tables and for the HTML that Markdown viewers let through.
def _md(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def _markdown_block(block: Block) -> list[str]:
    if isinstance(block, Text):
        return [_md(block.text)]
    if isinstance(block, Facts):
        return [f"- **{_md(k)}**: {_md(v)}" for k, v in block.rows]
    if isinstance(block, Bullets):
        return [f"- {_md(item)}" for item in block.items]
    header = "| " + " | ".join(map(_md, block.header)) + " |"
    rule = "|" + "---|" * len(block.header)
    return [header, rule, *("| " + " | ".join(map(_md, row)) + " |" for row in block.rows)]


def render_markdown(title: str, sections: tuple[Section, ...]) -> str:
    lines = [f"# {_md(title)}", ""]
    for section in sections:
        lines += [f"## {_md(section.title)}", ""]
        for block in section.blocks:
            lines += [*_markdown_block(block), ""]
    return "\n".join(lines)


_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:60em}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
    "th{background:#f4f4f4}table.facts th{width:14em}"
)


def _html_block(block: Block) -> str:
    esc = html.escape
    if isinstance(block, Text):
        return f"<p>{esc(block.text)}</p>"
    if isinstance(block, Facts):
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in block.rows)
        return f"<table class=facts>{rows}</table>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block.items) + "</ul>"
    header = "".join(f"<th>{esc(h)}</th>" for h in block.header)
    rows = "".join(
        "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in block.rows
    )
    return f"<table><tr>{header}</tr>{rows}</table>"


def render_html(title: str, sections: tuple[Section, ...]) -> str:
    body = "".join(
        f"<h2>{html.escape(s.title)}</h2>" + "".join(map(_html_block, s.blocks)) for s in sections
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
