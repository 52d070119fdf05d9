"""The serving manifests, checked offline: structure, wiring between objects, rollout triggers,
and each object against the Kubernetes API types (no cluster needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient

from aiinfra.ops import k8s
from aiinfra.project.config import PlatformConfig, config_from_json, load_config
from tests.conftest import SMOKE, run_cli

IMAGE = "registry.example/aiinfra-serving:1.2.3"
API_TYPES = {
    "ConfigMap": "V1ConfigMap",
    "Deployment": "V1Deployment",
    "Service": "V1Service",
    "HorizontalPodAutoscaler": "V2HorizontalPodAutoscaler",
}


@pytest.fixture
def config(tmp_path: Path) -> PlatformConfig:
    return load_config(SMOKE, home=tmp_path)


def _objects(config: PlatformConfig, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """Generate, write as YAML and load back, by kind."""
    kwargs.setdefault("image", IMAGE)
    docs = list(yaml.safe_load_all(k8s.to_yaml(k8s.serving_manifests(config, **kwargs))))
    by_kind = {doc["kind"]: doc for doc in docs}
    assert len(by_kind) == len(docs)
    return by_kind


def _container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def test_kinds_namespace_and_order(config: PlatformConfig) -> None:
    docs = list(yaml.safe_load_all(k8s.to_yaml(k8s.serving_manifests(config, IMAGE))))
    assert [d["kind"] for d in docs] == list(API_TYPES)
    assert {d["metadata"]["namespace"] for d in docs} == {"aiinfra"}
    other = k8s.serving_manifests(config, IMAGE, namespace="ml")
    assert {d["metadata"]["namespace"] for d in other} == {"ml"}


def test_probes_hit_health_endpoints_on_the_container_port(config: PlatformConfig) -> None:
    container = _container(_objects(config))
    (port,) = container["ports"]
    assert port["containerPort"] == 3000
    assert container["image"] == IMAGE
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 3000}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": 3000}
    assert container["startupProbe"]["httpGet"]["port"] == port["containerPort"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["periodSeconds"] > 0
        assert container[probe]["initialDelaySeconds"] > 0
    assert "command" not in container and "args" not in container  # the image's CMD binds 0.0.0.0
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_rollout_never_drops_capacity(config: PlatformConfig) -> None:
    spec = _objects(config)["Deployment"]["spec"]
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert "replicas" not in spec  # owned by the HPA


def test_service_and_hpa_target_the_deployment(config: PlatformConfig) -> None:
    objects = _objects(config, replicas=3)
    deployment, service, hpa = (
        objects["Deployment"],
        objects["Service"],
        objects["HorizontalPodAutoscaler"],
    )
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["type"] == "ClusterIP"
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (
        80,
        _container(objects)["ports"][0]["containerPort"],
    )
    target = hpa["spec"]["scaleTargetRef"]
    assert target == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"


def test_config_map_round_trips_into_the_platform_config(config: PlatformConfig) -> None:
    objects = _objects(config)
    cm = objects["ConfigMap"]
    (env_from,) = _container(objects)["envFrom"]
    assert env_from["configMapRef"]["name"] == cm["metadata"]["name"]
    assert config_from_json(cm["data"]["AIINFRA_CONFIG_JSON"]) == config


def test_pod_runs_as_non_root(config: PlatformConfig) -> None:
    objects = _objects(config)
    pod = objects["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 10001
    container = _container(objects)["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]


def test_new_image_model_version_or_config_changes_the_pod_template(
    config: PlatformConfig, tmp_path: Path
) -> None:
    def template(cfg: PlatformConfig = config, **kwargs: Any) -> dict[str, Any]:
        return dict(_objects(cfg, **kwargs)["Deployment"]["spec"]["template"])

    base = template(model_version="3")
    assert template(model_version="3") == base  # deterministic: re-applying rolls nothing
    assert base["metadata"]["annotations"][k8s.MODEL_VERSION_ANNOTATION] == "3"
    assert template(model_version="4") != base
    assert template(model_version="3", image="registry.example/aiinfra-serving:1.2.4") != base
    assert template() != base  # unpinned ("champion") differs from a pinned version
    other = load_config(SMOKE, home=tmp_path, serving={"poll_seconds": 2.0})
    assert template(other, model_version="3") != base  # the ConfigMap hash is on the pod


def test_bad_arguments_are_refused(config: PlatformConfig) -> None:
    with pytest.raises(ValueError, match="replicas"):
        k8s.serving_manifests(config, IMAGE, replicas=0)
    with pytest.raises(ValueError, match="image"):
        k8s.serving_manifests(config, "")


class _Response:
    def __init__(self, obj: dict[str, Any]) -> None:
        self.data = json.dumps(obj)


@pytest.mark.parametrize("kind", list(API_TYPES))
def test_each_object_matches_the_kubernetes_api_types(config: PlatformConfig, kind: str) -> None:
    """Deserializing into the client's model drops unknown (misspelled) fields and rejects bad
    types; re-serializing must give back exactly what was generated."""
    obj = _objects(config, model_version="7")[kind]
    client = ApiClient()
    model = client.deserialize(_Response(obj), API_TYPES[kind])
    assert type(model).__name__ == API_TYPES[kind]
    assert client.sanitize_for_serialization(model) == obj


def test_cli_writes_the_manifests(tmp_path: Path) -> None:
    out = tmp_path / "serving.yaml"
    done = run_cli(
        tmp_path, "manifests", "--image", "x:1", "--model-version", "5", "--output", str(out)
    )
    assert done.returncode == 0, done.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(out.read_text())}
    assert set(docs) == set(API_TYPES)
    template = docs["Deployment"]["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "x:1"
    assert template["metadata"]["annotations"][k8s.MODEL_VERSION_ANNOTATION] == "5"
    config = config_from_json(docs["ConfigMap"]["data"]["AIINFRA_CONFIG_JSON"])
    assert config.home == tmp_path and config.project.name == "loan-default"
    assert config.project.generator is not None
    assert config.project.generator.settings["n_loans"] == 1500


def test_library_module_does_not_import_kfp() -> None:
    code = "import sys, aiinfra.ops.k8s; sys.exit('kfp imported' if 'kfp' in sys.modules else 0)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
