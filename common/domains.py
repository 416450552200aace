"""Domain configuration loaded from ``config/domains.yaml`` (override with ``RECSYS_DOMAINS_FILE``).

A domain is one business the platform serves. Users declare their own with :func:`declare_domain`
(``recsys domain add``), which validates the declaration and appends it to the file, keeping its
comments; every job, the nightly DAG, the feature repo and serving read the file, so they pick it up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import yaml

from common.settings import PlatformEnv, env, variable


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
    eligibility: bool = False  # the catalog carries eligibility rules (min_age, min_income, ...) serving enforces
    # events about the customer's account (card spend, salary, transfers) whose item_id names a counterparty,
    # not a catalog item: item-based jobs leave them out, the account features read them (common.account_events)
    account_events: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    @cached_property  # read for every streamed event
    def item_event_types(self) -> tuple[str, ...]:
        """The event types whose ``item_id`` is a catalog item (every one but the account events)."""
        return tuple(t for t in self.event_types if t not in self.account_events)

    def problems(self, others: Mapping[str, DomainConfig] = {}) -> list[str]:  # noqa: B006 (read only)
        """What is wrong with this declaration (alone, and beside the ``others`` already declared)."""
        from common.schemas import EVENT_TYPES

        out = []
        if not _NAME.fullmatch(self.name):
            out.append(f"name {self.name!r} must be lower-case letters, digits and '_' (starting with a letter)")
        if not _PREFIX.fullmatch(self.id_prefix):
            out.append(f"id_prefix {self.id_prefix!r} must be letters/digits ending in '_' (e.g. 'shop_')")
        unknown = [t for t in self.event_types if t not in EVENT_TYPES]
        if unknown:
            out.append(f"event types {unknown} are not in the event contract {list(EVENT_TYPES)}")
        if not self.positive_events:
            out.append("positive_events is empty: name the events that show interest, with weights")
        stray = [t for t in self.positive_events if t not in self.event_types]
        if stray:
            out.append(f"positive events {stray} are not among the domain's event_types")
        if any(not isinstance(w, int | float) or w <= 0 for w in self.positive_events.values()):
            out.append("positive event weights must be positive numbers")
        if self.conversion_event not in self.event_types:
            out.append(f"conversion_event {self.conversion_event!r} is not among the domain's event_types")
        from common.account_events import ACCOUNT_EVENTS

        if not set(self.account_events) <= set(self.event_types) & set(ACCOUNT_EVENTS):
            out.append(f"account_events {list(self.account_events)} must be among the domain's event_types and "
                       f"of {list(ACCOUNT_EVENTS)}")
        if set(self.account_events) & ({*self.positive_events, self.conversion_event}):
            out.append("account events are not interactions with items: they cannot be positive or the conversion")
        if self.logs_impressions and "impression" not in self.event_types:
            out.append("logs_impressions is true but 'impression' is not among the event_types")
        for other in others.values():
            if other.name == self.name:
                continue
            if self.id_prefix.startswith(other.id_prefix) or other.id_prefix.startswith(self.id_prefix):
                out.append(f"id_prefix {self.id_prefix!r} overlaps domain {other.name!r}'s {other.id_prefix!r}")
        return out

    def as_yaml_spec(self) -> dict[str, Any]:
        spec = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("name", "extra")}
        spec["event_types"] = list(self.event_types)
        spec["account_events"] = list(self.account_events)
        if not spec["account_events"]:
            del spec["account_events"]
        return {**spec, **self.extra}


_DEFAULT_FILE = str(PlatformEnv.model_fields["domains_file"].default)
_FILE_VARIABLE = variable("domains_file")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{0,15}_")


def config_file() -> Path:
    return env().domains_file


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, DomainConfig]:
    raw = yaml.safe_load(Path(path).read_text())["domains"]
    known = {f for f in DomainConfig.__dataclass_fields__ if f not in ("name", "extra")}
    out: dict[str, DomainConfig] = {}
    for name, spec in raw.items():
        spec = dict(spec)
        extra = {k: spec.pop(k) for k in list(spec) if k not in known}
        spec["event_types"] = tuple(spec["event_types"])
        spec["account_events"] = tuple(spec.get("account_events") or ())
        out[name] = DomainConfig(name=name, extra=extra, **spec)
    return out


class DomainDeclarationError(ValueError):
    """A domain declaration that the platform cannot run (bad names, unknown event types, overlaps)."""


def declare_domain(config: DomainConfig, path: Path | None = None) -> Path:
    """Validate ``config`` and append it to the domain file (default: :func:`config_file`), keeping the
    file's comments. Raises :class:`DomainDeclarationError` if it is invalid or the name is taken."""
    path = path or config_file()
    existing = _load(str(path))
    problems = config.problems(existing)
    if config.name in existing:
        problems.insert(0, f"domain {config.name!r} is already declared in {path}")
    if problems:
        raise DomainDeclarationError("; ".join(problems))
    block = yaml.safe_dump({config.name: config.as_yaml_spec()}, sort_keys=False, default_flow_style=None)
    text = path.read_text()
    if not text.endswith("\n"):
        text += "\n"
    path.write_text(text + "".join(f"  {line}\n" for line in block.splitlines()))
    _load.cache_clear()
    if config.name not in _load(str(path)):  # the file's last block is not ``domains:`` -- never leave it half-done
        path.write_text(text)
        raise DomainDeclarationError(f"could not append to {path}: its last top-level key is not 'domains:'")
    return path


def domains() -> dict[str, DomainConfig]:
    """All configured domains (cached per config file; called on every validated event, so kept cheap)."""
    # one variable read, not env()'s twenty: this runs for every event of every batch
    return _load(os.environ.get(_FILE_VARIABLE) or _DEFAULT_FILE)


def domain(name: str) -> DomainConfig:
    try:
        return domains()[name]
    except KeyError:
        raise KeyError(f"unknown domain {name!r}; configured: {sorted(domains())}") from None


def writable_domains() -> list[str]:
    """Domains the platform serves live (MovieLens is an offline benchmark only)."""
    return [d.name for d in domains().values() if not d.read_only]
