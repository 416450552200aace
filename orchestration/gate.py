"""The promotion gate: may a freshly built release replace the live one?

:func:`decide` is pure. It refuses when the release failed verification (checksums, or serving
could not load it), when a key metric is missing or not a finite number, when a metric is below its
absolute floor (above its ceiling for lower-is-better metrics), or when a metric regresses against the
live release by more than its tolerance -- a share of the live value, so ``tolerance: 0.05`` lets
recall fall from 0.40 to 0.38 but not to 0.37. With no live release (the first night) only
verification and the floors apply. Metrics the live release does not report are not compared.

Whatever the live release does, a release must also beat its own parts: its RANKED order (the ranker
over the merged candidates) must score at least the NDCG@10 of its best single retriever on the same
held-out users (:func:`ranked_vs_retrievers`; ``models.evaluation.release_evaluation.evaluate_release`` computes both), up to
the policy's ``ranked_tolerance`` (a share of the retriever's value, default 0; 1 switches it off). A
ranker that loses to one of its inputs makes every slate worse than not ranking at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

_EPSILON = 1e-12  # float slack: a candidate exactly at the allowed value passes
RANKED = "ranked_ndcg@10"
BEST_RETRIEVER = "best_retriever_ndcg@10"
RANKED_CHECK = "ranked_vs_best_retriever"  # its entry in the ``gate.metrics`` settings: {tolerance, min_users}
ORDER_USERS = "order_eval_users"  # held-out users the orders were judged on


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
    ranked_tolerance: float = 0.0  # how far (a share) the ranked NDCG@10 may fall below the best retriever's;
    # 1 turns the check off (for worlds too small for a ranker to learn anything, e.g. the tiny test world)
    ranked_min_users: int = 30  # fewer held-out users than this: the orders are not compared (said so)

    def __post_init__(self) -> None:
        if not 0 <= self.ranked_tolerance <= 1:
            raise ValueError(f"{RANKED_CHECK}: tolerance must be in [0, 1], got {self.ranked_tolerance}")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Mapping[str, Any]]) -> GatePolicy:
        """``{metric: {higher_is_better, tolerance, minimum}}`` (the ``gate.metrics`` settings); the entry
        ``ranked_vs_best_retriever: {tolerance: t}`` sets :attr:`ranked_tolerance` instead of a rule."""
        rules = {name: dict(spec or {}) for name, spec in raw.items()}
        ranked = rules.pop(RANKED_CHECK, {})
        unknown = set(ranked) - {"tolerance", "min_users"}
        if unknown:
            raise ValueError(f"{RANKED_CHECK}: unknown settings {sorted(unknown)} (tolerance, min_users)")
        return cls(tuple(MetricRule(name=name, **spec) for name, spec in rules.items()),
                   ranked_tolerance=float(ranked.get("tolerance", 0.0)),
                   ranked_min_users=int(ranked.get("min_users", cls.ranked_min_users)))


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


def _best_retriever_name(metrics: Mapping[str, Any], best: float) -> str:
    """``best_retriever`` when the metrics carry it (a manifest's keep numbers only), else the retriever
    whose ``<name>_ndcg@10`` is the best value."""
    name = metrics.get("best_retriever")
    if isinstance(name, str):
        return name
    suffix = "_ndcg@10"
    return next((key.removesuffix(suffix) for key, value in metrics.items()
                 if key.endswith(suffix) and key not in (RANKED, BEST_RETRIEVER) and _number(value) == best),
                "retriever")


def ranked_vs_retrievers(candidate: Mapping[str, Any], tolerance: float = 0.0, min_users: int = 0) -> Comparison:
    """Does the candidate's ranked order (``ranked_ndcg@10``) score at least its best single retriever
    (``best_retriever_ndcg@10``, less ``tolerance`` of it) on the held-out users? Missing or non-finite
    figures fail: the order was not evaluated. Judged on fewer than ``min_users`` held-out users (a
    business whose day holds a handful of returning users) the comparison is noise either way: it is
    not made, and the decision says so."""
    ranked, best = _number(candidate.get(RANKED)), _number(candidate.get(BEST_RETRIEVER))
    users = _number(candidate.get(ORDER_USERS))
    if ranked is not None and best is not None and users is not None and users < min_users:
        return Comparison(RANKED, ranked, None, None, True,
                          f"NOT JUDGED: only {users:.0f} held-out user(s), fewer than {min_users}: the ranked "
                          f"order (NDCG@10 {ranked:.3f}) was not compared with its best retriever ({best:.3f})")
    if ranked is None or best is None:
        absent = [name for name, value in ((RANKED, ranked), (BEST_RETRIEVER, best)) if value is None]
        return Comparison(RANKED, ranked, None, None, False,
                          f"the ranked order was not compared with its retrievers ({', '.join(absent)} not evaluated)")
    allowed = best - tolerance * abs(best)
    if ranked >= allowed - _EPSILON:
        return Comparison(RANKED, ranked, None, allowed, True, "")
    slack = f" by more than {tolerance:.0%}" if tolerance else ""
    return Comparison(RANKED, ranked, None, allowed, False,
                      f"the ranked order (NDCG@10 {ranked:.3f}) scores below its best retriever "
                      f"{_best_retriever_name(candidate, best)} ({best:.3f}){slack}")


def decide(
    candidate: Mapping[str, Any],
    live: Mapping[str, Any] | None,
    verification_problems: Sequence[str],
    policy: GatePolicy,
) -> GateDecision:
    """Compare the candidate's metrics with the live release's (``None``: nothing is live yet), and its
    ranked order with its own retrievers (:func:`ranked_vs_retrievers`)."""
    comparisons = tuple(_compare(rule, candidate.get(rule.name), (live or {}).get(rule.name)) for rule in policy.rules)
    comparisons += (ranked_vs_retrievers(candidate, policy.ranked_tolerance, policy.ranked_min_users),)
    reasons = [f"verification failed: {problem}" for problem in verification_problems]
    reasons += [f"{c.metric}: {c.note}" for c in comparisons if not c.ok]
    return GateDecision(promote=not reasons, reasons=tuple(reasons), comparisons=comparisons)
