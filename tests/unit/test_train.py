import numpy as np
import pandas as pd
import pytest
import torch

from aiinfra.project.config import ModelConfig, TrainingConfig
from aiinfra.project.schema import Schema
from aiinfra.release import metrics
from aiinfra.training import train

CONFIG = TrainingConfig(epochs=8, batch_size=128, device="cpu")
MODEL = ModelConfig(settings={"hidden_sizes": [32, 16]})


def test_model_learns_the_signal(training_frame: pd.DataFrame, schema: Schema) -> None:
    fit, held_out = train.split_by_time(training_frame, 0.2, schema)
    result = train.train(fit, schema, CONFIG, MODEL)
    scores = metrics.score(result.model, held_out, schema)
    assert scores["roc_auc"] > 0.7
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.device == "cpu" and result.samples_per_second > 0


def test_same_seed_same_model(training_frame: pd.DataFrame, schema: Schema) -> None:
    config = CONFIG.model_copy(update={"epochs": 2})
    a = train.train(training_frame, schema, config, MODEL).model.network.state_dict()
    b = train.train(training_frame, schema, config, MODEL).model.network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_split_is_by_time_and_disjoint(training_frame: pd.DataFrame, schema: Schema) -> None:
    fit, held_out = train.split_by_time(training_frame, 0.2, schema)
    assert len(held_out) == round(len(training_frame) * 0.2)
    assert fit[schema.timestamp].max() <= held_out[schema.timestamp].min()
    assert schema.row_id is not None
    assert not set(fit[schema.row_id]) & set(held_out[schema.row_id])


def test_cuda_request_without_a_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        train.select_device("cuda")
    assert train.select_device("auto").type == "cpu"


def test_better_model_scores_better(training_frame: pd.DataFrame, schema: Schema) -> None:
    fit, held_out = train.split_by_time(training_frame, 0.2, schema)
    good = metrics.score(train.train(fit, schema, CONFIG, MODEL).model, held_out, schema)
    # A model that saw shuffled labels learns nothing: the evaluation can tell them apart.
    shuffled = fit.assign(
        **{schema.label: np.random.default_rng(0).permutation(fit[schema.label].to_numpy())}
    )
    bad = metrics.score(train.train(shuffled, schema, CONFIG, MODEL).model, held_out, schema)
    good, bad = good["roc_auc"], bad["roc_auc"]
    assert good > bad + 0.1


def test_same_config_data_and_seed_give_the_same_run(
    training_frame: pd.DataFrame, schema: Schema
) -> None:
    config = CONFIG.model_copy(update={"epochs": 3})
    a = train.train(training_frame, schema, config, MODEL)
    b = train.train(training_frame, schema, config, MODEL)
    sa, sb = a.model.network.state_dict(), b.model.network.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    losses = [(r["train_loss"], r["val_loss"]) for r in a.history]
    assert losses == [(r["train_loss"], r["val_loss"]) for r in b.history]
    other = train.train(training_frame, schema, config.model_copy(update={"seed": 7}), MODEL)
    so = other.model.network.state_dict()
    assert not all(torch.equal(sa[k], so[k]) for k in sa)


def test_early_stopping_keeps_the_best_epoch(training_frame: pd.DataFrame, schema: Schema) -> None:
    # A learning rate this high overfits the small set within a few epochs.
    config = CONFIG.model_copy(
        update={"epochs": 60, "learning_rate": 0.05, "early_stopping_patience": 3}
    )
    result = train.train(training_frame, schema, config, MODEL)
    vals = [r["val_loss"] for r in result.history]
    assert result.stopped_early and len(vals) < 60
    assert result.best_epoch == result.model_epoch == vals.index(min(vals))
    assert len(vals) == result.best_epoch + 1 + 3  # patience epochs after the best one
    _, watch = train.split_by_time(training_frame, config.eval_fraction, schema)
    model = result.model
    x = torch.from_numpy(model.encoder.transform(watch))
    y = torch.from_numpy(model.target.encode(watch[schema.label]))
    loss = float(train.eval_step(model.network, x, y, model.target.loss)) / len(watch)
    assert loss == pytest.approx(min(vals), rel=1e-5)  # the weights are the best epoch's


def test_cosine_schedule_and_per_epoch_history(
    training_frame: pd.DataFrame, schema: Schema
) -> None:
    config = CONFIG.model_copy(update={"epochs": 4, "lr_schedule": "cosine"})
    history = train.train(training_frame, schema, config, MODEL).history
    assert [r["epoch"] for r in history] == [0, 1, 2, 3]
    lrs = [r["lr"] for r in history]
    assert lrs[0] == config.learning_rate and lrs == sorted(lrs, reverse=True)
    assert all(r["epoch_seconds"] > 0 for r in history)


def test_progress_bar_only_when_asked_or_on_a_terminal(
    training_frame: pd.DataFrame, schema: Schema, capsys: pytest.CaptureFixture[str]
) -> None:
    shown_config = CONFIG.model_copy(update={"epochs": 2, "progress": "on"})
    train.train(training_frame, schema, shown_config, MODEL)
    shown = capsys.readouterr().err
    assert "training" in shown and "2/2" in shown and "val_loss" in shown
    quiet_config = CONFIG.model_copy(update={"epochs": 2})  # auto: not a tty
    train.train(training_frame, schema, quiet_config, MODEL)
    assert capsys.readouterr().err == ""


def test_bf16_on_cpu_falls_back_to_fp32(training_frame: pd.DataFrame, schema: Schema) -> None:
    config = CONFIG.model_copy(update={"epochs": 1, "precision": "bf16"})
    result = train.train(training_frame, schema, config, MODEL)
    assert result.precision == "fp32" and result.model.metadata["precision"] == "fp32"


def test_training_settings_are_validated() -> None:
    from pydantic import ValidationError

    from aiinfra.project.config import SearchConfig
    from aiinfra.training import search

    with pytest.raises(ValidationError, match="learning_rate"):
        SearchConfig(learning_rate=(1e-2, 1e-4))
    with pytest.raises(ValidationError, match="log ranges"):
        SearchConfig(weight_decay=(0.0, 1e-2))
    with pytest.raises(ValidationError):
        TrainingConfig(precision="fp16")  # type: ignore[arg-type]
    same_training, same_model = search.with_overrides(CONFIG, MODEL, {})
    assert same_training is CONFIG and same_model is MODEL
    training, model = search.with_overrides(CONFIG, MODEL, {"dropout": 0.0, "epochs": 3})
    assert model.settings == {"hidden_sizes": [32, 16], "dropout": 0.0}  # the MLP's own
    assert training.epochs == 3 and MODEL.settings == {"hidden_sizes": [32, 16]}
    with pytest.raises(ValueError, match="unknown training settings: nope"):
        search.with_overrides(CONFIG, MODEL, {"nope": 1})
    with pytest.raises(ValidationError):
        search.with_overrides(CONFIG, MODEL, {"epochs": 0})
    # A project's own network takes no MLP settings from the search.
    custom = ModelConfig(entry_point="team_models.net:build")
    with pytest.raises(ValueError, match="unknown training settings: dropout"):
        search.with_overrides(CONFIG, custom, {"dropout": 0.0})
