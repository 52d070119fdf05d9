"""Multi-node data-parallel training on Kubernetes: a Kubeflow PyTorchJob, generated from config.

The Kubeflow training operator (``kubeflow.org/v1``) starts one Master pod and ``nodes - 1``
Worker pods and gives each the torchrun rendezvous as ``PET_*`` variables (``PET_NNODES``,
``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR``, ``PET_MASTER_PORT``), which
torchrun reads. Every pod runs ``torchrun -m aiinfra.training.launcher`` on the training set
from a shared volume (a ReadWriteMany PVC); rank 0 writes the model, the summary and the
checkpoints there. A pod that dies is restarted (``OnFailure``) and the job resumes from the
last checkpoint.

``training_job_manifests`` returns plain dicts (a ConfigMap with the platform config and the
PyTorchJob); ``aiinfra.ops.k8s.to_yaml`` writes them for ``kubectl apply -f``.
"""

from __future__ import annotations

from typing import Any

from aiinfra.project.config import PlatformConfig

NAME = "aiinfra-train"
CONTAINER = "pytorch"  # the operator looks for the container by this name
CONFIG_ENV = "AIINFRA_CONFIG_JSON"
WORKSPACE = "/workspace"
RUN_AS_USER = 10001  # the `aiinfra` user of the components image

Manifest = dict[str, Any]


def _labels() -> dict[str, str]:
    return {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/component": "training",
        "app.kubernetes.io/part-of": "aiinfra",
    }


def _resources(config: PlatformConfig) -> dict[str, Any]:
    t = config.training
    requests = {
        k: v for k, v in (("cpu", t.cpu_request), ("memory", t.memory_request)) if v is not None
    }
    limits = {t.accelerator_type: str(t.accelerator_limit)} if t.accelerator_type else {}
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _pod_template(config: PlatformConfig, image: str, args: list[str], pvc: str) -> Manifest:
    container = {
        "name": CONTAINER,
        "image": image,
        "command": ["torchrun", "-m", "aiinfra.training.launcher"],
        "args": list(args),
        "env": [
            {
                "name": CONFIG_ENV,
                "valueFrom": {"configMapKeyRef": {"name": f"{NAME}-config", "key": CONFIG_ENV}},
            }
        ],
        **({"resources": _resources(config)} if _resources(config) else {}),
        "volumeMounts": [
            {"name": "workspace", "mountPath": WORKSPACE},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    return {
        "metadata": {"labels": _labels()},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_USER,
                "fsGroup": RUN_AS_USER,
            },
            # torchrun meets its peers through the operator's env, never the Kubernetes API.
            "automountServiceAccountToken": False,
            "containers": [container],
            "volumes": [
                {"name": "workspace", "persistentVolumeClaim": {"claimName": pvc}},
                # NCCL and the collectives use shared memory; a container's default is 64 MiB.
                {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            ],
        },
    }


def pytorch_job(
    config: PlatformConfig,
    image: str,
    training_set: str,
    output: str,
    nodes: int = 2,
    pvc: str = "aiinfra-training",
    namespace: str = "aiinfra",
) -> Manifest:
    """The PyTorchJob: ``nodes`` pods, each with ``accelerator_limit`` processes when an
    accelerator is configured (one per GPU), else ``nproc_per_node``. ``training_set`` and
    ``output`` are paths inside the PVC."""
    if nodes < 1:
        raise ValueError(f"nodes must be at least 1, got {nodes}")
    if not image:
        raise ValueError("image must not be empty")
    t = config.training
    out = f"{WORKSPACE}/{output.strip('/')}"
    args = [
        "--training-set",
        f"{WORKSPACE}/{training_set.lstrip('/')}",
        "--model-dir",
        f"{out}/model",
        "--checkpoint-dir",
        f"{out}/checkpoints",
        "--summary",
        f"{out}/summary.json",
    ]

    def replicas(count: int) -> Manifest:
        # A fresh template each: shared objects would come out as YAML anchors.
        template = _pod_template(config, image, args, pvc)
        return {"replicas": count, "restartPolicy": "OnFailure", "template": template}

    specs = {"Master": replicas(1)}
    if nodes > 1:
        specs["Worker"] = replicas(nodes - 1)
    nproc = t.accelerator_limit if t.accelerator_type else t.nproc_per_node
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": NAME, "namespace": namespace, "labels": _labels()},
        "spec": {
            "nprocPerNode": str(nproc),
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": 3},
            "pytorchReplicaSpecs": specs,
        },
    }


def training_job_manifests(
    config: PlatformConfig,
    image: str,
    training_set: str = "data/training_set.parquet",
    output: str = "runs/latest",
    nodes: int = 2,
    pvc: str = "aiinfra-training",
    namespace: str = "aiinfra",
) -> list[Manifest]:
    """The ConfigMap holding the platform config, and the PyTorchJob that reads it."""
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{NAME}-config", "namespace": namespace, "labels": _labels()},
        "data": {CONFIG_ENV: config.to_json()},
    }
    job = pytorch_job(config, image, training_set, output, nodes, pvc, namespace)
    return [config_map, job]
