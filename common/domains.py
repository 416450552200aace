"""Domain configuration loaded from ``config/domains.yaml`` (override with ``RECSYS_DOMAINS_FILE``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from common.paths import REPO_ROOT


@dataclass(frozen=True)
class DomainConfig:
    name: str
    description: str
    id_prefix: str
    read_only: bool
    event_types: tuple[str, ...]
    positive_events: dict[str, float] = field(default_factory=dict)
    conversion_event: str = "purchase"
    repurchase_allowed: bool = False
    logs_impressions: bool = True  # False: no impression log (a business bootstrapping from purchases/views)
    extra: dict = field(default_factory=dict)


_DEFAULT_FILE = str(REPO_ROOT / "config" / "domains.yaml")


def config_file() -> Path:
    return Path(os.environ.get("RECSYS_DOMAINS_FILE", _DEFAULT_FILE))


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, DomainConfig]:
    raw = yaml.safe_load(Path(path).read_text())["domains"]
    known = {f for f in DomainConfig.__dataclass_fields__ if f not in ("name", "extra")}
    out: dict[str, DomainConfig] = {}
    for name, spec in raw.items():
        spec = dict(spec)
        extra = {k: spec.pop(k) for k in list(spec) if k not in known}
        spec["event_types"] = tuple(spec["event_types"])
        out[name] = DomainConfig(name=name, extra=extra, **spec)
    return out


def domains() -> dict[str, DomainConfig]:
    """All configured domains (cached per config file; called on every validated event, so kept cheap)."""
    return _load(os.environ.get("RECSYS_DOMAINS_FILE", _DEFAULT_FILE))


def domain(name: str) -> DomainConfig:
    try:
        return domains()[name]
    except KeyError:
        raise KeyError(f"unknown domain {name!r}; configured: {sorted(domains())}") from None


def writable_domains() -> list[str]:
    """Domains the platform serves live (MovieLens is an offline benchmark only)."""
    return [d.name for d in domains().values() if not d.read_only]
