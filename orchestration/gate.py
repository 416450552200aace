"""The promotion gate: may a freshly built release replace the live one?

:func:`decide` is pure. It refuses when the release failed verification (checksums, or serving
could not load it), when a key metric is missing or not a finite number, when a metric is below its
absolute floor (above its ceiling for lower-is-better metrics), or when a metric regresses against the
live release by more than its tolerance -- a share of the live value, so ``tolerance: 0.05`` lets
recall fall from 0.40 to 0.38 but not to 0.37. With no live release (the first night) only
verification and the floors apply. Metrics the live release does not report are not compared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

_EPSILON = 1e-12  # float slack: a candidate exactly at the allowed value passes


@dataclass(frozen=True)
class MetricRule:
    name: str
    higher_is_better: bool = True
    tolerance: float = 0.05  # allowed regression as a share of the live value
    minimum: float | None = None  # absolute bound: a floor (higher is better) or a ceiling (lower is better)

    def __post_init__(self) -> None:
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"{self.name}: tolerance must be in [0, 1), got {self.tolerance}")


@dataclass(frozen=True)
class GatePolicy:
    rules: tuple[MetricRule, ...]

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Mapping[str, Any]]) -> GatePolicy:
        """``{metric: {higher_is_better, tolerance, minimum}}`` (the ``gate.metrics`` settings)."""
        return cls(tuple(MetricRule(name=name, **dict(spec or {})) for name, spec in raw.items()))


@dataclass(frozen=True)
class Comparison:
    metric: str
    candidate: float | None
    live: float | None
    allowed: float | None  # the worst candidate value the rules accept (None: anything)
    ok: bool
    note: str


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: tuple[str, ...]  # why it was refused (empty when promoted)
    comparisons: tuple[Comparison, ...]

    def summary(self) -> str:
        head = "PROMOTE" if self.promote else "REFUSE: " + "; ".join(self.reasons)
        rows = [
            f"  [{'ok' if c.ok else 'FAIL'}] {c.metric}: candidate={_fmt(c.candidate)} live={_fmt(c.live)} "
            f"allowed={_fmt(c.allowed)} {c.note}".rstrip()
            for c in self.comparisons
        ]
        return "\n".join([head, *rows])

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _compare(rule: MetricRule, candidate: Any, live: Any) -> Comparison:
    value, reference = _number(candidate), _number(live)
    if value is None:
        problem = "not evaluated" if candidate is None else f"{candidate!r} is not a finite number"
        return Comparison(rule.name, None, reference, None, False, f"candidate {problem}")
    sign = 1.0 if rule.higher_is_better else -1.0
    bounds = []  # worst acceptable values, in "higher is better" orientation
    if rule.minimum is not None:
        bounds.append(sign * rule.minimum)
    if reference is not None:
        bounds.append(sign * reference - rule.tolerance * abs(reference))
    if not bounds:
        return Comparison(rule.name, value, reference, None, True, "no live value or bound to compare with")
    allowed = sign * max(bounds)
    ok = sign * value >= sign * allowed - _EPSILON
    if ok:
        note = ""
    elif rule.minimum is not None and sign * value < sign * rule.minimum:
        note = f"beyond the absolute bound {rule.minimum:g}"
    else:
        note = f"regresses more than {rule.tolerance:.0%} against the live release"
    return Comparison(rule.name, value, reference, allowed, ok, note)


def decide(
    candidate: Mapping[str, Any],
    live: Mapping[str, Any] | None,
    verification_problems: Sequence[str],
    policy: GatePolicy,
) -> GateDecision:
    """Compare the candidate's metrics with the live release's (``None``: nothing is live yet)."""
    comparisons = tuple(_compare(rule, candidate.get(rule.name), (live or {}).get(rule.name)) for rule in policy.rules)
    reasons = [f"verification failed: {problem}" for problem in verification_problems]
    reasons += [f"{c.metric}: {c.note}" for c in comparisons if not c.ok]
    return GateDecision(promote=not reasons, reasons=tuple(reasons), comparisons=comparisons)
