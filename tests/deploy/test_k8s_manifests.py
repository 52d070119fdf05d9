"""The serving manifests, checked offline: structure, wiring between objects, rollout triggers,
and each object against the Kubernetes API types (no cluster needed)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes.client import ApiClient
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import PlainTextResponse

from aiinfra.ops import k8s
from aiinfra.project.config import PROJECT_ROOT, PlatformConfig, config_from_json, load_config
from tests.conftest import SMOKE, run_cli

IMAGE = "registry.example/aiinfra-serving:1.2.3"
SERVING_DOCKERFILE = PROJECT_ROOT / "docker" / "serving.Dockerfile"
API_TYPES = {
    "ConfigMap": "V1ConfigMap",
    "NetworkPolicy": "V1NetworkPolicy",
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
    host = [{"name": "Host", "value": "localhost"}]
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": 3000,
        "httpHeaders": host,
    }
    assert container["livenessProbe"]["httpGet"] == {
        "path": "/livez",
        "port": 3000,
        "httpHeaders": host,
    }
    assert container["startupProbe"]["httpGet"]["port"] == port["containerPort"]
    assert container["startupProbe"]["httpGet"]["httpHeaders"] == host
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
    pod = config_from_json(cm["data"]["AIINFRA_CONFIG_JSON"])
    # The profile as it is, but for the Host names the pods must answer in the cluster.
    profile_hosts = config.serving.allowed_hosts
    assert pod.model_copy(update={"serving": config.serving}) == config
    assert pod.serving.allowed_hosts[: len(profile_hosts)] == profile_hosts


def _host_allowed(pod: PlatformConfig, host_header: str) -> bool:
    """Whether the service's Host check (TrustedHostMiddleware on serving.trusted_hosts())
    lets a request with this Host header through."""
    app = TrustedHostMiddleware(PlainTextResponse("ok"), pod.serving.trusted_hosts())

    async def get() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host_header}") as c:
            return (await c.get("/")).status_code

    return asyncio.run(get()) == 200


def test_the_pods_answer_the_service_names_and_the_probes(config: PlatformConfig) -> None:
    """The service refuses Host headers outside serving.allowed_hosts: the in-cluster names of
    the Service, and the probes' Host, must be on the pods' list, and a foreign name not."""
    objects = _objects(config, namespace="ml")
    pod = config_from_json(objects["ConfigMap"]["data"]["AIINFRA_CONFIG_JSON"])
    service = objects["Service"]["metadata"]["name"]
    for host in (service, f"{service}.ml", f"{service}.ml.svc", f"{service}.ml.svc.cluster.local"):
        assert _host_allowed(pod, f"{host}:80"), host
    probe_hosts = {
        header["value"]
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
        for header in _container(objects)[name]["httpGet"]["httpHeaders"]
        if header["name"] == "Host"
    }
    assert probe_hosts == {"localhost"} and _host_allowed(pod, "localhost:3000")
    assert not _host_allowed(pod, "attacker.example")
    # A profile that allows other names only still lets the probes and the Service in.
    narrow = config.model_copy(
        update={"serving": config.serving.model_copy(update={"allowed_hosts": ["api.example"]})}
    )
    pod = k8s.pod_config(narrow, "ml")
    assert _host_allowed(pod, "api.example") and _host_allowed(pod, "localhost")
    assert _host_allowed(pod, f"{service}.ml.svc")


def test_network_policy_admits_the_namespace_on_the_serving_port_only(
    config: PlatformConfig,
) -> None:
    objects = _objects(config)
    policy = objects["NetworkPolicy"]["spec"]
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]  # egress: MLflow, Redis, artifact store
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 3000}]
    assert rule["from"] == [{"podSelector": {}}]  # every pod of this namespace, nothing else
    (other,) = k8s.network_policy("aiinfra", allow_namespaces=["ingress-nginx"])["spec"]["ingress"]
    assert other["from"][1] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    }


def test_pod_drains_before_sigterm_and_has_time_to_finish(config: PlatformConfig) -> None:
    """On a rollout the pod leaves the Service's endpoints while preStop sleeps; only then does
    it get SIGTERM, and the server finishes its requests before Kubernetes kills it."""
    objects = _objects(config)
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    pre_stop = _container(objects)["lifecycle"]["preStop"]
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep" and int(command[1]) == k8s.DRAIN_SECONDS >= 5
    # The service drains for up to serving.drain_seconds after SIGTERM: all before the kill.
    drain = config.serving.drain_seconds
    assert pod["terminationGracePeriodSeconds"] > k8s.DRAIN_SECONDS + drain
    # The image starts the server with options `bentoml serve` knows (it refuses others).
    cmd = json.loads(
        next(
            line.removeprefix("CMD ")
            for line in SERVING_DOCKERFILE.read_text().replace("\\\n", " ").splitlines()
            if line.startswith("CMD ")
        )
    )
    from bentoml_cli.serve import build_serve_command

    serve = build_serve_command().commands["serve"]
    known = {o for p in serve.params for o in p.opts}
    assert {a for a in cmd[3:] if a.startswith("--")} <= known, cmd


def test_pod_runs_as_non_root(config: PlatformConfig) -> None:
    objects = _objects(config)
    spec = objects["Deployment"]["spec"]["template"]["spec"]
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 10001
    assert spec["automountServiceAccountToken"] is False  # the service never calls the API
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
        tmp_path, "manifests", "--image", "x:1", "--model-version", "5", "--output", str(out),
        "--allow-local",
    )  # fmt: skip
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
