"""Experiment arms: which pipeline variant and which re-ranking rules serve one request.

The arm comes from ``experiments.assignment`` (a pure hash of the user id and the experiment's salt);
a domain without an experiment serves ``settings.default_arm`` with the full pipeline. An arm's
``rerank_overrides`` are deep-merged into the domain's rules of ``config/serving.yaml``. Hard filters
are not an experiment variable: an override of ``filters`` is refused when the app starts.

Variants:

- ``full_pipeline``: retrieval -> DCN ranking -> re-ranking (boosts, diversity, exploration);
- ``legacy_segment``: the recommender the platform replaces -- the top popular items of the user's
  segment, hard-filtered, with no ranker, boosts, diversity caps or exploration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from experiments.assignment import experiment_for
from serving.settings import BoostRules, DiversityRules, ExplorationRules, RerankRules, ServingSettings

FULL_PIPELINE, LEGACY_SEGMENT = "full_pipeline", "legacy_segment"
VARIANTS = (FULL_PIPELINE, LEGACY_SEGMENT)


@dataclass(frozen=True)
class Arm:
    """The arm one request is served by."""

    name: str
    variant: str
    rules: RerankRules


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, Mapping) else value
    return out


def arm_rules(base: RerankRules, variant: str, overrides: Mapping[str, Any]) -> RerankRules:
    """The rules an arm serves with: ``base`` plus the overrides; legacy switches the soft rules off."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown pipeline variant {variant!r}; serving knows {list(VARIANTS)}")
    if "filters" in overrides:
        raise ValueError("rerank_overrides may not change the hard filters")
    rules = RerankRules.model_validate(_merge(base.model_dump(), overrides))
    if variant == LEGACY_SEGMENT:
        rules = rules.model_copy(update={
            "boost": BoostRules(margin_lift=0, new_lift=0, max_rank_lift=0),
            "diversity": DiversityRules(category_level=rules.diversity.category_level, max_share=1.0),
            "exploration": ExplorationRules(share=0.0),
        })
    return rules


class ArmResolver:
    """Per request: the user's arm in the domain's experiment; arms are resolved once and cached."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self._arms: dict[tuple[str, str], Arm] = {}
        for domain in settings.domains:  # fail at start, not on a request, on a bad experiment config
            experiment = experiment_for(domain)
            for name in experiment.arms if experiment else (settings.default_arm,):
                self._arms[(domain, name)] = self._build(domain, name)

    def _build(self, domain: str, name: str) -> Arm:
        experiment = experiment_for(domain)
        base = self.settings.rules[domain]
        if experiment is None:
            return Arm(name, FULL_PIPELINE, base)
        spec = experiment.arms[name]
        try:
            return Arm(name, spec.variant, arm_rules(base, spec.variant, spec.rerank_overrides))
        except ValueError as err:
            raise ValueError(f"experiment {experiment.name!r} arm {name!r}: {err}") from err

    def arm(self, domain: str, user_id: str) -> Arm:
        experiment = experiment_for(domain)
        name = experiment.assign(user_id) if experiment is not None else self.settings.default_arm
        key = (domain, name)
        if key not in self._arms:
            self._arms[key] = self._build(domain, name)
        return self._arms[key]
