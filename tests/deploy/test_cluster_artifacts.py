"""Nothing of this machine leaks into what is meant for a cluster: `compile`, `manifests` and
`training-job` refuse a local profile (or a local --home) unless --allow-local, and name the
environment overrides they wrote in."""

from __future__ import annotations

from pathlib import Path

import yaml

from aiinfra.project.config import PROJECT_ROOT, config_from_json
from tests.conftest import run_cli

CLUSTER = PROJECT_ROOT / "configs" / "cluster.yaml"


def test_compile_refuses_the_local_profile_and_names_what_would_leak(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.yaml"
    done = run_cli(tmp_path, "compile", "-o", str(out))
    assert done.returncode == 1, done.stdout
    assert "mlflow.tracking_uri = http://127.0.0.1" in done.stderr
    assert f"home = {tmp_path}" in done.stderr and "--allow-local" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()

    allowed = run_cli(tmp_path, "compile", "-o", str(out), "--allow-local")
    assert allowed.returncode == 0, allowed.stderr
    assert out.exists()


def test_a_local_home_on_the_cluster_profile_is_refused_too(tmp_path: Path) -> None:
    done = run_cli(
        tmp_path, "manifests", "-o", str(tmp_path / "k8s.yaml"), config=CLUSTER
    )  # --home is this machine's folder
    assert done.returncode == 1
    assert f"home = {tmp_path} (a folder of this machine)" in done.stderr
    assert "mlflow.tracking_uri" not in done.stderr  # the cluster's own URI is fine


def test_the_cluster_profile_compiles_and_lists_the_overrides_it_applied(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.yaml"
    done = run_cli(
        None, "compile", "-o", str(out), config=CLUSTER, env={"AIINFRA_TRAINING__EPOCHS": "3"}
    )
    assert done.returncode == 0, done.stderr
    assert "environment overrides in the pipeline: AIINFRA_TRAINING__EPOCHS" in done.stdout
    assert '\\"epochs\\":3' in out.read_text() or '"epochs":3' in out.read_text()


def test_manifests_serve_on_the_containers_port_whatever_this_machine_uses(tmp_path: Path) -> None:
    out = tmp_path / "k8s.yaml"
    done = run_cli(
        None, "manifests", "-o", str(out), config=CLUSTER, env={"AIINFRA_SERVING__PORT": "3071"}
    )
    assert done.returncode == 0, done.stderr
    assert "AIINFRA_SERVING__PORT" in done.stdout  # said, and then not used for the pods
    docs = {d["kind"]: d for d in yaml.safe_load_all(out.read_text())}
    pods = config_from_json(docs["ConfigMap"]["data"]["AIINFRA_CONFIG_JSON"])
    port = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    assert pods.serving.port == port["containerPort"] == 3000
