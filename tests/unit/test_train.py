import numpy as np
import pandas as pd
import pytest
import torch

from aiinfra import evaluate, schema, train
from aiinfra.config import TrainingConfig

CONFIG = TrainingConfig(hidden_sizes=[32, 16], epochs=8, batch_size=128, device="cpu")


def test_model_learns_the_signal(training_frame: pd.DataFrame) -> None:
    fit, held_out = train.split_by_time(training_frame, 0.2)
    result = train.train(fit, CONFIG)
    scores = evaluate.score(result.model, held_out)
    assert scores["roc_auc"] > 0.7
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.device == "cpu" and result.samples_per_second > 0


def test_same_seed_same_model(training_frame: pd.DataFrame) -> None:
    config = CONFIG.model_copy(update={"epochs": 2})
    a = train.train(training_frame, config).model.network.state_dict()
    b = train.train(training_frame, config).model.network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_split_is_by_time_and_disjoint(training_frame: pd.DataFrame) -> None:
    fit, held_out = train.split_by_time(training_frame, 0.2)
    assert len(held_out) == round(len(training_frame) * 0.2)
    assert fit[schema.EVENT_TIMESTAMP].max() <= held_out[schema.EVENT_TIMESTAMP].min()
    assert not set(fit[schema.LOAN_ID]) & set(held_out[schema.LOAN_ID])


def test_cuda_request_without_a_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        train.select_device("cuda")
    assert train.select_device("auto").type == "cpu"


def test_better_model_scores_better(training_frame: pd.DataFrame) -> None:
    fit, held_out = train.split_by_time(training_frame, 0.2)
    good = evaluate.score(train.train(fit, CONFIG).model, held_out)["roc_auc"]
    # A model that saw shuffled labels learns nothing: the evaluation can tell them apart.
    shuffled = fit.assign(
        **{schema.LABEL: np.random.default_rng(0).permutation(fit[schema.LABEL].to_numpy())}
    )
    bad = evaluate.score(train.train(shuffled, CONFIG).model, held_out)["roc_auc"]
    assert good > bad + 0.1
