"""Kubernetes manifests for the serving deployment, generated from the platform config.

``serving_manifests`` returns plain dicts (ConfigMap, NetworkPolicy, Deployment, Service,
HorizontalPodAutoscaler) and ``to_yaml`` writes them as one multi-document file for
``kubectl apply -f``. Rollout: a new image or model version changes the pod template, so
``kubectl apply`` rolls the Deployment; with ``maxUnavailable: 0`` and readiness on ``/readyz``
(true only once a ``@champion`` model is loaded), old pods keep the traffic until a new pod has
its model. A pod being replaced first waits ``DRAIN_SECONDS`` (endpoints stop sending it new
requests), then gets SIGTERM and finishes the requests it has.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import yaml

from aiinfra.project.config import PlatformConfig, config_from_json

NAME = "aiinfra-serving"
CONFIG_KEY = "AIINFRA_CONFIG_JSON"
# The port in the serving image's CMD (docker/serving.Dockerfile), which binds 0.0.0.0.
CONTAINER_PORT = 3000
SERVICE_PORT = 80
RUN_AS_USER = 10001  # the `aiinfra` user created in the serving image
MODEL_VERSION_ANNOTATION = "aiinfra.dev/model-version"
CONFIG_HASH_ANNOTATION = "aiinfra.dev/config-sha256"
CPU_TARGET_PERCENT = 70
# The Host header of the kubelet's probes: the service refuses hosts not in
# serving.allowed_hosts, and by default a probe would send the pod's IP.
PROBE_HOST = "localhost"
# preStop wait, so kube-proxy and ingresses stop routing to the pod before the server stops.
DRAIN_SECONDS = 5
# Kubernetes kills the pod this long after preStop began: the preStop wait, the service's own
# drain on SIGTERM (serving.drain_seconds: in-flight requests finish), then a margin.
SHUTDOWN_MARGIN_SECONDS = 10


def termination_grace_seconds(config: PlatformConfig) -> int:
    return int(DRAIN_SECONDS + config.serving.drain_seconds + SHUTDOWN_MARGIN_SECONDS)


Manifest = dict[str, Any]


def _labels() -> dict[str, str]:
    return {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/component": "serving",
        "app.kubernetes.io/part-of": "aiinfra",
    }


def _selector() -> dict[str, str]:
    # A Deployment's selector is immutable: only labels that never change between rollouts.
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "serving"}


def _metadata(name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": _labels()}


def _probe(path: str, initial_delay: int, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {
            "path": path,
            "port": CONTAINER_PORT,
            "httpHeaders": [{"name": "Host", "value": PROBE_HOST}],
        },
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def service_hosts(namespace: str) -> list[str]:
    """The names the Service is reached by inside the cluster (default cluster domain)."""
    return [
        NAME,
        f"{NAME}.{namespace}",
        f"{NAME}.{namespace}.svc",
        f"{NAME}.{namespace}.svc.cluster.local",
    ]


def pod_config(config: PlatformConfig, namespace: str = "aiinfra") -> PlatformConfig:
    """The config the pods run with: the profile's, with the Service's names and the probes'
    Host added to ``serving.allowed_hosts`` (the service refuses any other Host header) and
    the container's port."""
    allowed = [*config.serving.allowed_hosts, PROBE_HOST, *service_hosts(namespace)]
    # The pod listens where the image's CMD binds, whatever port this machine's profile uses.
    update = {"allowed_hosts": list(dict.fromkeys(allowed)), "port": CONTAINER_PORT}
    serving = config.serving.model_copy(update=update)
    return config.model_copy(update={"serving": serving})


def config_map(config: PlatformConfig, namespace: str = "aiinfra") -> Manifest:
    """The pods' config (``pod_config``) as JSON, exposed as ``AIINFRA_CONFIG_JSON``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(f"{NAME}-config", namespace),
        "data": {CONFIG_KEY: pod_config(config, namespace).to_json()},
    }


def network_policy(namespace: str = "aiinfra", allow_namespaces: Sequence[str] = ()) -> Manifest:
    """Ingress to the serving pods only on the serving port, and only from pods of the same
    namespace and of ``allow_namespaces`` (e.g. an ingress controller's). Egress is left open:
    the pods reach MLflow, the online store and the registry's artifact store."""
    peers: list[dict[str, Any]] = [{"podSelector": {}}]
    peers += [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}
        for name in allow_namespaces
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(NAME, namespace),
        "spec": {
            "podSelector": {"matchLabels": _selector()},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": CONTAINER_PORT}]}],
        },
    }


def deployment(
    image: str,
    config_json: str,
    namespace: str = "aiinfra",
    model_version: str | None = None,
    secret: str | None = None,
    secret_env: dict[str, str] | None = None,
) -> Manifest:
    """The BentoML pods. ``spec.replicas`` is left out: the HPA owns the replica count, and
    ``kubectl apply`` would otherwise reset it on every rollout. ``secret_env`` maps keys of
    the Secret ``secret`` to environment variables (store passwords the profile expands)."""
    container = {
        "name": "serving",
        "image": image,
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": f"{NAME}-config"}}],
        "env": [
            {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            for key, env in (secret_env or {}).items()
            if secret
        ],
        # Startup (imports of torch, MLflow, Feast) may take a while: up to 5 min before
        # liveness applies. Readiness stays false until a @champion model is loaded.
        "startupProbe": _probe("/livez", initial_delay=5, period=5, failures=60),
        "livenessProbe": _probe("/livez", initial_delay=10, period=10, failures=3),
        "readinessProbe": _probe("/readyz", initial_delay=5, period=5, failures=3),
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"cpu": "2", "memory": "3Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": False,  # BentoML writes under BENTOML_HOME=/tmp/bentoml
            "capabilities": {"drop": ["ALL"]},
        },
        # An exec sleep (the image has coreutils) works on every cluster version, unlike
        # lifecycle.preStop.sleep (Kubernetes 1.30+).
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(DRAIN_SECONDS)]}}},
    }
    annotations = {
        # Unpinned means "whatever @champion is": the service follows the alias by itself.
        MODEL_VERSION_ANNOTATION: model_version or "champion",
        # envFrom does not restart pods when the ConfigMap changes; this hash does.
        CONFIG_HASH_ANNOTATION: hashlib.sha256(config_json.encode()).hexdigest()[:16],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(NAME, namespace),
        "spec": {
            "selector": {"matchLabels": _selector()},
            "strategy": {
                "type": "RollingUpdate",
                # Never below capacity: a new pod must be ready before an old one goes.
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "minReadySeconds": 5,
            "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": _labels(), "annotations": annotations},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    # The service never calls the Kubernetes API: no token in the pod.
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": termination_grace_seconds(
                        config_from_json(config_json)
                    ),
                    "containers": [container],
                },
            },
        },
    }


def service(namespace: str = "aiinfra") -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(NAME, namespace),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(),
            "ports": [
                {
                    "name": "http",
                    "port": SERVICE_PORT,
                    "targetPort": CONTAINER_PORT,
                    "protocol": "TCP",
                }
            ],
        },
    }


def autoscaler(replicas: int, namespace: str = "aiinfra") -> Manifest:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(NAME, namespace),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": replicas,
            "maxReplicas": 4 * replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": CPU_TARGET_PERCENT,
                        },
                    },
                }
            ],
        },
    }


def serving_manifests(
    config: PlatformConfig,
    image: str,
    replicas: int = 2,
    namespace: str = "aiinfra",
    model_version: str | None = None,
    allow_namespaces: Sequence[str] = (),
) -> list[Manifest]:
    """ConfigMap, NetworkPolicy, Deployment, Service and HPA (``replicas`` to ``4 * replicas``
    pods). Requests reach the pods from their own namespace and ``allow_namespaces`` only."""
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    if not image:
        raise ValueError("image must not be empty")
    cm = config_map(config, namespace)
    return [
        cm,
        network_policy(namespace, allow_namespaces),
        deployment(
            image,
            cm["data"][CONFIG_KEY],
            namespace,
            model_version,
            config.kfp.secret,
            config.kfp.secret_env,
        ),
        service(namespace),
        autoscaler(replicas, namespace),
    ]


def to_yaml(manifests: list[Manifest]) -> str:
    """One multi-document YAML file, in order, for ``kubectl apply -f``."""
    return yaml.safe_dump_all(manifests, sort_keys=False)
