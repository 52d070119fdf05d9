"""``aiinfra init``: a project written from one table loads, with what was inferred explained,
and bad input is refused naming the flag and the column."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from aiinfra.data.asof_store import STORE_TYPE as ASOF_STORE
from aiinfra.project.config import PROJECT_ROOT, load_config
from aiinfra.project.definition import ProjectError
from aiinfra.project.scaffold import Scaffold, init_project

N = 120


def _table(n: int = N, seed: int = 0, **columns: Any) -> pd.DataFrame:
    """A small table with entity ``cust``, time ``ts``, label ``y`` and a few features;
    ``columns`` replaces or adds columns."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    frame = pd.DataFrame(
        {
            "cust": np.arange(1, n + 1),
            "ts": [now - timedelta(hours=float(h)) for h in rng.uniform(1, 24 * 20, n)],
            "amount": rng.normal(100, 20, n),
            "visits": rng.integers(0, 30, n),
            "channel": rng.choice(["web", "shop", "phone"], n),
            "y": rng.integers(0, 2, n),
        }
    )
    for name, values in columns.items():
        frame[name] = values
    return frame


def _init(tmp_path: Path, frame: pd.DataFrame, csv: bool = False, **kwargs: Any) -> Scaffold:
    tmp_path.mkdir(parents=True, exist_ok=True)
    table = tmp_path / ("table.csv" if csv else "table.parquet")
    if csv:
        frame.to_csv(table, index=False)
    else:
        frame.to_parquet(table, index=False)
    args: dict[str, Any] = {"entity": ["cust"], "timestamp": "ts", "label": "y", **kwargs}
    return init_project(tmp_path / "project", table, **args)


# --- the task ---------------------------------------------------------------------------------

rng = np.random.default_rng(1)
LABELS = [
    ("floats", rng.normal(size=N), "regression", (), "fractional"),
    ("0/1", rng.integers(0, 2, N), "binary", (0, 1), "2 distinct"),
    ("yes/no", rng.choice(["no", "yes"], N), "binary", ("no", "yes"), "2 distinct"),
    ("booleans", rng.random(N) > 0.5, "binary", (False, True), "2 distinct"),
    ("few ints", rng.integers(0, 5, N), "multiclass", (0, 1, 2, 3, 4), "5 distinct"),
    ("few strings", rng.choice(list("abc"), N), "multiclass", ("a", "b", "c"), "3 distinct"),
    ("whole floats", rng.integers(1, 4, N).astype(float), "multiclass", (1, 2, 3), "3 distinct"),
    ("many ints", np.arange(N) * 3, "regression", (), f"{N} distinct"),
]


@pytest.mark.parametrize(
    ("values", "task", "classes", "why"),
    [case[1:] for case in LABELS],
    ids=[case[0] for case in LABELS],
)
def test_the_task_is_inferred_from_the_label_and_explained(
    tmp_path: Path, values: Any, task: str, classes: tuple[Any, ...], why: str
) -> None:
    made = _init(tmp_path, _table(y=values))
    assert made.task == task
    assert why in made.task_reason and "'y'" in made.task_reason
    labels = pd.read_parquet(made.directory / "data" / "labels.parquet")
    if classes:  # the classes the platform will see: plain values, whole numbers as integers
        assert tuple(sorted(labels["y"].unique().tolist())) == classes
    profile = yaml.safe_load(made.profile.read_text())
    assert profile["project"]["task"] == task


def test_a_given_task_wins_and_is_checked(tmp_path: Path) -> None:
    made = _init(tmp_path / "a", _table(y=np.arange(N) % 3), task="regression")
    assert made.task == "regression" and made.task_reason == "--task regression"
    with pytest.raises(ProjectError, match=r"--task binary: --label y has 3 distinct values"):
        _init(tmp_path / "b", _table(y=np.arange(N) % 3), task="binary")
    with pytest.raises(ProjectError, match=r"--task regression: 'y' .* must be numeric"):
        _init(tmp_path / "c", _table(y=["a", "b"] * (N // 2)), task="regression")


# --- features ---------------------------------------------------------------------------------


def test_feature_types_are_inferred_and_skipped_columns_explained(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    table = _table(
        ratio=rng.random(N).astype("float32"),
        vip=rng.random(N) > 0.7,
        code=[f"id-{i}" for i in range(N)],  # one value per row: an identifier
        signup=pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 99, N), unit="D"),
        country="fr",  # one value only
        score=pd.array([None if i % 10 == 0 else i for i in range(N)], dtype="Int64"),
    )
    made = _init(tmp_path, table, request_features=["amount"])
    kinds = {f.name: (f.kind, f.dtype, f.source) for f in made.features}
    assert kinds == {
        "visits": ("numeric", "Int64", "stored"),
        "channel": ("categorical", "String", "stored"),
        "ratio": ("numeric", "Float64", "stored"),
        "vip": ("categorical", "String", "stored"),
        "score": ("numeric", "Float64", "stored"),  # integers with gaps: floats
        "amount": ("numeric", "Float64", "request"),
    }
    by_name = {f.name: f for f in made.features}
    assert by_name["channel"].categories == ("phone", "shop", "web")
    assert by_name["vip"].categories == ("False", "True")
    ignored = dict(made.ignored)
    assert set(ignored) == {"code", "signup", "country"}
    assert "identifier" in ignored["code"] and "date" in ignored["signup"]
    assert "one value" in ignored["country"]
    assert any("score has 12 empty values" in note for note in made.notes)

    features = pd.read_parquet(made.directory / "data" / "features.parquet")
    assert list(features.columns) == [
        "cust", "ts", "created", "visits", "channel", "ratio", "vip", "score",
    ]  # fmt: skip
    assert (features["created"] == features["ts"]).all()
    assert str(features["ts"].dt.tz) == "UTC"
    assert set(features["vip"]) == {"False", "True"}  # stored as the String field says
    labels = pd.read_parquet(made.directory / "data" / "labels.parquet")
    assert list(labels.columns) == ["cust", "ts", "y", "amount"]


# --- refused input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"entity": ["customer_id"]}, r"--entity customer_id: no such column in table\.csv "),
        ({"timestamp": "when"}, r"--timestamp when: no such column in table\.csv "),
        ({"label": "churned"}, r"--label churned: no such column in table\.csv \(columns: cust, "),
        ({"request_features": ["price"]}, r"--request-feature price: no such column"),
        ({"entity": []}, r"--entity: name at least one"),
        ({"label": "cust"}, r"--label cust: column 'cust' is already given with --entity"),
    ],
)
def test_missing_or_repeated_columns_are_refused_naming_the_flag(
    tmp_path: Path, flags: dict[str, Any], message: str
) -> None:
    with pytest.raises(ProjectError, match=message):
        _init(tmp_path, _table(), csv=True, **flags)


def test_bad_keys_times_and_labels_are_refused(tmp_path: Path) -> None:
    cases: list[tuple[pd.DataFrame, str]] = [
        (_table(cust=[None, *range(1, N)]), r"--entity cust: column 'cust' .* 1 empty values"),
        (_table(cust=np.linspace(0, 1, N)), r"--entity cust: .* holds float64; entity keys"),
        (_table(cust=[1, 1, *range(2, N)], ts=pd.Timestamp("2024-05-01", tz="UTC")), r"share"),
        (_table(ts=["not a time"] * N), r"--timestamp ts: .* does not parse as timestamps"),
        (_table(ts=np.arange(N)), r"--timestamp ts: .* holds int64, not timestamps"),
        (_table(y=[None, *([1.0] * (N - 1))]), r"--label y: .* 1 empty values"),
        (_table(y=1), r"--label y: every row has the same label"),
        (_table(y=[f"c{i % 30}" for i in range(N)]), r"30 distinct values: .*--task multiclass"),
        (
            _table(amount=0, visits=0, channel="x"),
            r"--data table\.parquet: no column is left to be a stored feature",
        ),
    ]
    for i, (table, message) in enumerate(cases):
        with pytest.raises(ProjectError, match=message):
            _init(tmp_path / str(i), table)


def test_a_folder_with_files_needs_force(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "notes.txt").write_text("mine")
    with pytest.raises(ProjectError, match=r"is not empty \(use --force"):
        _init(tmp_path, _table())
    made = _init(tmp_path, _table(), force=True)
    assert made.profile.exists() and (tmp_path / "project" / "notes.txt").read_text() == "mine"


def test_an_unreadable_table_is_named(tmp_path: Path) -> None:
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(ProjectError, match=r"--data t\.xlsx: .* neither Parquet nor CSV"):
        init_project(tmp_path / "p", tmp_path / "t.xlsx", ["a"], "b", "c")
    with pytest.raises(ProjectError, match=r"--data nope\.csv: .* does not exist"):
        init_project(tmp_path / "p", tmp_path / "nope.csv", ["a"], "b", "c")


# --- the written project loads --------------------------------------------------------------


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Scaffold:
    """A two-key project (a string and an integer key) from a CSV, with request features."""
    root = tmp_path_factory.mktemp("shop")
    rng = np.random.default_rng(3)
    table = _table(
        n=200,
        store=rng.choice(["north", "south", "east"], 200),
        cust=rng.choice(40, 200),
        price=rng.uniform(1, 50, 200),
        promo=rng.choice(["none", "coupon"], 200),
        y=rng.choice(["kept", "left", "paused"], 200),
    )
    table = table.drop_duplicates(["store", "cust", "ts"])
    table.to_csv(root / "Shop Orders.csv", index=False)
    return init_project(
        root / "My Shop-2024!",
        root / "Shop Orders.csv",
        entity=["store", "cust"],
        timestamp="ts",
        label="y",
        request_features=["price", "promo"],
    )


def test_the_project_loads_and_passes_check_project(shop: Scaffold) -> None:
    from aiinfra import steps

    assert shop.name == "my_shop_2024" and shop.task == "multiclass"
    config = load_config(shop.profile)
    assert config.project.root == shop.directory
    assert config.home == shop.directory / ".aiinfra"
    assert config.features.feature_service == "my_shop_2024_v1"
    project = steps.check_project(config)
    schema = project.schema
    assert [(k.name, k.type) for k in schema.entities] == [("store", "string"), ("cust", "int")]
    assert schema.classes == ("kept", "left", "paused")
    assert [f.name for f in schema.request_features] == ["price", "promo"]
    assert schema.feature("promo").categories == ("coupon", "none")
    assert {f.name for f in schema.stored_features} == {"amount", "visits", "channel"}
    assert schema.feature("channel").categories == ("phone", "shop", "web")
    assert schema.feature("visits").integer and schema.feature("amount").description
    assert project.ignored_columns == ()


def test_definitions_are_plain_feast_in_order(shop: Scaffold) -> None:
    from aiinfra.project import feature_repo

    repo_dir = shop.directory / "feature_repo"
    text = (repo_dir / "definitions.py").read_text()
    ast.parse(text)
    assert 'Path(__file__).resolve().parent.parent / "data" / "features.parquet"' in text
    order = [text.index(f"= {kind}(") for kind in ("Entity", "FileSource", "FeatureView")]
    assert order == sorted(order) and order[-1] < text.index("= FeatureService(")
    assert text.count("\n# ") >= 5  # a comment on each definition
    repo = feature_repo.load(repo_dir)
    assert set(repo.entities) == {"store", "cust"}
    assert repo.entities["cust"].join_key == "cust"
    (view,) = repo.service_views("my_shop_2024_v1")
    assert view.name == "shop_orders_features"
    assert {f.name: f.description for f in view.features} == {
        "amount": "from Shop Orders.csv",
        "visits": "from Shop Orders.csv",
        "channel": "from Shop Orders.csv",
    }
    assert view.batch_source.created_timestamp_column == "created"
    store = yaml.safe_load((repo_dir / "feature_store.yaml").read_text())
    assert store["project"] == "my_shop_2024" and store["entity_key_serialization_version"] == 3
    assert (
        store["online_store"]["type"] == "sqlite" and store["offline_store"]["type"] == ASOF_STORE
    )


def test_the_training_set_joins_every_row_with_its_features(shop: Scaffold) -> None:
    """Feast's point-in-time join of the written tables gives each label row its own
    features back (same time, same values): nothing lost at the join."""
    from aiinfra import steps
    from aiinfra.data.training_set import read_training_set

    config = load_config(shop.profile)
    out = config.home / "training_set.parquet"
    info = steps.build_training_set(config, out)
    frame, _ = read_training_set(out)
    source = pd.read_csv(shop.directory.parent / "Shop Orders.csv")
    assert info.rows == len(source) and not frame.isna().any().any()
    for table in (source, frame):  # the same instants, written the same way
        table["ts"] = pd.to_datetime(table["ts"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
    expected = source.set_index(["store", "cust", "ts"]).sort_index()
    got = frame.set_index(["store", "cust", "ts"]).sort_index()
    assert (got.index == expected.index).all()
    np.testing.assert_allclose(got["amount"], expected["amount"].to_numpy())
    assert (got["channel"].to_numpy() == expected["channel"].to_numpy()).all()


def test_readme_says_what_was_inferred_and_what_to_run(shop: Scaffold) -> None:
    readme = (shop.directory / "README.md").read_text()
    assert "multiclass" in readme and "promo: categorical" in readme
    assert f"aiinfra --config '{shop.profile}' quickstart" in readme
    assert "models:build" in readme and "build(input_width, output_width" in readme
    assert "--request-feature" in readme
    profile = shop.profile.read_text()
    assert "entry_point: models:build" in profile  # the comment on bringing a model


# --- the command line -------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiinfra_cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "AIINFRA_PROFILE": ""},
        cwd=PROJECT_ROOT,
        timeout=120,
    )


def test_cli_init_prints_what_it_inferred_without_a_profile(tmp_path: Path) -> None:
    _table().to_csv(tmp_path / "t.csv", index=False)
    target = tmp_path / "churn"
    # A profile that does not load: init writes one, it never reads one.
    flags = ["--data", str(tmp_path / "t.csv"), "--entity", "cust", "--timestamp", "ts"]
    result = _cli(
        "--config", str(tmp_path / "missing.yaml"), "init", str(target), *flags, "--label", "y",
        "--request-feature", "amount",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "task:     binary (label 'y' has 2 distinct values (0, 1))" in out
    assert "channel: categorical (String, stored, categories phone, shop, web)" in out
    assert "amount: numeric (Float64, sent with each request)" in out
    assert f"aiinfra --config {target / 'profile.yaml'} quickstart" in out
    assert load_config(target / "profile.yaml").project.labels.request_features == ["amount"]

    bad = _cli("init", str(tmp_path / "other"), *flags, "--label", "churned")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        f"--label churned: no such column in t.csv (columns: {', '.join(_table().columns)})"
    ]
