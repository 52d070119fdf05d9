"""The serving API of a project, apart from the BentoML glue in ``serving/service.py``.

- The request row type is built from the project's schema: its entity keys plus the
  request-time features, with their bounds, categories and descriptions (so the OpenAPI page
  shows them); unknown fields and NaN/inf are rejected by pydantic (a 400).
- The answer fits the task: the probability of the positive class and the class (binary), the
  probability of every class and the class (multiclass), the value (regression). Every
  response names the model version that answered.
- Stored features come from the Feast online store, the same definitions training used.
- The OpenAPI document (:func:`openapi_document`, served with the API page by
  :class:`ApiDocs`) names the project, the model and the API version, and declares the one
  error shape (:data:`aiinfra.runtime.guards.ERROR_SCHEMA`) for every error each path answers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from importlib import metadata
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from aiinfra.project.config import PlatformConfig
from aiinfra.project.schema import Feature, Schema
from aiinfra.runtime.champion import Served
from aiinfra.runtime.guards import ERROR_SCHEMA, error_body
from aiinfra.runtime.request_id import HEADER

log = logging.getLogger(__name__)
MAX_BATCH_ROWS = 1000
# The online store keys integers as int64: a larger one could only fail inside the lookup.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_KEY_LENGTH = 256


def _request_field(f: Feature) -> tuple[Any, Any]:
    if f.kind == "categorical":
        kind: Any = Literal[f.categories] if f.categories else str
        return kind, Field(max_length=MAX_KEY_LENGTH, description=f.description or None)
    number: type = int if f.integer else float
    return number, Field(
        ge=f.min_value, le=f.max_value, allow_inf_nan=False, description=f.description or None
    )


def row_type(schema: Schema, name: str = "Row") -> type[BaseModel]:
    """One request row: the entity keys, then the request-time features."""
    keys: dict[str, Any] = {
        k.name: (int, Field(ge=INT64_MIN, le=INT64_MAX, description="entity key"))
        if k.type == "int"
        else (str, Field(max_length=MAX_KEY_LENGTH, description="entity key"))
        for k in schema.entities
    }
    fields = {**keys, **{f.name: _request_field(f) for f in schema.request_features}}
    model: type[BaseModel] = create_model(
        name, __config__=ConfigDict(extra="forbid", strict=False), **fields
    )
    return model


def batch_type(row: type[BaseModel]) -> Any:
    return Annotated[list[row], Field(min_length=1, max_length=MAX_BATCH_ROWS)]  # type: ignore[valid-type]


def _class_type(schema: Schema) -> Any:
    return Literal[schema.classes] if schema.classes else str


def answer_fields(schema: Schema) -> dict[str, tuple[Any, Any]]:
    """What one row's answer holds, by task."""
    if schema.task == "binary":
        return {
            "probability": (float, Field(description=f"P({schema.label} = {schema.classes[1]})")),
            "predicted_class": (_class_type(schema), Field(description="at probability >= 0.5")),
        }
    if schema.task == "multiclass":
        return {
            "probabilities": (dict[str, float], Field(description="per class")),
            "predicted_class": (_class_type(schema), Field(description="the most likely class")),
        }
    return {"value": (float, Field(description=f"predicted {schema.label}"))}


REQUEST_ID_DESCRIPTION = (
    "this request's id, as in the X-Request-ID header: `aiinfra trace ID` shows the model "
    "version, its data and the stored features behind this answer"
)


def response_types(schema: Schema) -> tuple[type[BaseModel], type[BaseModel]]:
    """(the /predict response, one row of the /predict_batch answer)."""
    answer = create_model("Prediction", **answer_fields(schema))  # type: ignore[call-overload]
    response = create_model(
        "PredictionResponse",
        model_name=(str, ...),
        model_version=(str, ...),
        predictions=(list[answer], ...),
        # Optional, so that answers made without the service (tests, the baselines of
        # benchmarks/) validate; the service always sets it.
        request_id=(str | None, Field(None, description=REQUEST_ID_DESCRIPTION)),
    )
    optional = {name: (kind | None, None) for name, (kind, _) in answer_fields(schema).items()}
    batch_row = create_model(  # type: ignore[call-overload]
        "RowPrediction", model_version=(str, ...), error=(str | None, None), **optional
    )
    return response, batch_row


def answers(schema: Schema, classes: list[Any], predicted: np.ndarray) -> list[dict[str, Any]]:
    """One answer per row from what the model predicted (see TabularModel.predict)."""
    if schema.task == "binary":
        return [
            {"probability": float(p), "predicted_class": classes[int(p >= 0.5)]} for p in predicted
        ]
    if schema.task == "multiclass":
        return [
            {
                "probabilities": {str(c): float(v) for c, v in zip(classes, row, strict=True)},
                "predicted_class": classes[int(np.argmax(row))],
            }
            for row in predicted
        ]
    return [{"value": float(v)} for v in predicted]


def serving_schema(config: PlatformConfig) -> Schema:
    """The schema a service builds its types from: the project's, or where its label table is
    not at hand (a serving pod), the one recorded with the current @champion."""
    from aiinfra.project.definition import ProjectError, load_project
    from aiinfra.release import registry

    try:
        return load_project(config).schema
    except ProjectError as exc:
        recorded = registry.champion_schema(config.mlflow.tracking_uri, config.model_name)
        if recorded is None:
            raise ProjectError(f"{exc}; and no @champion with a recorded schema to serve") from exc
        log.info("serving the schema recorded with @champion (%s)", exc)
        return recorded


def _absent(value: Any) -> bool:
    """No stored value: the store had none (None) or holds a null (NaN)."""
    return value is None or value != value


class UnknownEntities(ValueError):
    """Some rows name entities the online store has no features for."""


class StoreUnavailable(RuntimeError):
    """The online store did not answer (down, timed out, or failing): a 503, not a 500."""


class OnlineFeatures:
    """Reads the stored features of request rows from the Feast online store."""

    def __init__(self, config: PlatformConfig, schema: Schema) -> None:
        from aiinfra.data import feature_store
        from aiinfra.data.online_reader import OnlineReader

        self.schema = schema
        self.store = feature_store.open_store(config)
        # The feature service resolved once: a read is the store query and nothing else.
        self._reader = (
            OnlineReader(self.store, schema.feature_service) if schema.stored_features else None
        )
        self._stored = [f.name for f in schema.stored_features]
        self._request = [f.name for f in schema.request_features]
        self.available = True  # as of the last read
        self._pinging = threading.Lock()

    def ping(self) -> bool:
        """Whether the store answers now (a read of an entity nobody has). One ping at a
        time: while a hung store holds one, other callers get False at once."""
        if not self._pinging.acquire(blocking=False):
            return False
        try:
            return self._ping()
        finally:
            self._pinging.release()

    def _ping(self) -> bool:
        probe = {k.name: (0 if k.type == "int" else "") for k in self.schema.entities}
        probe.update({f.name: _probe_value(f) for f in self.schema.request_features})
        try:
            self.lookup([probe])
        except StoreUnavailable:
            return False
        return True

    def lookup(self, rows: list[dict[str, Any]]) -> tuple[pd.DataFrame, list[int]]:
        """Model input for every row, and the positions of rows the store does not know."""
        request = {name: [row[name] for row in rows] for name in self._request}
        if self._reader is None:
            return pd.DataFrame(request, columns=self._request), []
        try:
            stored = self._reader.columns(rows)
        except (ValueError, TypeError, OverflowError) as exc:  # the rows, not the store
            raise ValueError(f"the feature store cannot look these rows up: {exc}") from exc
        except Exception as exc:  # whatever else the store's client raises: it is unavailable
            if self.available:  # logged once per outage, not once per request
                log.warning("feature store unavailable: %r", exc)
            self.available = False
            raise StoreUnavailable(f"feature store unavailable: {type(exc).__name__}") from None
        if not self.available:
            log.warning("feature store answers again")
        self.available = True
        missing = [i for i in range(len(rows)) if any(_absent(stored[n][i]) for n in self._stored)]
        return pd.DataFrame({**stored, **request}, columns=[*self._stored, *self._request]), missing

    def frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """Model input for ``rows``; raises UnknownEntities naming rows the store lacks."""
        frame, missing = self.lookup(rows)
        if missing:
            raise UnknownEntities(f"no stored features for {self._describe(rows, missing)}")
        return frame

    def _describe(self, rows: list[dict[str, Any]], positions: list[int]) -> str:
        keys = self.schema.entity_names
        return ", ".join(
            f"row {i} ({', '.join(f'{k}={rows[i][k]!r}' for k in keys)})" for i in positions[:5]
        )


def _probe_value(f: Feature) -> Any:
    if f.kind == "categorical":
        return f.categories[0] if f.categories else ""
    return f.min_value if f.min_value is not None else 0


def predict(
    served: Served, features: pd.DataFrame, model_name: str, request_id: str | None = None
) -> dict[str, Any]:
    model = served.model
    return {
        "model_name": model_name,
        "model_version": served.version,
        "predictions": answers(model.schema, model.classes, model.predict(features)),
        "request_id": request_id,
    }


def predict_rows(served: Served, lookup: tuple[pd.DataFrame, list[int]]) -> list[dict[str, Any]]:
    """Answers for the rows the store knows; an error entry for the others, so one bad row in
    a merged batch does not fail the requests it was batched with."""
    frame, missing = lookup
    unknown = set(missing)
    known = [i for i in range(len(frame)) if i not in unknown]
    out: list[dict[str, Any]] = [
        {"model_version": served.version, "error": "no stored features for this entity"}
        for _ in range(len(frame))
    ]
    if known:
        model = served.model
        rows = answers(model.schema, model.classes, model.predict(frame.iloc[known]))
        for i, row in zip(known, rows, strict=True):
            out[i] = {"model_version": served.version, "error": None, **row}
    return out


# The errors each path answers (every one an ``Error`` object), and when.
_BAD_REQUEST = (
    "the body fails validation (`detail` names each problem: missing, unknown, mistyped or "
    "out-of-range fields, unknown categories, an empty or oversized batch), is not JSON, or "
    "the Host header is not allowed"
)
_TOO_LARGE = "the body is over `serving.max_body_bytes`"
_NOT_JSON = "Content-Type is not application/json"
_UNAVAILABLE = "no champion model loaded, the feature store down, or shutting down (Retry-After)"
_UNEXPECTED = "an unexpected failure (see the server log)"
PATH_ERRORS: dict[str, dict[int, str]] = {
    "/predict": {
        400: _BAD_REQUEST,
        404: "the online store has no features for a row's entity (named)",
        413: _TOO_LARGE,
        415: _NOT_JSON,
        500: _UNEXPECTED,
        503: _UNAVAILABLE,
    },
    "/predict_batch": {
        400: _BAD_REQUEST,
        413: _TOO_LARGE,
        415: _NOT_JSON,
        500: _UNEXPECTED,
        503: _UNAVAILABLE,
    },
    "/hooks/mlflow": {
        400: "not a registry event, or the Host header is not allowed",
        401: "a missing, stale or forged signature",
        413: _TOO_LARGE,
        415: _NOT_JSON,
    },
}
# BentoML's own error schemas, which its answers do not match (a list; detail as a string).
_BENTOML_ERRORS = ("InvalidArgument", "NotFound", "InternalServerError")


def api_version(schema: Schema) -> str:
    """The platform's version, and a digest of the request and response types: it changes
    whenever what a client sends or receives does."""
    response, batch_row = response_types(schema)
    contract = [t.model_json_schema() for t in (row_type(schema), response, batch_row)]
    digest = hashlib.sha256(json.dumps(contract, sort_keys=True).encode()).hexdigest()
    return f"{_platform_version()}+schema.{digest[:8]}"


def _platform_version() -> str:
    try:
        return metadata.version("aiinfra")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0"


def api_info(config: PlatformConfig, schema: Schema) -> dict[str, Any]:
    """The OpenAPI ``info`` of a project's service."""
    project, model = config.project.name, config.model_name
    return {
        "title": f"{project} predictions",
        "version": api_version(schema),
        "description": (
            f"Project `{project}` ({schema.task}): the `@champion` version of the MLflow model "
            f'`{model}` answers. `POST /predict` with `{{"rows": [...]}}`, one object per row '
            "(the entity keys and the request-time features below); stored features come from "
            "the Feast online store. Every answer names the model version that made it, and "
            "carries an `X-Request-ID` header (the caller's, when it is at most 64 of "
            "`A-Za-z0-9._-`; else a new one): `aiinfra trace ID` explains a logged `/predict` "
            "answer from it. Every "
            'error answers an `Error` object: `{"error": "..."}`, with `detail` listing each '
            "problem when the body fails validation."
        ),
        "x-project": project,
        "x-model-name": model,
    }


def openapi_document(
    spec: dict[str, Any], config: PlatformConfig, schema: Schema
) -> dict[str, Any]:
    """BentoML's OpenAPI document of the service, with the project's info, the ``Error``
    schema declared for every error each path answers, and the ``X-Request-ID`` header on
    each of their answers."""
    document = copy.deepcopy(spec)
    document["info"] = api_info(config, schema)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _BENTOML_ERRORS:
        schemas.pop(name, None)
    schemas["Error"] = ERROR_SCHEMA
    for path, errors in PATH_ERRORS.items():
        for operation in document["paths"].get(path, {}).values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"] = _with_errors(operation["responses"], errors)
                for response in operation["responses"].values():
                    response.setdefault("headers", {})[HEADER] = _REQUEST_ID_HEADER
    return document


_REQUEST_ID_HEADER = {
    "description": "the request's id: the caller's X-Request-ID when it is at most 64 of "
    "A-Za-z0-9._-, else a new one",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
}


def _with_errors(responses: dict[str, Any], errors: dict[int, str]) -> dict[str, Any]:
    # BentoML's codes are ints, FastAPI's strings: all strings here, as JSON has them.
    answered = {str(code): r for code, r in responses.items() if int(code) < 400}
    ref = {"$ref": "#/components/schemas/Error"}
    declared = {
        str(status): {"description": why, "content": {"application/json": {"schema": ref}}}
        for status, why in sorted(errors.items())
    }
    return {**answered, **declared}


class ApiDocs:
    """ASGI middleware: ``GET /docs`` is the API page (BentoML serves it at ``/`` only; its
    ``./docs.json`` and ``./static_content`` resolve the same from ``/docs``), and
    ``GET /docs.json`` is ``document()``."""

    def __init__(self, app: ASGIApp, document: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.document = document

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            if scope["path"] == "/docs.json":
                await self._document()(scope, receive, send)
                return
            if scope["path"] == "/docs":
                scope = {**scope, "path": "/", "raw_path": b"/"}
        await self.app(scope, receive, send)

    def _document(self) -> JSONResponse:
        try:
            return JSONResponse(self.document())
        except Exception:  # the API page breaks, never the service
            log.exception("cannot build the OpenAPI document")
            return JSONResponse(error_body("cannot build the OpenAPI document"), status_code=500)
