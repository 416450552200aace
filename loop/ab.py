"""The A/B result of a loop: per domain, each treatment arm against the control, per day and overall.

The unit is the user (the randomisation unit): per user and arm the totals of
:data:`experiments.analysis.USER_COLUMNS` from the events the loop's users produced, then the
comparisons with confidence intervals and MDEs of :func:`experiments.analysis.comparisons` and the
sample-ratio-mismatch check of :func:`experiments.stats.srm_check` against the configured shares.
The headline metric per domain: average order value (retail) and cross-sell conversion, applied AND
approved (banking).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from common.domains import domain as domain_config
from experiments.analysis import USER_COLUMNS, ABReport, comparisons, domain_metrics
from experiments.assignment import experiment_for
from experiments.slates import SlateReference, slate_metrics
from experiments.stats import srm_check

HEADLINE = {"retail": "aov", "banking": "approved_per_user"}


def user_totals(events: pd.DataFrame, conversion_event: str) -> pd.DataFrame:
    """Per ``user_id, arm``: :data:`USER_COLUMNS` (users seen in two arms are dropped)."""
    shown = events[events["arm"].notna()]
    arms = shown.groupby("user_id")["arm"].agg(["first", "nunique"])
    single = arms[arms["nunique"] == 1]["first"]
    frame = shown[shown["user_id"].isin(single.index)]
    kind = frame["event_type"]
    value = frame["value"].fillna(0.0).where(kind == "purchase", 0.0)
    columns = pd.DataFrame({
        "user_id": frame["user_id"], "impressions": kind == "impression", "clicks": kind == "click",
        "attributed_conversions": (kind == conversion_event) & frame["request_id"].notna(),
        "orders": kind == "purchase", "revenue": value, "applications": kind == "application_start",
        "approvals": kind == "application_approved",
    })
    totals = columns.groupby("user_id")[list(USER_COLUMNS)].sum().astype(np.float64)
    return totals.join(single.rename("arm")).reset_index()


def impressions_with_clicks(events: pd.DataFrame) -> pd.DataFrame:
    """One row per impression: ``request_id, position, item_id, arm, clicked``."""
    clicks = events[events["event_type"] == "click"][["request_id", "item_id"]].drop_duplicates().assign(clicked=1)
    shown = events[events["event_type"] == "impression"][["request_id", "position", "item_id", "arm", "day"]]
    merged = shown.merge(clicks, on=["request_id", "item_id"], how="left")
    return merged.assign(clicked=merged["clicked"].fillna(0).astype(int))


@dataclass(frozen=True)
class DomainAB:
    overall: ABReport
    days: list[ABReport]
    headline: str

    def headline_rows(self) -> list[dict[str, Any]]:
        """The headline comparison, overall and per day (``day`` = ``all`` for the window)."""
        rows = []
        for label, report in (("all", self.overall), *((r.start, r) for r in self.days)):
            for row in report.comparisons:
                if row["metric"] == self.headline:
                    rows.append({"day": label, "srm_p": report.srm.p_value, "srm_flagged": report.srm.flagged, **row})
        return rows


def _report(domain: str, events: pd.DataFrame, reference: SlateReference, start: str, end: str) -> ABReport:
    config = domain_config(domain)
    experiment = experiment_for(domain)
    users = user_totals(events, config.conversion_event)
    observed = users["arm"].value_counts().to_dict()
    if experiment is not None:
        control, treatments, shares = experiment.control, experiment.treatments, experiment.shares
    else:  # no experiment configured: the arms the service returned, compared in name order
        names = sorted(observed)
        control, treatments, shares = names[0], names[1:], {a: 1.0 / len(names) for a in names}
    present = [t for t in treatments if t in observed]
    rows = comparisons(users, domain_metrics(domain), control, present) if control in observed else []
    shown = impressions_with_clicks(events)
    arms = {}
    for arm, group in users.groupby("arm"):
        arms[arm] = {"users": float(len(group)), "impressions": float(group["impressions"].sum()),
                     **slate_metrics(shown[shown["arm"] == arm], reference)}
    mixed = int(events[events["arm"].notna()].groupby("user_id")["arm"].nunique().gt(1).sum())
    return ABReport(domain, experiment.name if experiment else None, control, start, end, arms,
                    srm_check({a: int(n) for a, n in observed.items()}, shares), rows, mixed)


def analyse_loop(domain: str, events: pd.DataFrame, reference: SlateReference) -> DomainAB:
    """The A/B reports of one domain's loop events (with a ``day`` column): overall and per day."""
    days = sorted(events["day"].unique())
    overall = _report(domain, events, reference, days[0], days[-1])
    per_day = [_report(domain, events[events["day"] == d], reference, d, d) for d in days]
    return DomainAB(overall, per_day, HEADLINE[domain])
