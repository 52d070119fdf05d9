"""The schema of a project's data: one value, built when a project is loaded.

Everything that has to agree on what a row looks like is derived from it: the training set's
columns, the Great Expectations suite, the drift profile, the model's input encoding and the
serving request and response types. It is built from the project's own definitions (the
Feast feature service, the label table, the profile; see :mod:`aiinfra.project.definition`),
never from module constants, and it travels with the training set and the saved model as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Kind = Literal["numeric", "categorical"]
Task = Literal["binary", "multiclass", "regression"]
KeyType = Literal["int", "string"]
REQUEST = "request"  # the source of features the caller sends with each prediction


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Kind
    source: str  # REQUEST, or the Feast feature view it is read from
    description: str = ""
    min_value: float | None = None
    max_value: float | None = None
    categories: tuple[str, ...] = ()
    integer: bool = False

    @property
    def is_request(self) -> bool:
        """Sent by the caller with each prediction request (not read from the feature store)."""
        return self.source == REQUEST


@dataclass(frozen=True)
class Key:
    """An entity key column of the label table (a Feast join key)."""

    name: str
    type: KeyType


@dataclass(frozen=True)
class Schema:
    task: Task
    entities: tuple[Key, ...]
    timestamp: str
    label: str
    features: tuple[Feature, ...]
    row_id: str | None = None
    feature_service: str = ""
    # Classification: the label's classes in a fixed order (the model's output order).
    classes: tuple[Any, ...] = field(default=())

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def numeric(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind == "numeric")

    @property
    def categorical(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind == "categorical")

    @property
    def request_features(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.is_request)

    @property
    def stored_features(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if not f.is_request)

    @property
    def entity_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.entities)

    @property
    def key_columns(self) -> tuple[str, ...]:
        """Columns that identify a row: its id (if any), entity keys and event time."""
        head = (self.row_id,) if self.row_id else ()
        return (*head, *self.entity_names, self.timestamp)

    @property
    def training_columns(self) -> tuple[str, ...]:
        return (*self.key_columns, *self.feature_names, self.label)

    @property
    def output_width(self) -> int:
        """Outputs of the network: one logit (binary), one per class, or one value."""
        return len(self.classes) if self.task == "multiclass" else 1

    def views(self) -> dict[str, tuple[Feature, ...]]:
        """Stored features by the Feast feature view they come from."""
        grouped: dict[str, list[Feature]] = {}
        for f in self.stored_features:
            grouped.setdefault(f.source, []).append(f)
        return {view: tuple(features) for view, features in grouped.items()}

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"unknown feature {name!r}; declared: {', '.join(self.feature_names)}")

    def serving_contract(self) -> tuple[Any, ...]:
        """What a service's request and response types are built from: a model whose contract
        differs cannot be served by a running service without a restart."""
        return (self.task, self.classes, self.entities, self.request_features)

    def with_features(self, features: tuple[Feature, ...]) -> Schema:
        return replace(self, features=features)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Schema:
        return cls(
            task=raw["task"],
            entities=tuple(Key(**k) for k in raw["entities"]),
            timestamp=raw["timestamp"],
            label=raw["label"],
            features=tuple(
                Feature(**{**f, "categories": tuple(f.get("categories", ()))})
                for f in raw["features"]
            ),
            row_id=raw.get("row_id"),
            feature_service=raw.get("feature_service", ""),
            classes=tuple(raw.get("classes", ())),
        )
