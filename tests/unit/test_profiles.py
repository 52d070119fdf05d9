"""Profiles: local (default), team and cluster, chosen by one setting, each configuring the
same code: MLflow's stores, Feast's stores, images, and secrets only by reference."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from feast.infra.online_stores.redis import RedisOnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

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
    assert repo.online_store.connection_string == (
        "127.0.0.1:6379,password=s3cret,socket_timeout=2,socket_connect_timeout=2"
    )
    assert "s3cret" not in team.to_json(), "the pipeline parameter keeps the reference"
    assert Path(repo.registry.path) == tmp_path / "feast" / "registry.db"


@pytest.fixture
def silent_redis() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung Redis."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        with server:
            while True:
                try:
                    held.append(server.accept()[0])
                except OSError:  # closed: the test is over
                    return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for connection in held:  # a read still blocked (no timeout) gets EOF and ends
        connection.close()


def test_team_profile_reads_from_a_hung_redis_fail_instead_of_stalling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, silent_redis: int
) -> None:
    monkeypatch.setenv("AIINFRA_REDIS_PASSWORD", "s3cret")
    team = load_config(CONFIGS / "team.yaml", home=tmp_path)
    repo = feature_store.repo_config(team)
    _, params = RedisOnlineStore._parse_connection_string(repo.online_store.connection_string)
    assert 0 < params["socket_timeout"] <= 5 and 0 < params["socket_connect_timeout"] <= 5
    # An online read of the project's first view, as the service does, from the hung server.
    online = dict(team.features.online_store)
    online["connection_string"] = online["connection_string"].replace(":6379,", f":{silent_redis},")
    hung = team.model_copy(
        update={"features": team.features.model_copy(update={"online_store": online})}
    )
    objects = feature_store.repo_objects(hung)
    view = next(iter(objects.views.values()))
    join_key = objects.entities[view.entities[0]].join_key
    key = EntityKey(join_keys=[join_key], entity_values=[Value(int64_val=1)])
    failures: list[BaseException] = []

    def read() -> None:
        try:
            RedisOnlineStore().online_read(feature_store.repo_config(hung), view, [key])
        except Exception as exc:
            failures.append(exc)

    started = time.monotonic()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # Each try times out after 2 s; redis-py makes 3 retries (with backoff) of its own.
    reader.join(timeout=30)
    assert not reader.is_alive(), "the read hangs: no socket timeout"
    assert failures and "Timeout" in type(failures[0]).__name__, failures
    assert time.monotonic() - started < 20


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
    (deployment,) = [m for m in manifests if m["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == cluster.kfp.serving_image
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert refs == {
        "PGPASSWORD": {"name": "aiinfra-secrets", "key": "db-password"},
        "AIINFRA_REDIS_PASSWORD": {"name": "aiinfra-secrets", "key": "redis-password"},
    }
    local = k8s.serving_manifests(load_config(CONFIGS / "local.yaml", home=tmp_path), "img:1")
    (deployment,) = [m for m in local if m["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["env"] == []
