"""The DAGs' settings, from ``orchestration/nightly.yaml`` (override with ``RECSYS_ORCHESTRATION_FILE``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from common.settings import env
from orchestration.gate import GatePolicy

DEFAULT_FILE = Path(__file__).with_name("nightly.yaml")


@dataclass(frozen=True)
class QualityRules:
    """Thresholds of the data-quality checks (:mod:`orchestration.quality`; commented in ``nightly.yaml``)."""

    min_rows: int = 100
    max_null_rate: float = 0.0
    max_rejected_rate: float = 0.05
    max_unknown_item_rate: float = 0.01
    max_staleness_hours: float = 6.0
    volume_lookback_days: int = 7
    min_history_days: int = 3
    min_volume_ratio: float = 0.5
    max_volume_ratio: float = 2.0
    required_event_types: tuple[str, ...] = ("impression",)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> QualityRules:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown data-quality rule(s): {unknown}; known: {sorted(known)}")
        values = dict(raw)
        if "required_event_types" in values:
            values["required_event_types"] = tuple(values["required_event_types"])
        return cls(**values)


@dataclass(frozen=True)
class TaskDefaults:
    owner: str
    retries: int
    retry_delay_minutes: float
    retry_exponential_backoff: float
    max_retry_delay_minutes: float
    execution_timeout_minutes: float

    def default_args(self) -> dict[str, Any]:
        """The ``default_args`` of a DAG: owner, retries with exponential back-off, a timeout."""
        return {
            "owner": self.owner,
            "retries": self.retries,
            "retry_delay": timedelta(minutes=self.retry_delay_minutes),
            "retry_exponential_backoff": self.retry_exponential_backoff,
            "max_retry_delay": timedelta(minutes=self.max_retry_delay_minutes),
            "execution_timeout": timedelta(minutes=self.execution_timeout_minutes),
        }


@dataclass(frozen=True)
class NightlySettings:
    schedule: str
    start_date: datetime
    compact_lookback_days: int
    training_days: int | str  # a number of days, or "all": every day of the lake before the logical date


@dataclass(frozen=True)
class SparkSettings:
    conn_id: str
    driver_memory: str


@dataclass(frozen=True)
class Settings:
    defaults: TaskDefaults
    nightly: NightlySettings
    materialize_every: timedelta
    spark: SparkSettings
    quality_default: QualityRules
    quality_overrides: dict[str, dict[str, Any]]
    gate: GatePolicy
    gate_overrides: dict[str, GatePolicy]

    def quality(self, domain: str) -> QualityRules:
        """The data-quality rules of a domain: the defaults, the domain's overrides here, then the
        ``quality`` block of its declaration in ``config/domains.yaml``. A domain that does not log
        impressions is never asked for them."""
        from common.domains import domain as domain_config

        declared = domain_config(domain)
        merged = {**_fields(self.quality_default), **self.quality_overrides.get(domain, {}),
                  **(declared.extra.get("quality") or {})}
        if not declared.logs_impressions:
            merged["required_event_types"] = [t for t in merged["required_event_types"] if t != "impression"]
        return QualityRules.from_mapping(merged)

    def gate_policy(self, domain: str) -> GatePolicy:
        """The promotion gate's metric rules of a domain (its own list if it has one)."""
        return self.gate_overrides.get(domain, self.gate)


def _fields(rules: QualityRules) -> dict[str, Any]:
    return {f.name: getattr(rules, f.name) for f in fields(rules)}


def _training_days(value: Any) -> int | str:
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"nightly.training_days must be a positive number of days or 'all', got {value!r}")
    return value


def settings_file() -> Path:
    return env().orchestration_file


@lru_cache(maxsize=4)
def _load(path: str) -> Settings:
    raw = yaml.safe_load(Path(path).read_text())
    nightly = raw["nightly"]
    quality = raw["quality"]
    overrides = {name: dict(spec or {}) for name, spec in (quality.get("domains") or {}).items()}
    default = QualityRules.from_mapping(quality.get("default") or {})
    for spec in overrides.values():  # fail at load time on a misspelt rule, not in the middle of a night
        QualityRules.from_mapping({**_fields(default), **spec})
    return Settings(
        defaults=TaskDefaults(**raw["defaults"]),
        nightly=NightlySettings(
            schedule=str(nightly["schedule"]),
            start_date=datetime.fromisoformat(str(nightly["start_date"])).replace(tzinfo=UTC),
            compact_lookback_days=int(nightly["compact_lookback_days"]),
            training_days=_training_days(nightly["training_days"]),
        ),
        materialize_every=timedelta(minutes=float(raw["materialization"]["every_minutes"])),
        spark=SparkSettings(conn_id=str(raw["spark"]["conn_id"]), driver_memory=str(raw["spark"]["driver_memory"])),
        quality_default=default,
        quality_overrides=overrides,
        gate=GatePolicy.from_mapping(raw["gate"]["metrics"]),
        gate_overrides={
            name: GatePolicy.from_mapping(spec["metrics"]) for name, spec in (raw["gate"].get("domains") or {}).items()
        },
    )


def load_settings() -> Settings:
    """The settings (cached per file: the DAG files call this at parse time, so it stays cheap)."""
    return _load(str(settings_file()))
