"""The model on the loan example: its safe on-disk format and its input encoding (every task
and custom networks: test_model_tasks.py)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aiinfra.project.config import ModelConfig, TrainingConfig
from aiinfra.project.schema import Schema
from aiinfra.training import train
from aiinfra.training.model import SPEC_FILE, WEIGHTS_FILE, Encoder, TabularModel

FAST = TrainingConfig(epochs=3, batch_size=128, device="cpu")
MODEL = ModelConfig(settings={"hidden_sizes": [16]})


@pytest.fixture(scope="module")
def trained(training_frame: pd.DataFrame, schema: Schema) -> TabularModel:
    return train.train(training_frame, schema, FAST, MODEL).model


def test_save_load_round_trip_gives_same_predictions(
    trained: TabularModel, training_frame: pd.DataFrame, tmp_path: Path
) -> None:
    trained.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [SPEC_FILE, WEIGHTS_FILE]
    loaded = TabularModel.load(tmp_path / "m")
    predicted = trained.predict(training_frame)
    assert predicted.shape == (len(training_frame),)  # binary: P(positive class) per row
    np.testing.assert_allclose(loaded.predict(training_frame), predicted, rtol=1e-6)
    assert loaded.schema == trained.schema and loaded.classes == trained.classes == [0, 1]


def test_weights_file_holds_tensors_only(trained: TabularModel, tmp_path: Path) -> None:
    trained.save(tmp_path / "m")
    # safetensors: an 8-byte header length, then a JSON header; no pickle opcodes anywhere.
    raw = (tmp_path / "m" / WEIGHTS_FILE).read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    assert all(v["dtype"] == "F32" for k, v in header.items() if k != "__metadata__")
    assert b"\x80\x04\x95" not in raw[:16]


def test_load_rejects_a_model_whose_encoding_is_for_other_features(
    trained: TabularModel, tmp_path: Path
) -> None:
    # The model carries its own schema now; an encoding that does not match it (or the
    # weights' input width) is refused on load, not found out at the first prediction.
    trained.save(tmp_path / "m")
    spec = json.loads((tmp_path / "m" / SPEC_FILE).read_text())
    spec["encoder"]["numeric"] = spec["encoder"]["numeric"][:-1]
    (tmp_path / "m" / SPEC_FILE).write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="other features"):
        TabularModel.load(tmp_path / "m")


def test_load_names_a_directory_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a saved model"):
        TabularModel.load(tmp_path)


def test_encoder_rejects_missing_columns_and_nan(
    training_frame: pd.DataFrame, schema: Schema
) -> None:
    encoder = Encoder.fit(training_frame, schema)
    with pytest.raises(ValueError, match="credit_score"):
        encoder.transform(training_frame.drop(columns="credit_score"))
    broken = training_frame.head(3).copy()
    broken.loc[0, "annual_income"] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        encoder.transform(broken)
