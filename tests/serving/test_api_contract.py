"""The service as its OpenAPI document describes it, through a real BentoML server: the
docs link the CLI prints opens the API page, the document names the project, the model and
the API version, and every error answers an object of the one declared ``Error`` shape."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pandas as pd
import pytest

from aiinfra.project.config import PlatformConfig
from aiinfra.runtime.guards import uniform_error
from aiinfra.training.model import TabularModel
from examples.loan_default.data import DemoData
from tests.serving.conftest import LOAN_ROW, served_champion

MODEL = "api-contract"
# The loan example's request as the README documents it: an applicant and a zipcode the demo
# generator always writes, with request-time features inside their bounds.
DOCUMENTED_ROW = LOAN_ROW


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    mlflow_server: PlatformConfig,
    demo: DemoData,
    training_frame: pd.DataFrame,
    model: TabularModel,
) -> Iterator[tuple[PlatformConfig, str]]:
    """A champion of the loan example served by ``bentoml serve``, as ``aiinfra serve`` starts
    it, on the session's MLflow server and a materialized online store of its own."""
    home = tmp_path_factory.mktemp("api-home")
    with served_champion(home, mlflow_server, demo, MODEL, training_frame, model) as found:
        yield found


@pytest.fixture(scope="module")
def url(served: tuple[PlatformConfig, str]) -> str:
    return served[1]


@pytest.fixture(scope="module")
def document(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/docs.json", timeout=30)
    assert response.status_code == 200
    return dict(response.json())


def test_the_documented_request_gets_a_prediction(url: str) -> None:
    response = httpx.post(
        f"{url}/predict",
        content=json.dumps({"rows": [DOCUMENTED_ROW]}),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_name"] == MODEL and answer["model_version"]
    (prediction,) = answer["predictions"]
    assert 0 < prediction["probability"] < 1 and prediction["predicted_class"] in (0, 1)


def test_the_docs_link_opens_the_api_page(url: str) -> None:
    page = httpx.get(f"{url}/docs", timeout=30)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="swagger-ui"' in page.text
    # The page loads "./docs.json" and "./static_content/...": from /docs, those are the
    # service's own, so the page works at that address.
    assert httpx.get(f"{url}/static_content/swagger-initializer.js").status_code == 200


def test_the_openapi_info_names_the_project_model_and_api_version(
    served: tuple[PlatformConfig, str], document: dict[str, Any]
) -> None:
    config = served[0]
    info = document["info"]
    assert info["x-project"] == config.project.name == "loan-default"
    assert info["x-model-name"] == MODEL
    assert config.project.name in info["title"] and MODEL in info["description"]
    # The platform's version, and a digest of the request and response types.
    assert re.fullmatch(r"\d+\.\d+\.\d+\+schema\.[0-9a-f]{8}", info["version"])
    assert "BentoML" not in json.dumps(info)


def test_every_reference_in_the_document_resolves(document: dict[str, Any]) -> None:
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs and refs <= set(document["components"]["schemas"])


def _declared_error(document: dict[str, Any], path: str, status: int) -> dict[str, Any]:
    """The schema ``document`` declares for ``status`` answered on ``path``, resolved."""
    operation = next(iter(document["paths"][path].values()))
    content = operation["responses"][str(status)]["content"]["application/json"]
    name = content["schema"]["$ref"].rsplit("/", 1)[-1]
    return dict(document["components"]["schemas"][name])


def _big(limit: int) -> bytes:
    return b'{"rows": [' + b" " * limit + b"]}"


# (path, body or None for the documented one, extra headers, expected status, named in error)
ERRORS: dict[str, tuple[str, bytes | None, dict[str, str], int, str]] = {
    "unknown entity": (
        "/predict",
        json.dumps({"rows": [{**DOCUMENTED_ROW, "applicant_id": 987654}]}).encode(),
        {},
        404,
        "applicant_id=987654",
    ),
    "text/plain body": ("/predict", None, {"content-type": "text/plain"}, 415, "Content-Type"),
    "body over the limit": ("/predict", b"big", {}, 413, "bytes"),
    "out-of-range field": (
        "/predict",
        json.dumps({"rows": [{**DOCUMENTED_ROW, "term_months": 1000}]}).encode(),
        {},
        400,
        "validation error",
    ),
    "not JSON": ("/predict", b"{not json", {}, 400, "validation error"),
    "empty batch": ("/predict_batch", b'{"rows": []}', {}, 400, "validation error"),
    "batch over the limit": ("/predict_batch", b"big", {}, 413, "bytes"),
    "unsigned webhook": ("/hooks/mlflow", b"{}", {}, 401, "signature"),
    "foreign Host": ("/predict", None, {"host": "attacker.example"}, 400, "host"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_every_error_answers_the_declared_error_object(
    served: tuple[PlatformConfig, str], document: dict[str, Any], case: str
) -> None:
    config, url = served
    path, body, headers, status, named = ERRORS[case]
    if body is None:
        body = json.dumps({"rows": [DOCUMENTED_ROW]}).encode()
    elif body == b"big":
        body = _big(config.serving.max_body_bytes)
    response = httpx.post(
        f"{url}{path}",
        content=body,
        headers={"content-type": "application/json", **headers},
        timeout=30,
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    jsonschema.validate(answer, _declared_error(document, path, status))
    assert named.lower() in answer["error"].lower()
    if "validation error" in named:  # each failing field named in detail
        assert answer["detail"] and all({"loc", "msg"} <= set(d) for d in answer["detail"])


def test_an_unknown_path_answers_an_error_object(url: str) -> None:
    response = httpx.get(f"{url}/nothing-here", timeout=30)
    assert response.status_code == 404 and response.json() == {"error": "Not Found"}


# What the service's parts answer before the guard makes them uniform: BentoML's 4xx (a
# one-element list, bentoml/BentoML#4232) and 5xx, FastAPI's, Starlette's plain text.
FOREIGN_BODIES = [
    (404, "application/json", b'[{"error": "no stored features"}]', "no stored features"),
    (503, "application/json", b'{"error": "An unexpected error has occurred"}', "/readyz"),
    (401, "application/json", b'{"detail": "bad signature"}', "bad signature"),
    (400, "text/plain; charset=utf-8", b"Invalid host header", "Invalid host header"),
    (413, "text/plain", b"", "Request Entity Too Large"),
]


@pytest.mark.parametrize(("status", "media_type", "body", "message"), FOREIGN_BODIES)
def test_foreign_error_bodies_take_the_one_shape(
    status: int, media_type: str, body: bytes, message: str
) -> None:
    answer = uniform_error(status, media_type, body)
    assert set(answer) == {"error"} and message in answer["error"]


def test_validation_details_are_kept_whoever_reports_them() -> None:
    detail = [{"loc": ["body", "rows"], "msg": "Field required", "type": "missing"}]
    for body in ({"error": "1 validation error", "detail": detail}, {"detail": detail}):
        answer = uniform_error(400, "application/json", json.dumps(body).encode())
        assert answer["detail"] == detail and answer["error"]
