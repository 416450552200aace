"""Generate the synthetic world of a profile: catalog, users, event logs and the hidden truth.

Per domain, day by day: plan the sessions, let the legacy policy fill the slates, let the users
respond (:mod:`simulation.behavior`), add organic views, update the policy's popularity counts.
All days but the last go to the lake (Parquet, by domain/date); the last day is "today": JSONL
under ``incoming/<domain>/`` for the streaming job. Regenerating a domain replaces its previous
synthetic output (lake partitions, incoming files, truth). Same profile + seed + start date =>
identical output.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from common.lake import write_catalog, write_events, write_users
from common.paths import DataPaths
from simulation.account_events import account_events, with_account_events
from simulation.banking_world import build_banking_world
from simulation.behavior import SlateContext, add_organic_views, add_slate_responses
from simulation.events import EventBuffer
from simulation.incoming import write_incoming
from simulation.policy import LoggingPolicy
from simulation.profiles import Profile, get_profile
from simulation.retail_world import build_retail_world
from simulation.sessions import plan_day, simulated_day_start_us
from simulation.truth import GroundTruth
from simulation.world import DEVICES, World

BUILDERS = {"retail": build_retail_world, "banking": build_banking_world}
DOMAIN_CODES = {"retail": 1, "banking": 2}
# weekend traffic factor, mean slates per session, mean organic views per session
TRAFFIC = {"retail": (1.2, 1.8, 0.6), "banking": (0.8, 1.4, 0.4)}
POLICY_LOG = "logging_policy"


@dataclass
class DomainSummary:
    domain: str
    users: int
    items: int
    new_users: int
    new_items: int
    out_of_stock_items: int
    days: int
    events_by_type: dict[str, int]
    lake_events: int
    incoming_events: int
    seconds: float

    @property
    def events(self) -> int:
        return sum(self.events_by_type.values())


@dataclass
class GenerationSummary:
    profile: str
    seed: int
    start_date: date
    end_date: date  # the last simulated day ("today", in incoming/)
    domains: dict[str, DomainSummary] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        out = asdict(self)
        out["start_date"], out["end_date"] = self.start_date.isoformat(), self.end_date.isoformat()
        for name, summary in self.domains.items():
            out["domains"][name]["events"] = summary.events
        return out


def _epoch_us(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000


def _reset(paths: DataPaths, domain: str) -> None:
    for folder in (paths.events / f"domain={domain}", paths.incoming(domain), paths.world(domain)):
        if folder.exists():
            shutil.rmtree(folder)


def _positives(truth: GroundTruth, events: pd.DataFrame, conversion_weight: float) -> tuple[np.ndarray, ...]:
    """(segments, items, weights) of the day's clicks/organic views and conversions, for the policy."""
    conversion = "purchase" if truth.domain == "retail" else "application_approved"
    click_like = (events["event_type"] == "click") | ((events["event_type"] == "view") & events["request_id"].isna())
    chosen = events[click_like | (events["event_type"] == conversion)]
    weights = np.where(chosen["event_type"].to_numpy() == conversion, conversion_weight, 1.0)
    users = truth.user_index(chosen["user_id"].to_numpy())
    return truth.user_segment[users], truth.item_index(chosen["item_id"].to_numpy()), weights


def _simulate_day(world: World, policy: LoggingPolicy, profile: Profile, day_us: int,
                  rng: np.random.Generator) -> tuple[pd.DataFrame, pa.Table]:
    """One simulated day: its events (time-ordered) and the policy's record of every slate slot."""
    truth = world.truth
    weekend, slates_per_session, organic = TRAFFIC[truth.domain]
    truth.advance_to(day_us)  # needs as of the day (banking life events)
    plan = plan_day(truth, day_us, weekend, slates_per_session, organic, rng)
    available = truth.launched_us < day_us
    segments = truth.user_segment[plan.request_user]
    batch = policy.slates(segments, available, profile.size(truth.domain).slate_size, rng)
    devices = np.array(DEVICES)
    context = SlateContext(plan.request_ids, plan.session_ids[plan.request_session],
                           devices[plan.request_device], plan.request_ts_us)
    buf = EventBuffer(truth)
    add_slate_responses(buf, plan.request_user, batch.items, context, rng)
    popularity = (policy.counts.sum(axis=0) + 1.0) * available
    add_organic_views(buf, plan.session_user, plan.session_ids, devices[plan.session_device],
                      plan.session_start_us, plan.session_organic, popularity, rng)
    events = buf.frame()
    policy.update(*_positives(truth, events, policy.config.conversion_weight))
    events = with_account_events(events, account_events(truth, day_us, rng))
    n, k = batch.items.shape
    record = pa.table({
        "request_id": np.repeat(plan.request_ids, k),
        "position": np.tile(np.arange(1, k + 1, dtype=np.int32), n),
        "segment": np.repeat(truth.segment_names[segments], k),
        "explored": batch.explored.ravel(),
        "popularity_share": batch.popularity_share.ravel(),
    })
    return events, record


def _final_tables(world: World) -> tuple[pd.DataFrame, pd.DataFrame]:
    users = world.users.copy()
    if world.truth.domain == "banking":
        item_ids = world.truth.item_ids
        users["products_held"] = [[str(x) for x in item_ids[row]] for row in world.truth.held]
    return users, world.catalog


def generate_domain(profile: Profile, domain: str, seed: int, paths: DataPaths, start: date,
                    progress: bool = True) -> DomainSummary:
    """Generate one domain's world into ``paths`` (replacing that domain's previous synthetic output)."""
    began = time.perf_counter()
    rng = np.random.default_rng([seed, DOMAIN_CODES[domain]])
    size = profile.size(domain)
    start_us = _epoch_us(start)
    world = BUILDERS[domain](size, profile.days, start_us, rng)
    _reset(paths, domain)
    policy = LoggingPolicy(world.truth, start_us)
    log_dir = paths.world(domain) / POLICY_LOG
    log_dir.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    lake_rows = incoming_rows = 0
    for day in tqdm(range(profile.days), desc=f"{domain} days", unit="day", disable=not progress):
        day_us = simulated_day_start_us(start_us, day)
        events, record = _simulate_day(world, policy, profile, day_us, rng)
        counts.update(events["event_type"].value_counts().to_dict())
        today = (start + timedelta(days=day)).isoformat()
        pq.write_table(record, log_dir / f"date={today}.parquet")
        if day < profile.days - 1:
            lake_rows += write_events(events, paths)
        else:
            incoming_rows += write_incoming(events, paths, domain, today)
    users, catalog = _final_tables(world)
    write_users(users, paths, domain)
    write_catalog(catalog, paths, domain)
    world.truth.save(paths)
    (log_dir / "config.json").write_text(json.dumps(policy.config.as_dict(), indent=2, sort_keys=True))
    return DomainSummary(
        domain=domain,
        users=len(users),
        items=len(catalog),
        new_users=int((world.truth.signed_up_us >= start_us).sum()),
        new_items=int((world.truth.launched_us >= start_us).sum()),
        out_of_stock_items=int((catalog["inventory"] == 0).sum()),
        days=profile.days,
        events_by_type={k: int(v) for k, v in sorted(counts.items())},
        lake_events=lake_rows,
        incoming_events=incoming_rows,
        seconds=round(time.perf_counter() - began, 2),
    )


def generate(profile: str, seed: int, paths: DataPaths, start_date: date | None = None,
             domains: tuple[str, ...] | list[str] = ("retail", "banking"), progress: bool = True) -> GenerationSummary:
    """Generate the synthetic world of ``profile`` for ``domains``; see the module docstring."""
    spec = get_profile(profile)
    start = start_date or spec.start_date
    began = time.perf_counter()
    summary = GenerationSummary(profile=spec.name, seed=seed, start_date=start,
                                end_date=start + timedelta(days=spec.days - 1))
    for domain in domains:
        if domain not in BUILDERS:
            raise ValueError(f"the synthetic world has no domain {domain!r}; choose from {sorted(BUILDERS)}")
        summary.domains[domain] = generate_domain(spec, domain, seed, paths, start, progress)
    summary.seconds = round(time.perf_counter() - began, 2)
    return summary
