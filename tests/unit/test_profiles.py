"""Profiles: local (default), team and cluster, chosen by one setting, each configuring the
same code: MLflow's stores, Feast's stores, images, and secrets only by reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiinfra.data import feature_store
from aiinfra.ops import k8s, local_servers
from aiinfra.project.config import PROJECT_ROOT, load_config

CONFIGS = PROJECT_ROOT / "configs"


def test_one_setting_selects_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIINFRA_PROFILE", raising=False)
    assert load_config().profile == "local"
    for profile in ("team", "cluster", "local"):
        monkeypatch.setenv("AIINFRA_PROFILE", profile)
        assert load_config().profile == profile
    monkeypatch.setenv("AIINFRA_PROFILE", "staging")
    with pytest.raises(FileNotFoundError, match=r"staging\.yaml"):
        load_config()


def test_team_profile_puts_mlflow_on_postgres(tmp_path: Path) -> None:
    team = load_config(CONFIGS / "team.yaml", home=tmp_path)
    command = local_servers.mlflow_service(team).command
    store = command[command.index("--backend-store-uri") + 1]
    assert store == "postgresql+psycopg2://aiinfra@127.0.0.1:5432/mlflow"  # password: PGPASSWORD
    # Artifacts proxied by the server, kept under the home unless configured.
    assert command[command.index("--artifacts-destination") + 1] == str(
        tmp_path / "mlflow" / "artifacts"
    )
    local = local_servers.mlflow_service(load_config(CONFIGS / "local.yaml", home=tmp_path)).command
    assert local[local.index("--backend-store-uri") + 1].startswith("sqlite:///")


def test_team_profile_reads_features_from_redis_with_the_password_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = load_config(CONFIGS / "team.yaml", home=tmp_path)
    monkeypatch.delenv("AIINFRA_REDIS_PASSWORD", raising=False)
    with pytest.raises(ValueError, match=r"\$\{AIINFRA_REDIS_PASSWORD\}, which is not set"):
        feature_store.repo_config(team)
    monkeypatch.setenv("AIINFRA_REDIS_PASSWORD", "s3cret")
    repo = feature_store.repo_config(team)
    assert repo.online_store.type == "redis"
    assert repo.online_store.connection_string == "127.0.0.1:6379,password=s3cret"
    assert "s3cret" not in team.to_json(), "the pipeline parameter keeps the reference"
    assert Path(repo.registry.path) == tmp_path / "feast" / "registry.db"


def test_cluster_profile_uses_shared_stores_inside_the_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIINFRA_REDIS_PASSWORD", "x")
    cluster = load_config(CONFIGS / "cluster.yaml", home=tmp_path)  # home: not /var/lib here
    assert load_config(CONFIGS / "cluster.yaml").home == Path("/var/lib/aiinfra")
    assert cluster.project.root == Path("/opt/aiinfra")  # the project inside the image
    assert cluster.repo_path == Path("/opt/aiinfra/feature_repo")
    checkout = PROJECT_ROOT / "feature_repo"
    here = cluster.model_copy(
        update={"features": cluster.features.model_copy(update={"repo_path": checkout})}
    )
    repo = feature_store.repo_config(here)
    assert repo.online_store.connection_string.startswith("redis.aiinfra.svc.cluster.local:6379")
    assert repo.registry.registry_type == "sql"
    assert repo.registry.path.startswith("postgresql+psycopg2://aiinfra@postgres.aiinfra.svc")
    assert repo.offline_store.type == "file"
    assert cluster.kfp.image.endswith("/aiinfra-components:0.1.0")
    assert cluster.kfp.serving_image.endswith("/aiinfra-serving:0.1.0")


def test_serving_pods_get_the_store_passwords_from_the_secret(tmp_path: Path) -> None:
    cluster = load_config(CONFIGS / "cluster.yaml", home=tmp_path)
    manifests = k8s.serving_manifests(cluster, cluster.kfp.serving_image)
    container = manifests[1]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == cluster.kfp.serving_image
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert refs == {
        "PGPASSWORD": {"name": "aiinfra-secrets", "key": "db-password"},
        "AIINFRA_REDIS_PASSWORD": {"name": "aiinfra-secrets", "key": "redis-password"},
    }
    local = k8s.serving_manifests(load_config(CONFIGS / "local.yaml", home=tmp_path), "img:1")
    assert local[1]["spec"]["template"]["spec"]["containers"][0]["env"] == []
