"""The multi-node training job (Kubeflow PyTorchJob), checked offline: the operator's own
validation rules (``pytorch_validation.go``), the CRD's field names and enums as a JSON schema,
and each pod template against the Kubernetes API types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes.client import ApiClient

from aiinfra.ops import k8s, training_job
from aiinfra.project.config import PlatformConfig, config_from_json, load_config
from tests.conftest import SMOKE, run_cli

IMAGE = "registry.example/aiinfra-components:1.2.3"
DNS1035 = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
_REPLICA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["template"],
    "properties": {
        "replicas": {"type": "integer", "minimum": 1},
        "restartPolicy": {"enum": ["Always", "OnFailure", "Never", "ExitCode"]},
        "template": {"type": "object"},
    },
}
# The part of the kubeflow.org/v1 PyTorchJob CRD schema this generator uses (the pod templates
# are checked against the Kubernetes client's models instead).
PYTORCHJOB_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "kubeflow.org/v1"},
        "kind": {"const": "PyTorchJob"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": DNS1035, "maxLength": 63}},
        },
        "spec": {
            "type": "object",
            "required": ["pytorchReplicaSpecs"],
            "additionalProperties": False,
            "properties": {
                "nprocPerNode": {"type": "string", "pattern": r"^(auto|cpu|gpu|[1-9][0-9]*)$"},
                "runPolicy": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "cleanPodPolicy": {"enum": ["All", "Running", "None"]},
                        "backoffLimit": {"type": "integer", "minimum": 0},
                        "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                        "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                    },
                },
                "pytorchReplicaSpecs": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["Master"],
                    "properties": {
                        "Master": {
                            **_REPLICA,
                            "properties": {**_REPLICA["properties"], "replicas": {"const": 1}},
                        },
                        "Worker": _REPLICA,
                    },
                },
            },
        },
    },
}


class _Response:
    def __init__(self, obj: dict[str, Any]) -> None:
        self.data = json.dumps(obj)


@pytest.fixture
def gpu_config(tmp_path: Path) -> PlatformConfig:
    return load_config(
        SMOKE,
        home=tmp_path,
        training={
            "device": "auto",
            "accelerator_type": "nvidia.com/gpu",
            "accelerator_limit": 8,
            "cpu_request": "32",
            "memory_request": "256Gi",
        },
    )


def _docs(config: PlatformConfig, **kwargs: Any) -> dict[str, dict[str, Any]]:
    manifests = training_job.training_job_manifests(config, IMAGE, **kwargs)
    text = k8s.to_yaml(manifests)
    assert "&id" not in text  # no YAML anchors: every pod template spelled out
    docs = list(yaml.safe_load_all(text))
    return {d["kind"]: d for d in docs}


def test_job_matches_the_crd_and_the_operator_rules(gpu_config: PlatformConfig) -> None:
    job = _docs(gpu_config, nodes=4)["PyTorchJob"]
    jsonschema.validate(job, PYTORCHJOB_SCHEMA)
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 3
    for spec in specs.values():
        containers = spec["template"]["spec"]["containers"]
        assert any(c["name"] == "pytorch" and c["image"] == IMAGE for c in containers)
    assert job["spec"]["nprocPerNode"] == "8"  # one process per GPU


def test_every_pod_runs_torchrun_on_the_shared_volume(gpu_config: PlatformConfig) -> None:
    docs = _docs(gpu_config, nodes=2, training_set="data/ts.parquet", output="runs/r1")
    job, config_map = docs["PyTorchJob"], docs["ConfigMap"]
    template = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    (container,) = template["spec"]["containers"]
    assert container["command"] == ["torchrun", "-m", "aiinfra.training.launcher"]
    args = dict(zip(container["args"][::2], container["args"][1::2], strict=True))
    assert args == {
        "--training-set": "/workspace/data/ts.parquet",
        "--model-dir": "/workspace/runs/r1/model",
        "--checkpoint-dir": "/workspace/runs/r1/checkpoints",  # shared: any pod can resume
        "--summary": "/workspace/runs/r1/summary.json",
    }
    assert container["resources"] == {
        "requests": {"cpu": "32", "memory": "256Gi"},
        "limits": {"nvidia.com/gpu": "8"},
    }
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes["workspace"]["persistentVolumeClaim"]["claimName"] == "aiinfra-training"
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    (env,) = container["env"]
    ref = env["valueFrom"]["configMapKeyRef"]
    assert ref["name"] == config_map["metadata"]["name"]
    assert config_from_json(config_map["data"][ref["key"]]) == gpu_config


def test_no_pod_gets_a_kubernetes_api_token(gpu_config: PlatformConfig) -> None:
    """Training never calls the Kubernetes API: a token in the pod would only be something to
    steal (the namespace's default service account)."""
    specs = _docs(gpu_config, nodes=3)["PyTorchJob"]["spec"]["pytorchReplicaSpecs"]
    for spec in specs.values():
        assert spec["template"]["spec"]["automountServiceAccountToken"] is False


def test_pod_templates_match_the_kubernetes_api_types(gpu_config: PlatformConfig) -> None:
    client = ApiClient()
    docs = _docs(gpu_config, nodes=3)
    for spec in docs["PyTorchJob"]["spec"]["pytorchReplicaSpecs"].values():
        model = client.deserialize(_Response(spec["template"]), "V1PodTemplateSpec")
        assert client.sanitize_for_serialization(model) == spec["template"]
    cm = client.deserialize(_Response(docs["ConfigMap"]), "V1ConfigMap")
    assert client.sanitize_for_serialization(cm) == docs["ConfigMap"]


def test_cpu_job_and_a_single_node(tmp_path: Path) -> None:
    config = load_config(SMOKE, home=tmp_path, training={"nproc_per_node": 4})
    job = _docs(config, nodes=1)["PyTorchJob"]
    jsonschema.validate(job, PYTORCHJOB_SCHEMA)
    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master"}
    assert job["spec"]["nprocPerNode"] == "4"
    (container,) = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
    assert "resources" not in container  # nothing configured, nothing asked
    with pytest.raises(ValueError, match="nodes"):
        training_job.pytorch_job(config, IMAGE, "ts", "out", nodes=0)


def test_cli_writes_the_training_job(tmp_path: Path) -> None:
    out = tmp_path / "train-job.yaml"
    done = run_cli(
        tmp_path, "training-job", "--image", "x:1", "--nodes", "3", "-o", str(out), "--allow-local"
    )
    assert done.returncode == 0, done.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(out.read_text())}
    jsonschema.validate(docs["PyTorchJob"], PYTORCHJOB_SCHEMA)
    assert docs["PyTorchJob"]["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 2
