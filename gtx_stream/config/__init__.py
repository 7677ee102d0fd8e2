"""Settings: ``config.toml`` < ``--config PATH`` < ``GTX_*`` environment variables.

Every field can be set by an environment variable with the ``GTX_`` prefix and ``__`` between
nesting levels, e.g. ``GTX_AGGREGATOR__TAU=0.95`` or ``GTX_REDIS__URL=rediss://...``.
Unknown keys and bad values are rejected; :func:`load_settings` turns pydantic's report into a
one-line message that names the field.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from gtx_stream.config.errors import describe, describe_unparsable
from gtx_stream.config.labelers import HUMAN_LEASE_SECONDS as HUMAN_LEASE_SECONDS
from gtx_stream.config.labelers import LabelerSettings as LabelerSettings
from gtx_stream.core.models import Method, ModelName

DEFAULT_CONFIG_FILE = Path("config.toml")


EXIT_CONFIG = 2
"""The exit status of a configuration or input error (argparse's, for a usage error): the
same settings would fail the same way again, so the service definitions do not restart on
it (systemd's ``RestartPreventExitStatus``; README, Exit statuses and restarts)."""


class ConfigError(Exception):
    """A configuration problem, with a one-line message naming the field; a command exits
    with ``exit_status`` on it."""

    exit_status = EXIT_CONFIG


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RedisSettings(_Section):
    url: SecretStr = Field(
        default=SecretStr(""),
        description="redis:// or rediss:// URL, user and password included; empty: embedded server",
    )
    queue_url: SecretStr = Field(default=SecretStr(""), description="standalone Redis of "
                                 "label requests (RQ queues, jobs); empty: redis.url")  # fmt: skip
    cluster: bool = Field(default=False, description="state and streams on a Redis Cluster")
    wait_replicas: int = Field(default=1, ge=0, description="cluster: replicas a write waits for")
    prefix: str = Field(default="gtx", pattern=r"^[A-Za-z0-9_.-]+$")
    socket_timeout: float = Field(default=10.0, gt=0)


class AggregatorSettings(_Section):
    method: Method = Method.GTX
    model: ModelName = Field(
        default=ModelName.ONE_COIN, description="labeler model of gtx: one_coin or two_coin"
    )
    strategy: Literal["threshold", "uncertainty"] = Field(
        default="threshold",
        description="threshold: stop each frame at tau (strategy 1); uncertainty: one label "
        "per frame, then always the most uncertain open frame until the budget is spent",
    )
    uncertainty_inflight: int = Field(
        default=1, ge=1, description="strategy uncertainty: requests after the first labels "
        "outstanding at once, over all frames; 1 keeps the offline order exactly",
    )  # fmt: skip
    tau: float = Field(default=0.99, gt=0.5, lt=1.0)
    kappa: int = Field(default=5, ge=1)
    prior: float = Field(default=0.5, gt=0.0, lt=1.0, description="class prior P(y=1)")
    budget: int = Field(default=0, ge=0, description="labels that may be bought; 0: unlimited")
    budget_per_source: int = Field(default=0, ge=0, description="labels one source may buy")
    max_open_frames: int = Field(default=64, ge=1)
    max_inflight: int = Field(default=1, ge=1, description="outstanding requests per frame")
    lease_seconds: float = Field(default=30.0, gt=0)
    dispatch: Literal["random", "least_loaded", "best"] = "random"
    labeler_slots: int = Field(default=0, ge=0, description="requests a labeler holds; 0: any")
    batch_size: int = Field(default=256, ge=1)
    block_ms: int = Field(default=200, ge=1)
    claim_idle_seconds: float = Field(
        default=10.0, gt=0, description="reclaim a dead aggregator's pending labels after this"
    )
    sweep_seconds: float = Field(default=1.0, gt=0, description="re-check open frames this often")
    unsent_grace_seconds: float = Field(
        default=30.0, gt=0, description="a sweep sends a request granted this long ago and "
        "never enqueued (its aggregator stopped, or the queue Redis refused it, in between)",
    )  # fmt: skip
    stall_max_seconds: float = Field(default=30.0, gt=0, description="longest stall delay")
    live_seconds: float = Field(
        default=5.0, gt=0, description="a labeler is live if its worker beat within this"
    )
    stall_seconds: float = Field(
        default=120.0, gt=0, description="status --check fails after this long without progress"
    )
    seed: int = Field(default=0, description="seeds the random dispatch order")
    backoff_after_failures: int = Field(
        default=3, ge=1, description="failed requests in a row after which a labeler is backed off"
    )
    backoff_first_seconds: float = Field(
        default=1.0, gt=0, description="first backoff; each further failure doubles it"
    )
    backoff_max_seconds: float = Field(default=60.0, gt=0, description="longest backoff")
    shards: int = Field(default=1, ge=1, le=1024)  # fixed for a pipeline's life (README)
    shard_lease_seconds: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _model_needs_gtx(self) -> AggregatorSettings:
        if self.model is not ModelName.ONE_COIN and self.method is not Method.GTX:
            raise PydanticCustomError(
                "model_method", "model {model} needs method gtx, not {method}",
                {"model": str(self.model), "method": str(self.method)},
            )  # fmt: skip
        return self

    @property
    def reserve_per_frame(self) -> int:
        """Labels of budget an open frame holds back (``open_frame.lua``): kappa under the
        threshold strategy; 1 under uncertainty sampling, whose first label per frame is all
        it promises (the rest goes to the most uncertain frames)."""
        return 1 if self.strategy == "uncertainty" else self.kappa

    @model_validator(mode="after")
    def _uncertainty_needs_budget(self) -> AggregatorSettings:
        if self.strategy == "uncertainty" and self.budget == 0:
            raise PydanticCustomError(
                "strategy_budget", "strategy uncertainty needs a budget (labels to spend), not 0"
            )
        return self


class IngestSettings(_Section):
    fps: float = Field(default=0.0, ge=0, description="target sampling rate; 0: every frame")
    every: int = Field(default=1, ge=1)
    max_open_per_source: int = Field(
        default=0, ge=0, description="open frames of one source at most; 0: no bound of its own"
    )
    max_frames: int = Field(default=0, ge=0, description="0: no limit")
    skip_still: bool = False
    still_threshold: float = Field(default=2.0, ge=0, description="mean abs pixel difference")
    jpeg_quality: int = Field(default=90, ge=1, le=100)
    frame_ttl: int = Field(default=86400, ge=1, description="seconds a frame's image is kept")
    reconnect_max_seconds: float = Field(default=30.0, gt=0)
    redis_outage_seconds: float = Field(
        default=60.0, ge=0, description="keep retrying a frame while Redis is away this long"
    )


class ExportSettings(_Section):
    """``[export]``: the exporter (``gtx-stream export``) and the dataset folder it writes."""

    group: str = Field(
        default="exporter",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="consumer group of the exporter on the final stream",
    )
    out: str = Field(default="", description="dataset folder; '' needs --out")
    class_names: list[str] = Field(
        default=["0", "1"], description="folder names of label 0 and label 1"
    )
    block_frames: int = Field(
        default=1800,
        ge=1,
        description="frames are split into train/val/test by blocks of this many source frames",
    )
    val_fraction: float = Field(default=0.1, ge=0, lt=1)
    test_fraction: float = Field(default=0.1, ge=0, lt=1)
    min_confidence: float = Field(default=0.0, ge=0, le=1, description="leave out below this")
    reasons: list[Literal["confident", "kappa", "exhausted", "budget"]] = Field(
        default=["confident", "kappa", "exhausted", "budget"],
        description="finalisation reasons to keep",
    )
    batch_size: int = Field(default=64, ge=1)

    @model_validator(mode="after")
    def _fractions(self) -> ExportSettings:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1")
        names = self.class_names
        if len(names) != 2 or names[0] == names[1] or not all(_FOLDER.fullmatch(n) for n in names):
            raise ValueError("class_names must be two different folder names")
        return self


_FOLDER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


class RetentionSettings(_Section):
    """``[retention]``: what the aggregator trims so that Redis stays bounded."""

    enabled: bool = True
    every_seconds: float = Field(default=10.0, gt=0, description="apply retention this often")
    final_seconds: float = Field(
        default=7 * 86400.0, ge=0, description="keep final-stream entries this long; 0: forever"
    )
    final_maxlen: int = Field(default=0, ge=0, description="and at most this many; 0: no limit")
    frame_grace_seconds: int = Field(
        default=3600, ge=1, description="per-frame keys live this long after finalisation"
    )
    clock_skew_seconds: float = Field(
        default=60.0, ge=0, description="margin between ingester clocks and Redis's"
    )


class EstimatorSettings(_Section):
    """``[estimator]``: ``gtx-stream estimator``, which re-learns labeler parameters by EM."""

    every_seconds: float = Field(default=60.0, gt=0, description="refit this often")
    every_labels: int = Field(
        default=0, ge=0, description="also refit once this many new labels are final; 0: off"
    )
    window_labels: int = Field(
        default=100_000, ge=1, description="fit on at most this many of the latest final labels"
    )
    min_labels: int = Field(default=50, ge=1, description="no fit on fewer labels than this")
    prior_strength: float = Field(
        default=4.0, gt=0, description="strength of the pooled prior of each parameter, in labels"
    )


class GoldSettings(_Section):
    """``[gold]``: gold frames in people's feeds, qualification and pausing (store/gold.py)."""

    rate: float = Field(
        default=0.05, ge=0, le=1, description="share of a qualified person's frames that are gold"
    )
    qualification: int = Field(
        default=10, ge=0, description="gold answers a new person gives before their labels count"
    )
    floor: float = Field(
        default=0.6, ge=0, lt=1, description="a person whose interval lies below it is paused"
    )
    prior_a: float = Field(default=1.0, gt=0, description="Beta(a, b) prior of an accuracy: a")
    prior_b: float = Field(default=1.0, gt=0, description="Beta(a, b) prior of an accuracy: b")
    level: float = Field(default=0.95, gt=0, lt=1, description="credible level of the interval")


class LabelServerSettings(_Section):
    """``[label_server]``: the page people label on (``gtx-stream label-server``)."""

    host: str = Field(default="127.0.0.1", description="address the label server listens on")
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="the server's address as people reach it (invite links start with it)",
    )
    question: str = Field(
        default="Is the part in this frame correct?",
        min_length=1,
        max_length=300,
        description="the question asked on the labeling page",
    )
    undo_seconds: float = Field(
        default=3.0, ge=0, le=60, description="the page holds an answer this long before sending"
    )
    prefetch: int = Field(
        default=1, ge=0, le=4, description="requests held for a person beyond the current one"
    )
    invite_ttl_seconds: int = Field(default=7 * 86400, ge=60, description="invite links expire")
    session_ttl_seconds: int = Field(default=12 * 3600, ge=60, description="a login lasts this")
    secure_cookies: bool = Field(default=False, description="session cookie sent over HTTPS only")
    heartbeat_seconds: float = Field(
        default=2.0, gt=0, description="the page beats this often (below aggregator.live_seconds)"
    )
    admin_password: SecretStr = Field(
        default=SecretStr(""), description="password of the /admin dashboard; empty: closed"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GTX_", env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    redis: RedisSettings = RedisSettings()
    aggregator: AggregatorSettings = AggregatorSettings()
    ingest: IngestSettings = IngestSettings()
    export: ExportSettings = ExportSettings()
    retention: RetentionSettings = RetentionSettings()
    label_server: LabelServerSettings = LabelServerSettings()
    gold: GoldSettings = GoldSettings()
    estimator: EstimatorSettings = EstimatorSettings()
    labelers: list[LabelerSettings] = Field(default_factory=list)

    _toml_file: Path | None = None

    @model_validator(mode="after")
    def _unique_labelers(self) -> Settings:
        ids = [lab.id for lab in self.labelers]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"labeler ids must be unique, repeated: {sorted(dup)}")
        return self

    def labeler_leases(self) -> dict[str, float]:
        """labeler id -> its lease in seconds (:meth:`LabelerSettings.lease`)."""
        default = self.aggregator.lease_seconds
        return {lab.id: lab.lease(default) for lab in self.labelers}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = _CONFIG_PATH.get("path")
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)


_CONFIG_PATH: dict[str, Path | None] = {}


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read settings from ``path`` (else ``$GTX_CONFIG``, else ``./config.toml`` if present).

    Raises :class:`ConfigError` with a one-line message on a missing file or a bad value.
    """
    chosen = path or os.environ.get("GTX_CONFIG")
    toml: Path | None
    if chosen:
        toml = Path(chosen)
        if not toml.is_file():
            raise ConfigError(f"config error: file not found: {toml}")
    else:
        toml = DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None
    _CONFIG_PATH["path"] = toml
    try:
        return Settings(**overrides)
    except ValidationError as err:
        raise ConfigError(describe(err)) from None
    except SettingsError as err:
        raise ConfigError(describe_unparsable(err, Settings) or f"config error: {err}") from None
    except ValueError as err:  # e.g. TOML syntax errors
        raise ConfigError(f"config error: {toml}: {err}") from None
    finally:
        _CONFIG_PATH.pop("path", None)
