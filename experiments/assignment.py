"""Experiment configuration (``config/experiments.yaml``) and deterministic arm assignment.

A user's arm is a pure function of ``(user_id, salt)``: the first 8 bytes of
``blake2b(salt + "\\x00" + user_id)`` read as an unsigned integer ``h`` in ``[0, 2**64)``, and the arm is
the one whose cumulative share interval contains ``h / 2**64``. No state, no clock, no process-seeded
``hash()``: every replica, every run and the offline analysis agree on every user's arm, and a new
salt gives an independent re-randomisation. Cost: about a microsecond per call.

Serving calls, per request::

    experiment = experiment_for(domain)          # None: no experiment runs in this domain
    arm = experiment.assign(user_id)             # arm name, returned in the response and logged
    spec = experiment.arms[arm]                  # its pipeline variant and re-ranking overrides
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.domains import domain as domain_config
from common.settings import env

_SCALE = 2**64
SHARE_TOLERANCE = 1e-9


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArmSpec(_Frozen):
    """One arm: a pipeline variant served to ``share`` of the domain's users."""

    name: str = Field(min_length=1, max_length=64)
    share: float = Field(gt=0, le=1)
    variant: str = Field(min_length=1)
    description: str = ""
    rerank_overrides: dict[str, Any] = Field(default_factory=dict)


class ExperimentSpec(_Frozen):
    name: str = Field(min_length=1)
    salt: str = Field(min_length=8)
    description: str = ""
    control: str
    arms: tuple[ArmSpec, ...] = Field(min_length=2)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be distinct: {names}")
        if self.control not in names:
            raise ValueError(f"control arm {self.control!r} is not one of the arms {names}")
        total = math.fsum(a.share for a in self.arms)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"arm shares must sum to 1, got {total}")
        return self


def bucket(user_id: str, salt: str) -> int:
    """The user's position in ``[0, 2**64)`` for this salt (uniform over users, independent across salts)."""
    digest = hashlib.blake2b(f"{salt}\x00{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class Experiment:
    """A validated experiment of one domain, ready to assign users."""

    domain: str
    spec: ExperimentSpec
    arms: dict[str, ArmSpec]
    _bounds: tuple[int, ...]  # upper bucket bound of each arm but the last, cumulative
    _names: tuple[str, ...]

    @classmethod
    def build(cls, domain: str, spec: ExperimentSpec) -> Experiment:
        cumulative, bounds = 0.0, []
        for arm in spec.arms[:-1]:
            cumulative += arm.share
            bounds.append(min(_SCALE, round(cumulative * _SCALE)))
        return cls(domain, spec, {a.name: a for a in spec.arms}, tuple(bounds), tuple(a.name for a in spec.arms))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def control(self) -> str:
        return self.spec.control

    @property
    def treatments(self) -> list[str]:
        """Every arm compared with the control, in configuration order."""
        return [n for n in self._names if n != self.spec.control]

    @property
    def shares(self) -> dict[str, float]:
        return {a.name: a.share for a in self.spec.arms}

    def assign(self, user_id: str) -> str:
        """The arm (name) of ``user_id``: deterministic, about 1 µs."""
        return self._names[bisect_right(self._bounds, bucket(user_id, self.spec.salt))]


def experiments_file() -> Path:
    return env().experiments_file


def parse_experiments(raw: dict[str, Any]) -> dict[str, Experiment]:
    """``{"experiments": {domain: spec}}`` -> validated experiments by domain (unknown domains raise)."""
    out: dict[str, Experiment] = {}
    for domain, spec in (raw.get("experiments") or {}).items():
        domain_config(domain)
        out[domain] = Experiment.build(domain, ExperimentSpec.model_validate(spec))
    return out


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Experiment]:
    return parse_experiments(yaml.safe_load(Path(path).read_text()) or {})


def load_experiments(path: Path | None = None) -> dict[str, Experiment]:
    """The configured experiments by domain (cached per file)."""
    return _load(str(path or experiments_file()))


def experiment_for(domain: str, path: Path | None = None) -> Experiment | None:
    """The experiment running in ``domain``, or None."""
    return load_experiments(path).get(domain)
