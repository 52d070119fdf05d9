"""The one typed configuration of the platform.

A run is described by a YAML profile (``configs/*.yaml``) overlaid with environment variables
(``AIINFRA_<SECTION>__<FIELD>``, e.g. ``AIINFRA_TRAINING__EPOCHS=3``). Nothing here touches the
disk or the network beyond reading the YAML file: paths are derived, never created.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from aiinfra.project.config_errors import ConfigError, explain, unknown_env_settings

PROJECT_ROOT = Path(__file__).resolve().parents[3]
# Set while rebuilding a config a pipeline passed on: then the environment must not change it.
_IGNORE_ENV: ContextVar[bool] = ContextVar("_IGNORE_ENV", default=False)
PROFILE_ENV = "AIINFRA_PROFILE"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


Task = Literal["binary", "multiclass", "regression"]
# Every metric the gate knows (which fit a task: aiinfra.project.definition; their direction:
# aiinfra.release.metrics).
GateMetric = Literal["roc_auc", "accuracy", "f1", "log_loss", "neg_log_loss", "rmse", "mae", "r2"]


class RequestFeature(_Section):
    """A column of the label table that the caller sends with each prediction request.

    Anything left out is inferred from the label table (kind, integer) or learned from the
    reference data (bounds, categories)."""

    name: str
    kind: Literal["numeric", "categorical"] | None = None
    description: str = ""
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None


class LabelsConfig(_Section):
    """The label table (Feast's "entity dataframe"): one row per example to learn from."""

    path: str = Field(
        description="Parquet or CSV file, relative to project.root; {home} is the platform home"
    )
    entities: list[str] = Field(min_length=1, description="entity key columns (Feast join keys)")
    timestamp: str = Field("event_timestamp", description="when the row's label was known")
    label: str
    row_id: str | None = Field(None, description="a unique id per row (optional)")
    request_features: list[str | RequestFeature] = Field(default_factory=list)

    def request_feature_specs(self) -> list[RequestFeature]:
        return [RequestFeature(name=f) if isinstance(f, str) else f for f in self.request_features]


class EntryPoint(_Section):
    """``package.module:function`` and the settings it is called with."""

    entry_point: str = Field(pattern=r"^[\w.]+:[\w.]+$")
    settings: dict[str, Any] = Field(default_factory=dict)


class ProjectConfig(_Section):
    """What the platform runs: the team's data, features, task and model."""

    name: str = Field(pattern=r"^[A-Za-z0-9][\w.-]*$", description="names the MLflow model")
    task: Task = "binary"
    root: Path = Field(
        Path("."),
        description="where the project's relative paths start (default: the profile's folder)",
    )
    labels: LabelsConfig
    description: str = ""
    # What the model is for and where it must not be trusted: stated on every model card.
    intended_use: str = ""
    limitations: list[str] = Field(default_factory=list)
    # Optional: writes the project's tables when the label table is missing (demo projects).
    generator: EntryPoint | None = None

    def labels_path(self, home: Path) -> Path:
        path = Path(self.labels.path.replace("{home}", str(home)))
        return path if path.is_absolute() else self.root / path


class ModelConfig(_Section):
    """The network: the built-in MLP, or ``package.module:function(input_width, output_width,
    **settings) -> nn.Module`` from the project (imported, never unpickled)."""

    entry_point: str = Field("builtin:mlp", pattern=r"^[\w.]+:[\w.]+$")
    settings: dict[str, Any] = Field(default_factory=dict)


class FeaturesConfig(_Section):
    """The project's Feast repo and the feature service the model reads."""

    repo_path: Path = Field(Path("feature_repo"), description="relative to project.root")
    feature_service: str
    # Team and cluster profiles replace the stores of feature_store.yaml with these (Feast's own
    # settings, e.g. {type: redis, connection_string: "redis:6379"}). ${VAR} is expanded from
    # the environment where the store is opened, so secrets stay out of the compiled pipeline.
    online_store: dict[str, Any] = Field(default_factory=dict)
    offline_store: dict[str, Any] = Field(default_factory=dict)
    registry: str | dict[str, Any] | None = Field(None, description="default: <home>/feast")

    def store_settings(self) -> dict[str, Any]:
        """The stores this profile sets, each ${VAR} replaced from the environment (a missing
        variable fails here, naming it, rather than as an authentication error later)."""
        chosen = {
            "online_store": self.online_store,
            "offline_store": self.offline_store,
            "registry": self.registry,
        }
        return {key: _expand_env(value) for key, value in chosen.items() if value}


def _expand_env(value: Any) -> Any:
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)\}", _env_value, value)
    if isinstance(value, dict):
        return {k: _expand_env(v) for k, v in value.items()}
    return value


def _env_value(match: re.Match[str]) -> str:
    name = match.group(1)
    if name not in os.environ:
        raise ValueError(f"features: the store settings use ${{{name}}}, which is not set")
    return os.environ[name]


class DriftConfig(_Section):
    """The one drift rule (aiinfra.data.drift), for the validation gate, ``retrain
    --if-drifted`` and monitoring: a column (feature, label, predictions) has drifted from its
    reference when its PSI is above ``psi_threshold`` and its test's p-value below ``p_value``."""

    psi_threshold: float = Field(0.2, gt=0, description="population stability index limit")
    p_value: float = Field(0.01, gt=0, lt=1, description="and the test rejects at this level")


class ValidationConfig(_Section):
    min_rows: int = Field(50, ge=1)
    max_rows: int = Field(10_000_000, ge=1)
    min_label_rate: float = Field(0.01, ge=0, le=1, description="binary: positive share")
    max_label_rate: float = Field(0.99, ge=0, le=1)
    learned_range_margin: float = Field(
        0.25, ge=0, description="undeclared bounds: the reference's range widened by this share"
    )
    max_age_days: float = Field(30, gt=0, description="the newest row must be at most this old")
    future_tolerance_minutes: float = Field(5, ge=0, description="clock skew allowed")
    min_row_ratio: float = Field(0.1, gt=0, description="rows vs the reference, at least")
    max_row_ratio: float = Field(10, gt=0, description="rows vs the reference, at most")
    drift_mode: Literal["fail", "warn", "off"] = Field(
        "fail", description="drift of the new data (the `drift` rule): fail the run, or report it"
    )


class SearchConfig(_Section):
    """Optional hyper-parameter search (Optuna) before training; 0 trials: off.

    Whether the search task is in the pipeline is decided when the pipeline is compiled.
    """

    trials: int = Field(0, ge=0)
    epochs: int | None = Field(None, ge=1, description="epochs per trial (default: training's)")
    learning_rate: tuple[float, float] = (1e-4, 1e-2)  # log-uniform
    weight_decay: tuple[float, float] = (1e-6, 1e-2)  # log-uniform
    dropout: tuple[float, float] = (0.0, 0.3)
    hidden_sizes: list[list[int]] = Field(default_factory=lambda: [[32, 16], [64, 32], [128, 64]])
    timeout_seconds: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> SearchConfig:
        for name in ("learning_rate", "weight_decay", "dropout"):
            low, high = getattr(self, name)
            if low > high or low < 0:
                raise ValueError(f"search.{name}: need 0 <= low <= high, got [{low}, {high}]")
        if self.learning_rate[0] <= 0 or self.weight_decay[0] <= 0:
            raise ValueError("search.learning_rate and search.weight_decay are log ranges: > 0")
        if self.dropout[1] >= 1:
            raise ValueError("search.dropout must stay below 1")
        return self


class TrainingConfig(_Section):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    eval_fraction: float = Field(0.2, gt=0, lt=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 42
    # Hardware. "auto" precision: bf16 autocast on a CUDA device that has it, else fp32.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = Field(False, description="torch.compile the network (CUDA only)")
    cpu_threads: int | None = Field(
        None, ge=1, description="torch threads on CPU (None: one per core; 1 suits small nets)"
    )
    deterministic: bool = Field(True, description="deterministic kernels: same seed, same model")
    nproc_per_node: int = Field(1, ge=1, description="data-parallel processes (torchrun)")
    # A long run: checkpoints, early stopping, progress.
    checkpoint_every_epochs: int = Field(1, ge=0, description="0: no checkpoints")
    checkpoint_dir: Path | None = Field(None, description="default: next to the model output")
    keep_checkpoints: int = Field(2, ge=1)
    early_stopping_patience: int = Field(0, ge=0, description="epochs without gain; 0: off")
    early_stopping_min_delta: float = Field(0.0, ge=0)
    progress: Literal["auto", "on", "off"] = "auto"  # auto: only on a terminal, never in CI
    # What the train task asks of a cluster, and what a device-hour costs.
    accelerator_type: str | None = Field(None, description="e.g. nvidia.com/gpu")
    accelerator_limit: int = Field(1, ge=1)
    cpu_request: str | None = None
    memory_request: str | None = None
    price_per_device_hour: float = Field(0.0, ge=0)
    search: SearchConfig = Field(default_factory=SearchConfig)


class ShadowRuleConfig(_Section):
    """Promotion only on shadow evidence: with ``min_requests`` above 0, a version is promoted
    (by a person or CI: ``aiinfra promote``) only once the service shadowed it on that many
    live requests (``serving.shadow``) with at least ``min_agreement`` with the champion; the
    pipeline then registers it and leaves @champion for later."""

    min_requests: int = Field(0, ge=0, description="0: no shadow traffic required")
    min_agreement: float = Field(0.0, ge=0, le=1, description="share of the same decisions")


class ServingCheckConfig(_Section):
    """Serve before promote: before ``@champion`` moves, the version is loaded into a real
    serving process, which must answer sample rows as the evaluated model does, in time."""

    enabled: bool = True
    rows: int = Field(50, ge=1, description="rows of the label table sent, newest first")
    tolerance: float = Field(1e-5, ge=0, description="largest allowed difference in an answer")
    p95_ms: float = Field(
        500, gt=0, description="latency budget: p95 of one-row /predict calls, milliseconds"
    )
    start_timeout_s: float = Field(240, gt=0, description="how long the server may take to load")


class GateConfig(_Section):
    """When a newly trained model may replace the champion. Directions come from the metric
    (roc_auc: higher is better; rmse: lower is better); "floor" means the worst allowed."""

    metric: GateMetric | None = Field(None, description="default: the task's usual metric")
    min_value: float | None = Field(None, description="the challenger must be at least this good")
    margin: float = Field(0.002, ge=0, description="and beat the champion by at least this")
    min_values: dict[GateMetric, float] = Field(
        default_factory=dict, description="limits on other metrics, e.g. {accuracy: 0.7}"
    )
    max_regression: float = Field(
        0.02, ge=0, description="no metric may get worse than the champion's by more than this"
    )
    max_champion_drop: float | None = Field(
        0.05,
        ge=0,
        description="the champion scores below its own gate-time figure on the new rows by more: "
        "the data changed, a person decides (null: off)",
    )
    serving_check: ServingCheckConfig = Field(default_factory=ServingCheckConfig)
    shadow: ShadowRuleConfig = Field(default_factory=ShadowRuleConfig)


class MlflowConfig(_Section):
    tracking_uri: str = "http://127.0.0.1:5000"
    experiment: str | None = Field(None, description="default: project.name")
    model_name: str | None = Field(None, description="default: project.name")
    host: str = "127.0.0.1"
    port: int = 5000
    # Stores of the server `aiinfra up` starts. The team profile: PostgreSQL, its password from
    # libpq's PGPASSWORD in the environment (never in a profile). None: sqlite / <home>/mlflow.
    backend_store_uri: str | None = None
    artifacts_destination: str | None = None


class CanaryConfig(_Section):
    """A share of live requests answered by @challenger, stopped when it does worse."""

    percent: float = Field(0, ge=0, le=100, description="share of /predict requests, percent")
    min_requests: int = Field(20, ge=1, description="of each version before comparing")
    window: int = Field(200, ge=1, description="recent requests compared, per version")
    max_error_rate_increase: float = Field(0.01, ge=0, description="over the champion's")
    max_latency_ratio: float = Field(2.0, gt=0, description="p95 over the champion's p95")


class ServingConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 3000
    poll_seconds: float = Field(5.0, gt=0, description="how often the service checks @champion")
    log_sample_rate: float = Field(1.0, ge=0, le=1, description="share of requests logged")
    log_retention_days: int = Field(30, ge=1, description="days of prediction log kept")
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "localhost"],
        description="Host header values answered (DNS-rebinding guard); add the names clients "
        "use, e.g. the Kubernetes service's; '*' allows any",
    )
    max_body_bytes: int = Field(1_048_576, gt=0, description="larger request bodies get 413")
    retry_after_seconds: int = Field(5, ge=1, description="Retry-After sent with every 503")
    drain_seconds: float = Field(
        20, ge=0, description="on SIGTERM, how long in-flight requests may take to finish"
    )
    pinned_version: str | None = Field(
        None, description="serve this version instead of following @champion (serving checks)"
    )
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description="torch threads for the model (None: one per core; 1 suits small nets)",
    )
    shadow: bool = Field(False, description="also run @challenger on live requests, log only")
    shadow_share: float = Field(1.0, ge=0, le=1, description="share of requests shadowed")
    canary: CanaryConfig = Field(default_factory=CanaryConfig)

    def trusted_hosts(self) -> list[str]:
        """The allow-list, with the address the service binds to when it is a specific one."""
        bound = [] if self.host in {"0.0.0.0", "::", ""} else [self.host]
        return list(dict.fromkeys([*self.allowed_hosts, *bound]))


class KfpConfig(_Section):
    """How the pipeline runs on Kubeflow (``aiinfra compile | submit | schedule``)."""

    image: str = "ghcr.io/ai-infrastructure/aiinfra-components:0.1.0"
    serving_image: str = "ghcr.io/ai-infrastructure/aiinfra-serving:0.1.0"
    enable_caching: bool = False
    host: str | None = Field(None, description="KFP API endpoint; None: in-cluster or --host")
    namespace: str | None = Field(None, description="Kubeflow profile namespace (multi-user)")
    experiment: str | None = Field(None, description="default: project.name")
    service_account: str | None = None
    schedule: str = Field("0 0 3 * * 1", description="KFP cron (with seconds): Mondays 03:00")
    build_retries: int = Field(2, ge=0, description="retries of build-training-set")
    pvc: str | None = Field(None, description="PersistentVolumeClaim mounted at home in tasks")
    secret: str | None = Field(None, description="Kubernetes Secret exposed to tasks as env")
    secret_env: dict[str, str] = Field(default_factory=dict, description="secret key -> env var")


class LiveLabelsConfig(_Section):
    """Labels that arrive after the answer (an outcome known weeks later), joined to the logged
    predictions by request id or, without one, by the entity keys and the time of the request."""

    path: str = Field(
        description="Parquet or CSV file, relative to project.root; {home} is the platform home"
    )
    request_id: str | None = Field(
        "request_id", description="column with the X-Request-ID answered; null: join by entity"
    )
    entities: list[str] | None = Field(None, description="default: project.labels.entities")
    timestamp: str | None = Field(None, description="default: project.labels.timestamp")
    label: str | None = Field(None, description="default: project.labels.label")
    tolerance_seconds: float = Field(
        300, gt=0, description="entity join: the label's time within this of the request's"
    )


class MonitoringRules(_Section):
    """When ``aiinfra monitor`` starts a retraining run (each rule off when unset)."""

    drifted_features: int | None = Field(
        2, ge=1, description="features drifted (the `drift` rule) in the latest window"
    )
    min_values: dict[GateMetric, float] = Field(
        default_factory=dict, description="live metric floors, e.g. {roc_auc: 0.65}"
    )
    max_drop: float | None = Field(
        0.05, ge=0, description="live gate metric below the version's gate-time figure by more"
    )
    retrain: bool = Field(True, description="false: report the rules that fire, start nothing")
    cooldown_hours: float = Field(
        24, ge=0, description="no second run while the last one monitoring started is younger"
    )


class MonitoringConfig(_Section):
    """What ``aiinfra monitor`` reads (the prediction log, the late labels) and when it acts."""

    window_minutes: float = Field(60, gt=0, description="the prediction log, cut into windows")
    lookback_hours: float = Field(24, gt=0, description="the windows a report covers")
    min_rows: int = Field(30, ge=1, description="fewer rows in a window: figures, no verdict")
    labels: LiveLabelsConfig | None = None
    rules: MonitoringRules = Field(default_factory=MonitoringRules)
    recent_days: float = Field(
        7, gt=0, description="`retrain --if-drifted --source data`: the training set's last days"
    )
    pushgateway: str | None = Field(
        None, description="Prometheus Pushgateway URL the latest window's gauges are pushed to"
    )

    def labels_path(self, project: ProjectConfig, home: Path) -> Path | None:
        if self.labels is None:
            return None
        path = Path(self.labels.path.replace("{home}", str(home)))
        return path if path.is_absolute() else project.root / path


class PlatformConfig(BaseSettings):
    """Everything a run needs, validated on load."""

    model_config = SettingsConfigDict(
        env_prefix="AIINFRA_", env_nested_delimiter="__", extra="forbid"
    )

    profile: str = "local"
    home: Path = Field(PROJECT_ROOT / ".aiinfra", description="all local state lives here")
    project: ProjectConfig
    features: FeaturesConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    kfp: KfpConfig = Field(default_factory=KfpConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)

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

    @model_validator(mode="after")
    def _names_default_to_the_project(self) -> PlatformConfig:
        self.mlflow.model_name = self.mlflow.model_name or self.project.name
        self.mlflow.experiment = self.mlflow.experiment or self.project.name
        self.kfp.experiment = self.kfp.experiment or self.project.name
        return self

    @property
    def model_name(self) -> str:
        return self.mlflow.model_name or self.project.name

    @property
    def experiment(self) -> str:
        return self.mlflow.experiment or self.project.name

    @property
    def labels_path(self) -> Path:
        return self.project.labels_path(self.home)

    @property
    def repo_path(self) -> Path:
        repo = self.features.repo_path
        return repo if repo.is_absolute() else self.project.root / repo

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
    def shadow_log_dir(self) -> Path:
        return self.home / "serving" / "shadow"

    @property
    def monitoring_dir(self) -> Path:
        return self.home / "monitoring"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    def to_json(self) -> str:
        """Serialized form handed to pipeline components as one parameter."""
        return self.model_dump_json()


def load_config(path: Path | str | None = None, **overrides: Any) -> PlatformConfig:
    """Load a YAML profile, then env, then ``overrides``. Without ``path`` the profile is
    ``configs/$AIINFRA_PROFILE.yaml`` (local, team, cluster; default local): one setting
    moves every command between profiles."""
    profile = os.environ.get(PROFILE_ENV)
    source = Path(path) if path else PROJECT_ROOT / "configs" / f"{profile or 'local'}.yaml"
    raw: dict[str, Any] = {}
    if source.exists():
        try:
            loaded = yaml.safe_load(source.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}".replace("\n", " ")) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source}: expected a mapping at the top level")
        raw = loaded or {}
        # A profile's relative home, like its project root, starts at the profile's folder.
        if "home" in raw and not Path(str(raw["home"])).is_absolute():
            raw["home"] = (source.parent / str(raw["home"])).resolve()
    elif path is not None or profile:
        raise FileNotFoundError(f"config file not found: {source}")
    raw.update(overrides)
    unknown_env_settings(PlatformConfig)
    try:
        config = PlatformConfig(**raw)
    except ValidationError as exc:
        profile_file = source if source.exists() else None
        raise explain(exc, PlatformConfig, profile_file, overrides) from None
    # Resolved once here (".." steps and links included): every state path is built under it.
    config.home = (Path.cwd() / config.home).resolve()
    # A profile's relative project root starts at the profile's folder (as compose files do).
    base = source.parent if source.exists() else Path.cwd()
    config.project.root = (base / config.project.root).resolve()
    return config


def config_from_json(payload: str) -> PlatformConfig:
    """Inverse of :meth:`PlatformConfig.to_json`, ignoring the environment (a component's
    behaviour is fixed by what the pipeline passed it)."""
    token = _IGNORE_ENV.set(True)
    try:
        return PlatformConfig.model_validate_json(payload)
    finally:
        _IGNORE_ENV.reset(token)
