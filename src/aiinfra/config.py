"""The one typed configuration of the platform.

A run is described by a YAML profile (``configs/*.yaml``) overlaid with environment variables
(``AIINFRA_<SECTION>__<FIELD>``, e.g. ``AIINFRA_TRAINING__EPOCHS=3``). Nothing here touches the
disk or the network beyond reading the YAML file: paths are derived, never created.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Set while rebuilding a config a pipeline passed on: then the environment must not change it.
_IGNORE_ENV: ContextVar[bool] = ContextVar("_IGNORE_ENV", default=False)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
    """Size and seed of the generated demo data (loan applications)."""

    n_applicants: int = Field(2000, ge=10)
    n_zipcodes: int = Field(50, ge=2)
    n_loans: int = Field(8000, ge=50)
    days: int = Field(120, ge=2, description="span of event timestamps, ending now")
    seed: int = 7


class FeaturesConfig(_Section):
    repo_path: Path = PROJECT_ROOT / "feature_repo"
    feature_service: str = "loan_default_v1"


class ValidationConfig(_Section):
    min_rows: int = Field(50, ge=1)
    max_rows: int = Field(10_000_000, ge=1)
    min_label_rate: float = Field(0.01, ge=0, le=1)
    max_label_rate: float = Field(0.99, ge=0, le=1)


class TrainingConfig(_Section):
    hidden_sizes: list[int] = Field(default_factory=lambda: [64, 32])
    dropout: float = Field(0.1, ge=0, lt=1)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    eval_fraction: float = Field(0.2, gt=0, lt=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 42


class GateConfig(_Section):
    """When a newly trained model may replace the champion."""

    metric: Literal["roc_auc", "accuracy", "f1", "neg_log_loss"] = "roc_auc"
    min_value: float = Field(0.6, description="the challenger must reach at least this")
    margin: float = Field(0.002, ge=0, description="and beat the champion by at least this")
    min_values: dict[Literal["roc_auc", "accuracy", "f1", "neg_log_loss"], float] = Field(
        default_factory=dict, description="floors on other metrics, e.g. {accuracy: 0.7}"
    )
    max_regression: float = Field(
        0.02, ge=0, description="no metric may fall more than this below the champion's"
    )


class MlflowConfig(_Section):
    tracking_uri: str = "http://127.0.0.1:5000"
    experiment: str = "loan-default"
    model_name: str = "loan-default"
    host: str = "127.0.0.1"
    port: int = 5000


class ServingConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 3000
    poll_seconds: float = Field(5.0, gt=0, description="how often the service checks @champion")
    log_sample_rate: float = Field(1.0, ge=0, le=1, description="share of requests logged")


class KfpConfig(_Section):
    image: str = "ghcr.io/ai-infrastructure/aiinfra-components:0.1.0"
    enable_caching: bool = False


class PlatformConfig(BaseSettings):
    """Everything a run needs, validated on load."""

    model_config = SettingsConfigDict(
        env_prefix="AIINFRA_", env_nested_delimiter="__", extra="forbid"
    )

    profile: str = "local"
    home: Path = Field(PROJECT_ROOT / ".aiinfra", description="all local state lives here")
    data: DataConfig = Field(default_factory=DataConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    kfp: KfpConfig = Field(default_factory=KfpConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the YAML profile, which is passed as init kwargs.
        return (init_settings,) if _IGNORE_ENV.get() else (env_settings, init_settings)

    # Derived locations: one state directory, overridable as a whole.
    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def pipeline_root(self) -> Path:
        return self.home / "pipeline_root"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def prediction_log_dir(self) -> Path:
        return self.home / "serving" / "predictions"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    def to_json(self) -> str:
        """Serialized form handed to pipeline components as one parameter."""
        return self.model_dump_json()


def load_config(path: Path | str | None = None, **overrides: Any) -> PlatformConfig:
    """Load a YAML profile (default: configs/local.yaml), then env, then ``overrides``."""
    source = Path(path) if path else PROJECT_ROOT / "configs" / "local.yaml"
    raw: dict[str, Any] = {}
    if source.exists():
        loaded = yaml.safe_load(source.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{source}: expected a mapping at the top level")
        raw = loaded or {}
    elif path is not None:
        raise FileNotFoundError(f"config file not found: {source}")
    raw.update(overrides)
    config = PlatformConfig(**raw)
    if not config.home.is_absolute():
        config.home = (Path.cwd() / config.home).resolve()
    return config


def config_from_json(payload: str) -> PlatformConfig:
    """Inverse of :meth:`PlatformConfig.to_json`, ignoring the environment (a component's
    behaviour is fixed by what the pipeline passed it)."""
    token = _IGNORE_ENV.set(True)
    try:
        return PlatformConfig.model_validate_json(payload)
    finally:
        _IGNORE_ENV.reset(token)
