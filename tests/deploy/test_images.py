"""The images, without a Docker engine: each Dockerfile is linted (hadolint) and names what
the code and the profiles expect of it; the compose file runs the team profile's services."""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from aiinfra.ops import k8s
from aiinfra.project.config import PROJECT_ROOT, load_config

DOCKER = PROJECT_ROOT / "docker"
IMAGES = {"components": DOCKER / "components.Dockerfile", "serving": DOCKER / "serving.Dockerfile"}
CLUSTER = load_config(PROJECT_ROOT / "configs" / "cluster.yaml")
TEAM = load_config(PROJECT_ROOT / "configs" / "team.yaml")
PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def values(path: Path, word: str) -> list[str]:
    return [rest for w, rest in instructions(path) if w == word]


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.skip("hadolint is not installed (it is in the dev dependencies: make setup)")
    return found


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_dockerfile_passes_hadolint(name: str) -> None:
    done = subprocess.run([hadolint(), str(IMAGES[name])], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_pinned_base_version_arg_and_non_root_user(name: str) -> None:
    path = IMAGES[name]
    (base,) = values(path, "FROM")
    # The Python of the lock (3.11), a full patch version, a fixed Debian release, one build.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    assert "ARG" in dict(instructions(path)) and "VERSION=" in values(path, "ARG")[0]
    label = " ".join(values(path, "LABEL"))
    assert 'org.opencontainers.image.version="${VERSION}"' in label
    assert f'org.opencontainers.image.title="aiinfra-{name}"' in label
    # Last USER wins: numeric (runAsNonRoot checks a number), the one the manifests run as.
    user = values(path, "USER")[-1]
    assert user.split(":")[0] == str(k8s.RUN_AS_USER) != "0"
    words = [w for w, _ in instructions(path)]
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")


def test_every_base_image_is_pinned_by_digest() -> None:
    """A tag can be pushed again; a digest names one image. Every stage of every Dockerfile,
    and one base for both images (one digest to move when the base is updated)."""
    bases = set()
    for path in sorted(DOCKER.glob("*Dockerfile")):
        froms = values(path, "FROM")
        assert froms, path.name
        for line in froms:
            image = line.split()[0]
            assert re.fullmatch(r"[^@\s]+:[^@\s]+@sha256:[0-9a-f]{64}", image), (path.name, line)
            bases.add(image)
    assert len(bases) == 1, bases


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_installs_the_runtime_dependencies_from_the_lock(name: str) -> None:
    """pyproject's dependencies as the hashed runtime lock pins them (no test or lint tools),
    every file checked against its hash; the project built with the locked setuptools."""
    path = IMAGES[name]
    runs = values(path, "RUN")
    assert "pip install --require-hashes -r requirements-runtime.txt" in runs
    assert any(r.startswith("pip install --no-deps --no-build-isolation . ") for r in runs)
    copies = values(path, "COPY")
    assert "requirements-runtime.txt ./" in copies
    assert not any("requirements.in" in c or "constraints.txt" in c for c in copies), "no tools"
    copied = {c.split()[0] for c in values(path, "COPY")}
    # Every package the project installs is copied before `pip install .`, and so are the
    # loan example's Feast repo and generator (imported from the project root).
    for package in (
        "src", "aiinfra_cli", "components", "pipelines", "serving", "feature_repo", "examples"
    ):  # fmt: skip
        assert package in copied, package


def test_components_image_matches_the_cluster_profile() -> None:
    path = IMAGES["components"]
    assert values(path, "WORKDIR") == ["/opt/aiinfra"] == [str(CLUSTER.project.root)]
    assert "feature_repo ./feature_repo" in values(path, "COPY")
    assert CLUSTER.repo_path == Path("/opt/aiinfra/feature_repo")
    # The generator entry point imports from the project root, where `examples` is copied.
    assert CLUSTER.project.generator is not None
    package = CLUSTER.project.generator.entry_point.split(".")[0]
    assert package == "examples" and f"{package} ./{package}" in values(path, "COPY")
    env = " ".join(values(path, "ENV"))
    assert f"AIINFRA_HOME={CLUSTER.home}" in env
    assert f"chown {k8s.RUN_AS_USER}:{k8s.RUN_AS_USER} {CLUSTER.home}" in " ".join(
        values(path, "RUN")
    )
    assert "/aiinfra-components:" in CLUSTER.kfp.image


def test_serving_image_matches_the_manifests() -> None:
    path = IMAGES["serving"]
    assert values(path, "WORKDIR") == [str(CLUSTER.project.root)]
    assert "feature_repo ./feature_repo" in values(path, "COPY")
    assert values(path, "EXPOSE") == [str(k8s.CONTAINER_PORT)]
    cmd = values(path, "CMD")[0]
    assert '"serving.service:ModelService"' in cmd and f'"{k8s.CONTAINER_PORT}"' in cmd
    assert "/aiinfra-serving:" in CLUSTER.kfp.serving_image


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_the_build_time_import_check_needs_no_project_data(name: str, tmp_path: Path) -> None:
    """Each image checks its install by importing its code at build time, when no label table
    or feature data exists yet (they live under the home volume): the check must pass in an
    empty home, run from the project root as the image's WORKDIR is."""
    (run,) = [r for r in values(IMAGES[name], "RUN") if "pip install --no-deps" in r]
    found = re.search(r'python -c "([^"]+)"', run)
    assert found, run
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIINFRA_")}
    done = subprocess.run(
        [sys.executable, "-c", found.group(1)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**env, "AIINFRA_HOME": str(tmp_path)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_dockerignore_keeps_state_and_environments_out() -> None:
    ignored = set((PROJECT_ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".aiinfra", ".env", "tests"} <= ignored
    for path in IMAGES.values():  # nothing an image copies is ignored
        for copy in values(path, "COPY"):
            assert not set(copy.split()[:-1]) & ignored, copy


def _third_party_imports() -> set[str]:
    names: set[str] = set()
    roots = ["src/aiinfra", "aiinfra_cli", "components", "pipelines", "serving"]
    roots += ["examples/loan_default", "feature_repo"]  # the example the cluster profile runs
    for root in roots:
        for file in (PROJECT_ROOT / root).rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.Import):
                    names.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    local = {"aiinfra", "aiinfra_cli", "components", "pipelines", "serving", "examples"}
    return {n for n in names - local if n not in sys.stdlib_module_names}


def _closure(requirements: list[str]) -> set[str]:
    """Distributions installed by ``requirements`` (extras followed), normalised names."""
    seen: set[str] = set()
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": extra}):
            continue
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        key = name + "[" + ",".join(sorted(req.extras)) + "]"
        if key in seen:
            continue
        seen.update({key, name})
        for sub in md.requires(req.name) or []:
            todo.extend((Requirement(sub), e) for e in ["", *req.extras])
    return {s for s in seen if "[" not in s}


def test_the_images_install_everything_the_code_imports() -> None:
    """The images install pyproject's dependencies, not requirements.in: whatever the shipped
    code imports must come with them (declare it in pyproject.toml as well)."""
    installed = _closure(PYPROJECT["project"]["dependencies"])
    provided = md.packages_distributions()
    missing = {
        module: provided.get(module, ["?"])
        for module in sorted(_third_party_imports())
        if not {re.sub(r"[-_.]+", "-", d).lower() for d in provided.get(module, [])} & installed
    }
    assert not missing, f"imported but not in pyproject dependencies (or theirs): {missing}"


def test_compose_runs_the_team_services_with_secrets_from_the_environment() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "mlflow"}
    for name, service in services.items():
        if "build" not in service:  # a pulled image: a pinned release
            assert re.search(r":\d+\.\d+(\.\d+)?-", service["image"]), f"{name}: pinned tag"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} is published on loopback only"
        assert "healthcheck" in service, name
    published = {s: [p.split(":")[1] for p in services[s]["ports"]] for s in services}
    assert published["postgres"] == ["5432"] and "127.0.0.1:5432/mlflow" in str(
        TEAM.mlflow.backend_store_uri
    )
    assert published["redis"] == ["6379"]
    assert TEAM.features.online_store["connection_string"].startswith("127.0.0.1:6379,")
    assert published["mlflow"] == [str(TEAM.mlflow.port)]
    mlflow = services["mlflow"]
    assert mlflow["build"]["dockerfile"] == "docker/components.Dockerfile"
    command = " ".join(mlflow["command"])
    assert "--backend-store-uri postgresql+psycopg2://aiinfra@postgres:5432/mlflow" in command
    assert "--artifacts-destination" in command
    text = (DOCKER / "compose.yaml").read_text()
    # Passwords only as required variables, never as values.
    assert "${PGPASSWORD:?" in text and "${AIINFRA_REDIS_PASSWORD:?" in text
    # ... and never in a process's argv, where any local user can read it.
    redis = services["redis"]
    assert "--requirepass" not in " ".join(redis["command"])
    assert " -a " not in str(redis["healthcheck"]["test"])
    # A restarted MLflow must read back the webhook secrets it stored: a fixed key.
    assert mlflow["environment"]["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"].startswith("${")
    assert not re.search(r"(?i)password[\"']?\s*[:=]\s*[\"']?(?!\$\{)\w", text)
